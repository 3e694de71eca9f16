"""TokenVerifier against the whole refusal matrix, with PEM keys and a real local JWKS server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import stat
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from zvonok.auth.secret import load_or_create_secret
from zvonok.auth.tokens import Grants, TokenVerifier, issue_token
from zvonok.config import Settings
from zvonok.errors import AuthError
from zvonok.ids import UserId

SECRET = "s" * 64
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def make_settings(**values: Any) -> Settings:
    """Settings from ``values`` and defaults only (no ZVONOK_* variables)."""
    return Settings.model_validate(values)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600, **extra}


def hs_verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(make_settings(jwt_leeway=0, **settings), SECRET)


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as info:
        await verifier.verify(token)
    return info.value.reason


# --- HS256 ---------------------------------------------------------------------------------


async def test_valid_hs256_gives_grants() -> None:
    token = jwt.encode(claims(rooms=["chat:1", "group:7"], jti="t-1"), SECRET, "HS256")
    grants = await hs_verifier().verify(token)
    assert grants.user_id == "alice"
    assert grants.rooms == frozenset({"chat:1", "group:7"})
    assert grants.token_id == "t-1"
    assert grants.expires_at == pytest.approx(time.time() + 600, abs=5)


async def test_settings_secret_wins_over_argument() -> None:
    other = "o" * 64
    verifier = TokenVerifier(make_settings(jwt_secret=other), SECRET)
    assert (await verifier.verify(jwt.encode(claims(), other, "HS256"))).user_id == "alice"
    assert await refused(verifier, jwt.encode(claims(), SECRET, "HS256")) == "bad-signature"


async def test_integer_sub_becomes_string() -> None:
    grants = await hs_verifier().verify(jwt.encode(claims(sub=42), SECRET, "HS256"))
    assert grants == Grants(
        user_id=UserId("42"), expires_at=grants.expires_at, rooms=None, token_id=None
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "missing"),
        ("garbage", "malformed"),
        ("a.b.c", "malformed"),
        ("eyJhbGciOiJIUzI1NiJ9.!!!.sig", "malformed"),
    ],
)
async def test_missing_and_malformed(token: str, reason: str) -> None:
    assert await refused(hs_verifier(), token) == reason


async def test_expired() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, "HS256")
    assert await refused(hs_verifier(), token) == "expired"


async def test_leeway_accepts_recently_expired() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, "HS256")
    verifier = TokenVerifier(make_settings(jwt_leeway=30), SECRET)
    assert (await verifier.verify(token)).user_id == "alice"


async def test_not_yet_valid() -> None:
    token = jwt.encode(claims(nbf=int(time.time()) + 600), SECRET, "HS256")
    assert await refused(hs_verifier(), token) == "not-yet-valid"


async def test_wrong_signature() -> None:
    token = jwt.encode(claims(), "x" * 64, "HS256")
    assert await refused(hs_verifier(), token) == "bad-signature"


async def test_alg_none_is_refused() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    assert await refused(hs_verifier(), f"{header}.{body}.") == "bad-algorithm"


async def test_algorithm_not_configured() -> None:
    token = jwt.encode(claims(), SECRET, "HS512")
    assert await refused(hs_verifier(), token) == "bad-algorithm"


@pytest.mark.parametrize("missing", ["exp", "sub"])
async def test_missing_required_claim(missing: str) -> None:
    body = claims()
    del body[missing]
    assert await refused(hs_verifier(), jwt.encode(body, SECRET, "HS256")) == "bad-claims"


@pytest.mark.parametrize(
    "extra",
    [{"sub": True}, {"sub": ""}, {"sub": ["a"]}, {"rooms": "chat:1"}, {"rooms": [1]}],
)
async def test_bad_claim_types(extra: dict[str, Any]) -> None:
    token = jwt.encode(claims(**extra), SECRET, "HS256")
    assert await refused(hs_verifier(), token) == "bad-claims"


async def test_issuer_and_audience() -> None:
    verifier = hs_verifier(jwt_issuer="https://chat.example", jwt_audience="zvonok")
    good = jwt.encode(claims(iss="https://chat.example", aud="zvonok"), SECRET, "HS256")
    assert (await verifier.verify(good)).user_id == "alice"
    for extra in (
        {"iss": "https://evil.example", "aud": "zvonok"},
        {"iss": "https://chat.example", "aud": "other"},
        {"aud": "zvonok"},
        {"iss": "https://chat.example"},
    ):
        assert await refused(verifier, jwt.encode(claims(**extra), SECRET, "HS256")) == "bad-claims"


async def test_unconfigured_issuer_and_audience_are_not_checked() -> None:
    token = jwt.encode(claims(iss="anyone", aud="anything"), SECRET, "HS256")
    assert (await hs_verifier().verify(token)).user_id == "alice"


async def test_issue_token_round_trip() -> None:
    token = issue_token(SECRET, "bob", 60, rooms=["chat:1"], issuer="i", audience="a")
    grants = await hs_verifier(jwt_issuer="i", jwt_audience="a").verify(token)
    assert (grants.user_id, grants.rooms) == ("bob", frozenset({"chat:1"}))
    assert grants.expires_at == pytest.approx(time.time() + 60, abs=5)


def test_hmac_without_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="HMAC algorithms need jwt_secret"):
        TokenVerifier(make_settings(), None)


# --- RS256 / ES256 with PEM ----------------------------------------------------------------


def test_mixing_hmac_and_public_key_algorithms_is_refused() -> None:
    settings = make_settings(jwt_algorithms=["HS256", "RS256"], jwt_public_key=pem(RSA_KEY))
    with pytest.raises(ValueError, match="mixes HMAC"):
        TokenVerifier(settings, SECRET)


async def test_hs_rs_confusion_is_refused() -> None:
    public_pem = pem(RSA_KEY)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(public_pem.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{b64(mac)}"
    verifier = TokenVerifier(
        make_settings(jwt_algorithms=["RS256"], jwt_public_key=public_pem), None
    )
    assert await refused(verifier, token) == "bad-algorithm"


async def test_rs256_with_pem_text_and_file(tmp_path: Path) -> None:
    token = jwt.encode(claims(), RSA_KEY, "RS256")
    path = tmp_path / "key.pem"
    path.write_text(pem(RSA_KEY))
    for key in (pem(RSA_KEY), str(path)):
        settings = make_settings(jwt_algorithms=["RS256"], jwt_public_key=key)
        assert (await TokenVerifier(settings, SECRET).verify(token)).user_id == "alice"


async def test_rs256_signed_by_another_key() -> None:
    token = jwt.encode(claims(), OTHER_RSA_KEY, "RS256")
    verifier = TokenVerifier(
        make_settings(jwt_algorithms=["RS256"], jwt_public_key=pem(RSA_KEY)), None
    )
    assert await refused(verifier, token) == "bad-signature"


async def test_es256_with_pem() -> None:
    verifier = TokenVerifier(
        make_settings(jwt_algorithms=["ES256"], jwt_public_key=pem(EC_KEY)), None
    )
    grants = await verifier.verify(jwt.encode(claims(sub=7), EC_KEY, "ES256"))
    assert grants.user_id == "7"
    rs_token = jwt.encode(claims(), RSA_KEY, "RS256")
    assert await refused(verifier, rs_token) == "bad-algorithm"


def test_pem_key_of_the_wrong_type_is_refused() -> None:
    settings = make_settings(jwt_algorithms=["ES256"], jwt_public_key=pem(RSA_KEY))
    with pytest.raises(ValueError, match="cannot verify ES256"):
        TokenVerifier(settings, None)


def test_public_key_algorithms_need_a_key() -> None:
    with pytest.raises(ValueError, match="need jwt_public_key or jwks_url"):
        TokenVerifier(make_settings(jwt_algorithms=["RS256"]), SECRET)
    with pytest.raises(ValueError, match="neither PEM nor a readable file"):
        TokenVerifier(make_settings(jwt_algorithms=["RS256"], jwt_public_key="/nonexistent"), None)


# --- JWKS over a real local HTTP server ----------------------------------------------------


@dataclass
class JwksServer:
    url: str
    keys: list[dict[str, Any]]
    hits: list[str] = field(default_factory=list)


def _jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, alg: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    state = JwksServer(
        url="", keys=[_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")]
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            if self.path == "/slow":
                time.sleep(2.0)
            body = json.dumps({"keys": state.keys}).encode()
            status = 200
            if self.path.startswith("/status/"):
                status = int(self.path.partition("?")[0].rsplit("/", 1)[1])
                body = b"<h1>nope</h1>"
            elif self.path == "/not-json":
                body = b"<html>"
            elif self.path == "/no-keys":
                body = b'{"keys": [{"kty": "nope", "kid": "rsa-1"}]}'
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the verifier gave up (the timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def jwks_verifier(url: str, timeout: float = 2.0) -> TokenVerifier:
    settings = make_settings(jwt_algorithms=["RS256", "ES256"], jwks_url=url, jwks_timeout=timeout)
    return TokenVerifier(settings, None)


async def test_jwks_rs256_and_es256_with_cache(jwks: JwksServer) -> None:
    verifier = jwks_verifier(jwks.url)
    rs = jwt.encode(claims(), RSA_KEY, "RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(claims(sub="bob"), EC_KEY, "ES256", headers={"kid": "ec-1"})
    assert (await verifier.verify(rs)).user_id == "alice"
    assert (await verifier.verify(es)).user_id == "bob"
    assert (await verifier.verify(rs)).user_id == "alice"
    assert jwks.hits == ["/jwks.json"]


async def test_jwks_unknown_kid(jwks: JwksServer) -> None:
    token = jwt.encode(claims(), OTHER_RSA_KEY, "RS256", headers={"kid": "rotated-away"})
    assert await refused(jwks_verifier(jwks.url), token) == "no-key"
    no_kid = jwt.encode(claims(), RSA_KEY, "RS256")
    assert await refused(jwks_verifier(jwks.url), no_kid) == "no-key"


async def test_jwks_key_used_with_another_algorithm(jwks: JwksServer) -> None:
    token = jwt.encode(claims(), EC_KEY, "ES256", headers={"kid": "rsa-1"})
    assert await refused(jwks_verifier(jwks.url), token) == "bad-algorithm"


async def test_jwks_wrong_signature(jwks: JwksServer) -> None:
    token = jwt.encode(claims(), OTHER_RSA_KEY, "RS256", headers={"kid": "rsa-1"})
    assert await refused(jwks_verifier(jwks.url), token) == "bad-signature"


async def test_jwks_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = jwt.encode(claims(), RSA_KEY, "RS256", headers={"kid": "rsa-1"})
    assert await refused(jwks_verifier(f"http://127.0.0.1:{port}/jwks"), token) == "no-key"


@pytest.mark.parametrize("path", ["/not-json", "/no-keys"])
async def test_jwks_garbage(jwks: JwksServer, path: str) -> None:
    verifier = jwks_verifier(jwks.url.replace("/jwks.json", path))
    token = jwt.encode(claims(), RSA_KEY, "RS256", headers={"kid": "rsa-1"})
    assert await refused(verifier, token) == "no-key"


async def test_jwks_timeout(jwks: JwksServer) -> None:
    verifier = jwks_verifier(jwks.url.replace("/jwks.json", "/slow"), timeout=0.3)
    token = jwt.encode(claims(), RSA_KEY, "RS256", headers={"kid": "rsa-1"})
    started = time.monotonic()
    assert await refused(verifier, token) == "no-key"
    assert time.monotonic() - started < 1.5


async def test_jwks_failures_are_logged_for_the_operator(
    jwks: JwksServer, caplog: pytest.LogCaptureFixture
) -> None:
    """URL (without credentials or query), then the HTTP status and reason or what else failed."""
    caplog.set_level(logging.WARNING, "zvonok.auth")
    base = shown = jwks.url.replace("/jwks.json", "")
    token = jwt.encode(claims(), RSA_KEY, "RS256", headers={"kid": "rsa-1"})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cases = [
        (
            f"{base}/status/503?key=s3cret",
            f"{shown}/status/503 failed: HTTP 503 Service Unavailable",
        ),
        (f"{base}/status/404", f"{shown}/status/404 failed: HTTP 404 Not Found"),
        (f"{base}/not-json", f"{shown}/not-json failed: the answer is not JSON (Expecting value"),
        (f"{base}/no-keys", f"{shown}/no-keys failed: not a usable JWK set: "),
        (f"{base}/slow", f"{shown}/slow failed: timed out after 0.3 s"),
        (f"http://127.0.0.1:{port}/jwks", f"http://127.0.0.1:{port}/jwks failed: cannot connect: "),
        # urllib takes "id:pw@127.0.0.1" for a host name; the log shows neither id nor pw
        (base.replace("//", "//id:pw@"), f"{shown} failed: cannot connect: "),
    ]
    for url, _ in cases:
        assert await refused(jwks_verifier(url, timeout=0.3), token) == "no-key"
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == len(cases), lines
    for line, (_, expected) in zip(lines, cases, strict=True):
        assert line.startswith(f"JWKS fetch from {expected}"), line
    assert "Connection refused" in lines[-2]
    assert "pw@" not in caplog.text and "s3cret" not in caplog.text
    caplog.clear()
    rotated = jwt.encode(claims(), OTHER_RSA_KEY, "RS256", headers={"kid": "rotated-away"})
    assert await refused(jwks_verifier(jwks.url), rotated) == "no-key"
    assert caplog.records == []  # an unknown kid is the token's problem, not the endpoint's


# --- fuzz: anything at all is refused with an AuthError, never another exception -----------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)
SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=60)


@settings(max_examples=200, deadline=None)
@given(token=st.text(max_size=200) | st.tuples(SEGMENT, SEGMENT, SEGMENT).map(".".join))
async def test_fuzzed_tokens_only_raise_auth_error(token: str) -> None:
    with pytest.raises(AuthError):
        await hs_verifier().verify(token)


@settings(max_examples=200, deadline=None)
@given(
    header=st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit"]), JSON_VALUES),
    body=st.dictionaries(
        st.sampled_from(["sub", "exp", "nbf", "iat", "rooms", "jti"]), JSON_VALUES
    ),
)
async def test_fuzzed_claims_only_raise_auth_error(
    header: dict[str, Any], body: dict[str, Any]
) -> None:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    mac = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    try:
        grants = await hs_verifier().verify(f"{signing_input}.{b64(mac)}")
    except AuthError:
        return
    assert grants.user_id


# --- the development secret ----------------------------------------------------------------


def test_secret_is_created_once_with_private_modes(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    secret = load_or_create_secret(data_dir)
    assert len(secret) >= 43
    assert stat.S_IMODE((data_dir / "jwt-secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert load_or_create_secret(data_dir) == secret


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "jwt-secret").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_or_create_secret(tmp_path)
