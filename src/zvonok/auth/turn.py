"""Time-limited TURN credentials: the TURN REST scheme (draft-uberti-behave-turn-rest-00 §2.2),
which coturn implements as ``use-auth-secret`` / ``static-auth-secret``.

Owns ``TurnUrl`` (RFC 7065 ``turn:`` / ``turns:`` URIs, parsed strictly), ``turn_credential``
(username ``<expiry-unix-time>:<userId>``, password ``base64(HMAC-SHA1(secret, username))``),
``TurnCredentials`` (mints one W3C ``RTCIceServer`` entry per call, with an injectable clock),
``IceServers`` (what ``joined`` hands a user: the static ``ice_servers`` plus a fresh TURN entry)
and ``check_turn_settings`` (the start-up validation ``config.py`` runs).

The shared secret never leaves this module's objects: ``repr`` hides it and nothing here logs.
Imports only ``ids``; never rooms, signaling, media, store or config.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..ids import UserId

#: RFC 7065 §3: the default ports of ``turn:`` (RFC 5766) and ``turns:`` (RFC 5766 §6.1).
DEFAULT_PORTS = {"turn": 3478, "turns": 5349}
#: Transports a TURN URI may name (RFC 7065 §3; ``turns`` + ``udp`` is TURN over DTLS).
TRANSPORTS = ("udp", "tcp")
#: The default credential lifetime (seconds): one day, the draft's example (§2.2 "ttl").
DEFAULT_TTL = 86400
_REG_NAME = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*$"
)
_URI = re.compile(
    r"^(?P<scheme>[A-Za-z]+):(?P<host>\[[^\]]*\]|[^:?/\[\]]*)(?::(?P<port>[^?]*))?"
    r"(?:\?(?P<query>.*))?$"
)


@dataclass(frozen=True, slots=True)
class TurnUrl:
    """One ``turn:`` / ``turns:`` URI: ``scheme ":" host [":" port] ["?transport=" transport]``."""

    scheme: str
    host: str
    port: int
    transport: str | None

    @classmethod
    def parse(cls, text: str) -> TurnUrl:
        """Parse ``text``; raises ``ValueError`` saying what is wrong."""
        match = _URI.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a TURN URL (turn:host[:port][?transport=udp|tcp])")
        scheme = match["scheme"].lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"{text!r}: the scheme must be 'turn' or 'turns', not {scheme!r}")
        host = _host(text, match["host"])
        port = DEFAULT_PORTS[scheme]
        if match["port"] is not None:
            if not match["port"].isdigit() or not 0 < int(match["port"]) <= 65535:
                raise ValueError(f"{text!r}: the port must be 1-65535, not {match['port']!r}")
            port = int(match["port"])
        transport = None
        if match["query"] is not None:
            key, _, value = match["query"].partition("=")
            if key != "transport" or value.lower() not in TRANSPORTS:
                raise ValueError(f"{text!r}: the only query allowed is ?transport=udp or tcp")
            transport = value.lower()
        return cls(scheme, host, port, transport)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?transport={self.transport}" if self.transport else ""
        return f"{self.scheme}:{host}:{self.port}{query}"


def _host(text: str, raw: str) -> str:
    if raw.startswith("["):
        try:
            return str(ipaddress.IPv6Address(raw[1:-1]))
        except ValueError:
            raise ValueError(f"{text!r}: {raw!r} is not an IPv6 address") from None
    if not raw or not _REG_NAME.match(raw):
        raise ValueError(f"{text!r}: {raw!r} is not a host name or IPv4 address")
    return raw


def turn_credential(secret: str, user_id: str, expires: int) -> tuple[str, str]:
    """``(username, password)`` for ``user_id`` valid until the Unix time ``expires``.

    username = ``"<expires>:<user_id>"``; password = ``base64(HMAC-SHA1(secret, username))``
    (the key is the secret's UTF-8 bytes, as coturn's ``static-auth-secret``).
    """
    username = f"{expires}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


class TurnCredentials:
    """Mints TURN credentials for ``urls`` with ``secret``, each valid for ``ttl`` seconds."""

    def __init__(
        self,
        urls: Sequence[str],
        secret: str,
        ttl: int = DEFAULT_TTL,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not urls:
            raise ValueError("TURN credentials need at least one turn:/turns: URL")
        check_secret(secret)
        if ttl <= 0:
            raise ValueError(f"the TURN credential lifetime must be positive, not {ttl}")
        for url in urls:
            TurnUrl.parse(url)
        self.urls = [url.strip() for url in urls]
        self.ttl = ttl
        self._secret = secret
        self._clock = clock

    def __repr__(self) -> str:
        return f"TurnCredentials(urls={self.urls!r}, ttl={self.ttl}, secret=<hidden>)"

    def ice_server(self, user_id: UserId) -> dict[str, Any]:
        """One ``RTCIceServer`` dict: ``urls``, ``username``, ``credential``; expires in ``ttl``."""
        expires = int(self._clock()) + self.ttl
        username, password = turn_credential(self._secret, user_id, expires)
        return {"urls": list(self.urls), "username": username, "credential": password}


class IceServers:
    """``joined``'s ``iceServers`` for a user: the static entries, then a fresh TURN entry."""

    def __init__(
        self, static: Sequence[Mapping[str, Any]], turn: TurnCredentials | None = None
    ) -> None:
        self._static = [dict(entry) for entry in static]
        self.turn = turn

    def __call__(self, user_id: UserId) -> list[dict[str, Any]]:
        servers = [dict(entry) for entry in self._static]
        if self.turn is not None:
            servers.append(self.turn.ice_server(user_id))
        return servers


