"""JWT → ``Grants``: the one place that checks a token, and the only module importing PyJWT.

Owns ``Grants``, ``TokenVerifier`` and ``issue_token``. Must not import ``signaling``, ``rooms``,
``media``, ``store`` or ``cluster``; it only needs ``config``, ``diagnostics``, ``errors`` and
``ids``. A JWKS fetch that fails is logged (a warning) with the URL (without credentials or query)
and what went wrong: the HTTP status and reason, a timeout, a connection error or a key set that
is not JSON/JWKS.

Implements RFC 7519 (JWT) §4.1 claim checks (``sub``, ``exp``, ``nbf``, ``iat``, ``iss``, ``aud``,
``jti``), RFC 7515 (JWS) §4.1.1 ``alg`` handling, and RFC 8725 (JWT BCP) §3.1–§3.2: the accepted
algorithms are an explicit list, ``alg: none`` is never accepted, and HMAC and public-key
algorithms are never allowed together, so a public key can never be used as an HMAC secret.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import jwt.exceptions
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.x509 import load_pem_x509_certificate

from ..config import Settings
from ..diagnostics import excerpt, safe_url
from ..errors import AuthError
from ..ids import UserId

log = logging.getLogger("zvonok.auth")

#: HMAC algorithms: one shared secret signs and verifies.
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
#: Public-key algorithms and the key type each one needs.
PUBLIC_KEY_ALGORITHMS: dict[str, type[Any]] = {
    "RS256": RSAPublicKey,
    "RS384": RSAPublicKey,
    "RS512": RSAPublicKey,
    "ES256": EllipticCurvePublicKey,
    "ES384": EllipticCurvePublicKey,
}
#: The shortest HMAC secret we accept without a warning (RFC 7518 §3.2: at least the hash size).
MIN_SECRET_BYTES = 32
#: The longest token we look at; real ones are a few hundred bytes.
MAX_TOKEN_LENGTH = 16 * 1024
#: The longest user id we accept from ``sub``.
MAX_SUB_LENGTH = 256

_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not-yet-valid"),
    (jwt.InvalidSignatureError, "bad-signature"),
    (jwt.InvalidAlgorithmError, "bad-algorithm"),
    (jwt.InvalidKeyError, "bad-algorithm"),
    (jwt.MissingRequiredClaimError, "bad-claims"),
    (jwt.InvalidIssuerError, "bad-claims"),
    (jwt.InvalidAudienceError, "bad-claims"),
    (jwt.InvalidIssuedAtError, "bad-claims"),
    (jwt.exceptions.InvalidJTIError, "bad-claims"),
    (jwt.DecodeError, "malformed"),
]


@dataclass(frozen=True, slots=True)
class Grants:
    """What a verified token says about its bearer; all that travels after the handshake."""

    user_id: UserId
    expires_at: float
    rooms: frozenset[str] | None
    token_id: str | None


class TokenVerifier:
    """Checks tokens against one fixed key source chosen from the settings at construction.

    Raises ``ValueError`` at construction for a configuration that would be unsafe or cannot work:
    HMAC and public-key algorithms together, an HMAC algorithm without a secret, a public-key
    algorithm without ``jwt_public_key``/``jwks_url`` (or with both), or a PEM key whose type
    does not fit the algorithms.
    """

    def __init__(self, settings: Settings, secret: str | None) -> None:
        algorithms = list(dict.fromkeys(settings.jwt_algorithms))
        hmac = [alg for alg in algorithms if alg in HMAC_ALGORITHMS]
        public = [alg for alg in algorithms if alg in PUBLIC_KEY_ALGORITHMS]
        if hmac and public:
            raise ValueError(
                f"jwt_algorithms mixes HMAC {hmac} with public-key {public} algorithms; "
                "choose one family (a public key must never be usable as an HMAC secret)"
            )
        if not algorithms or len(hmac) + len(public) != len(algorithms):
            raise ValueError(f"jwt_algorithms {algorithms} has an unsupported algorithm")
        self._algorithms = frozenset(algorithms)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway
        self._jwks_timeout = settings.jwks_timeout
        self._jwks_url = safe_url(settings.jwks_url) if settings.jwks_url else ""
        self._key: Any = None
        self._jwks: jwt.PyJWKClient | None = None
        self._jwks_lock = asyncio.Lock()
        self._jwks_thread: ThreadPoolExecutor | None = None
        if hmac:
            self._key = _hmac_secret(settings.jwt_secret or secret)
        else:
            self._init_public(settings, public)

    def _init_public(self, settings: Settings, algorithms: list[str]) -> None:
        if settings.jwt_public_key and settings.jwks_url:
            raise ValueError("set either jwt_public_key or jwks_url, not both")
        if settings.jwt_public_key:
            self._key = _load_public_key(settings.jwt_public_key)
            for alg in algorithms:
                if not isinstance(self._key, PUBLIC_KEY_ALGORITHMS[alg]):
                    kind = type(self._key).__name__
                    raise ValueError(f"jwt_public_key ({kind}) cannot verify {alg} tokens")
        elif settings.jwks_url:
            self._jwks = jwt.PyJWKClient(
                settings.jwks_url,
                cache_keys=False,
                lifespan=settings.jwks_cache_ttl,
                timeout=settings.jwks_timeout,
                cooldown_duration=settings.jwks_refresh_cooldown,
            )
            self._jwks_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zvonok-jwks")
        else:
            raise ValueError(f"{algorithms} need jwt_public_key or jwks_url")

    async def verify(self, token: str) -> Grants:
        """Return the token's grants, or raise ``AuthError(reason, message)``."""
        if not token:
            raise AuthError("missing", "no token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("malformed", f"token longer than {MAX_TOKEN_LENGTH} characters")
        alg = self._check_header(token)
        key = await self._key_for(token, alg)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                    "verify_sub": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthError(_reason(exc), f"token refused: {exc}") from None
        return _grants(payload)

    def _check_header(self, token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed", f"token refused: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError("bad-algorithm", f"token algorithm {alg!r} is not accepted")
        return alg

    async def _key_for(self, token: str, alg: str) -> Any:
        if self._jwks is None or self._jwks_thread is None:
            return self._key
        client = self._jwks
        try:
            # One lookup at a time on one dedicated thread: a slow or dead JWKS endpoint makes
            # callers wait (bounded) instead of filling the loop's default executor.
            async with asyncio.timeout(self._jwks_timeout + 1.0), self._jwks_lock:
                loop = asyncio.get_running_loop()
                jwk = await loop.run_in_executor(
                    self._jwks_thread, client.get_signing_key_from_jwt, token
                )
        except TimeoutError:
            waited = self._jwks_timeout + 1.0
            log.warning("JWKS fetch from %s failed: no answer within %g s", self._jwks_url, waited)
            raise AuthError("no-key", "the JWKS endpoint did not answer in time") from None
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.PyJWKError, ValueError) as exc:
            # no key for the kid, an unreachable endpoint, or a key set that is not JSON/JWKS
            problem = _jwks_problem(exc, self._jwks_timeout)
            if problem is None:  # the token's kid is not in the key set: the token's problem
                raise AuthError("no-key", f"no signing key: {exc}") from None
            log.warning("JWKS fetch from %s failed: %s", self._jwks_url, problem)
            raise AuthError("no-key", f"no signing key: JWKS fetch failed: {problem}") from None
        except jwt.PyJWTError as exc:
            raise AuthError(_reason(exc), f"token refused: {exc}") from None
        declared = getattr(jwk, "_jwk_data", {}).get("alg")
        if (declared is not None and declared != alg) or not isinstance(
            jwk.key, PUBLIC_KEY_ALGORITHMS[alg]
        ):
            raise AuthError("bad-algorithm", f"the JWKS key {jwk.key_id!r} is not a {alg} key")
        return jwk.key


def issue_token(
    secret: str,
    user_id: str,
    ttl: float,
    *,
    rooms: list[str] | None = None,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """Sign an HS256 token for ``user_id`` valid for ``ttl`` seconds (dev tools and tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + int(ttl)}
    if rooms is not None:
        claims["rooms"] = list(rooms)
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


def _hmac_secret(secret: str | None) -> str:
    if not secret:
        raise ValueError("HMAC algorithms need jwt_secret (or the data dir's jwt-secret file)")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        log.warning("jwt_secret is shorter than %d bytes; use a longer one", MIN_SECRET_BYTES)
    return secret


def _load_public_key(text: str) -> Any:
    """``text`` is PEM (public key or certificate) or the path of a file holding it."""
    if "-----BEGIN" not in text:
        try:
            text = Path(text).read_text()
        except OSError as exc:
            raise ValueError(f"jwt_public_key is neither PEM nor a readable file: {exc}") from None
    data = text.encode()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return load_pem_x509_certificate(data).public_key()
        return load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"jwt_public_key is not a PEM public key: {exc}") from None


def _jwks_problem(exc: Exception, timeout: float) -> str | None:
    """What went wrong fetching the key set, or ``None`` if it was fetched but lacks the kid."""
    if isinstance(exc, jwt.PyJWKClientConnectionError):
        cause: BaseException | None = exc.__cause__
        if isinstance(cause, urllib.error.HTTPError):
            return f"HTTP {cause.code} {cause.reason}".rstrip()
        if isinstance(cause, urllib.error.URLError):
            reason = cause.reason
            if not isinstance(reason, TimeoutError):
                return f"cannot connect: {excerpt(str(reason))}"
            cause = reason
        if isinstance(cause, TimeoutError):
            return f"timed out after {timeout:g} s"
        if isinstance(cause, http.client.HTTPException):
            return f"bad HTTP answer ({type(cause).__name__}: {excerpt(str(cause))})"
        return excerpt(str(exc))
    if isinstance(exc, json.JSONDecodeError):
        return f"the answer is not JSON ({exc})"
    if isinstance(exc, jwt.PyJWKClientError) and str(exc).startswith("Unable to find a signing"):
        return None
    return f"not a usable JWK set: {excerpt(str(exc))}"


def _reason(exc: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "malformed"


def _grants(payload: dict[str, Any]) -> Grants:
    sub = payload.get("sub")
    if isinstance(sub, bool) or not isinstance(sub, str | int):
        raise AuthError("bad-claims", "sub must be a string or an integer")
    user = str(sub)
    if not user or len(user) > MAX_SUB_LENGTH:
        raise AuthError("bad-claims", f"sub must be 1-{MAX_SUB_LENGTH} characters")
    exp = payload["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthError("bad-claims", "exp must be a number")
    rooms = payload.get("rooms")
    if rooms is not None and (
        not isinstance(rooms, list) or not all(isinstance(room, str) for room in rooms)
    ):
        raise AuthError("bad-claims", "rooms must be a list of strings")
    jti = payload.get("jti")
    return Grants(
        user_id=UserId(user),
        expires_at=float(exp),
        rooms=None if rooms is None else frozenset(rooms),
        token_id=jti if isinstance(jti, str) else None,
    )