def check_secret(secret: str) -> None:
    """A shared secret coturn can hold in ``static-auth-secret``: no whitespace, not empty."""
    if not secret or any(ch.isspace() or not ch.isprintable() for ch in secret):
        raise ValueError("turn_secret must be non-empty printable text without whitespace")


def check_turn_settings(
    turn_urls: Sequence[str], turn_secret: str | None, ice_servers: Sequence[Mapping[str, Any]]
) -> None:
    """Refuse settings that cannot work; raises ``ValueError`` (never quoting the secret).

    Every ``turn_urls`` entry must parse. ``turn_urls`` needs ``turn_secret``, unless every one of
    them already has static credentials in ``ice_servers`` (an entry with ``username`` and
    ``credential`` listing that URL; then no time-limited entry is minted). ``turn_secret`` needs
    ``turn_urls``.
    """
    for url in turn_urls:
        TurnUrl.parse(url)
    if turn_secret is not None:
        if not turn_urls:
            raise ValueError("turn_secret is set but turn_urls is empty: list the TURN URLs")
        check_secret(turn_secret)
        return
    if not turn_urls:
        return
    static = {
        str(url)
        for entry in ice_servers
        if entry.get("username") and entry.get("credential")
        for url in _entry_urls(entry)
    }
    missing = [url for url in turn_urls if url not in static]
    if missing:
        raise ValueError(
            f"turn_urls {missing} have no turn_secret to mint credentials with "
            "(set turn_secret, or give static username/credential for them in ice_servers)"
        )


def _entry_urls(entry: Mapping[str, Any]) -> list[str]:
    urls = entry.get("urls", [])
    return [urls] if isinstance(urls, str) else [str(url) for url in urls]


def ice_servers_from(
    static: Sequence[Mapping[str, Any]],
    turn_urls: Sequence[str],
    turn_secret: str | None,
    turn_ttl: int = DEFAULT_TTL,
) -> IceServers:
    """The composition root's helper: a TURN entry only when a secret is configured."""
    turn = TurnCredentials(turn_urls, turn_secret, turn_ttl) if turn_secret else None
    return IceServers(static, turn)
