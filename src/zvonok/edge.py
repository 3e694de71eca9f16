"""What the HTTP edge trusts: loopback names, the Host and Origin of development requests, the
client address behind configured proxies, and how untrusted text may appear in a log line.

Owns ``is_loopback_host`` (``localhost``, RFC 6761 §6.3, or an address in 127.0.0.0/8 or ``::1``,
RFC 6890), ``split_authority`` (the host and port of a ``Host`` header, RFC 9110 §7.2),
``DevHostPolicy`` (which ``Host`` and ``Origin`` (RFC 6454 §7) a development request may carry:
the defence against DNS rebinding and cross-site requests), ``TrustedProxies`` (the client
address: the socket peer, or the right-most ``X-Forwarded-For`` entry not added by a configured
proxy) and ``loggable`` (control characters escaped, length capped). Imports only the standard
library.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

#: Host names that are loopback by definition (RFC 6761 §6.3); only the plain name is accepted.
LOOPBACK_NAMES = frozenset({"localhost"})
#: Bind addresses that mean "every interface".
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_AUTHORITY_FORBIDDEN = set("/\\@?# \t\r\n")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """``localhost`` or an IP address in 127.0.0.0/8 or ``::1`` (brackets allowed)."""
    name = host.strip().lower().rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    address = _ip(name)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def split_authority(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a ``Host`` header value (``name``, ``name:port``, ``[v6]:port``).

    The host is lower-cased without brackets; ``None`` when the value is not a valid authority.
    """
    if not value or _AUTHORITY_FORBIDDEN.intersection(value):
        return None
    try:
        parts = urlsplit("//" + value)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    return (host, port) if host else None


class DevHostPolicy:
    """Which ``Host`` and ``Origin`` a development request may carry.

    ``Host`` must be a loopback name or address (any port), or one of ``extra_hosts`` (the bind
    and announced addresses, allowed only when ``dev_mode = true`` was asked for explicitly):
    a page on a rebinding DNS name sends its own name as ``Host`` and is refused. An ``Origin``,
    when present, must be ``http``/``https`` with an allowed host and the same host and port as
    ``Host`` (same origin); ``Origin: null`` is refused. No ``Origin`` (curl, scripts) is fine.
    """

    def __init__(self, extra_hosts: Iterable[str] = ()) -> None:
        names = {h.strip().lower().strip("[]").rstrip(".") for h in extra_hosts}
        self.extra_hosts = frozenset(n for n in names if n and n not in WILDCARD_HOSTS)

    def allows_host(self, host: str) -> bool:
        return is_loopback_host(host) or host.strip("[]") in self.extra_hosts

    def refusal(self, host_header: str | None, origin: str | None, scheme: str) -> str | None:
        """Why a request with these headers is refused, or ``None`` when it may proceed."""
        authority = split_authority(host_header or "")
        if authority is None or not self.allows_host(authority[0]):
            return "the Host header is not a loopback name or address"
        if origin is None:
            return None
        parts = urlsplit(origin.strip())
        try:
            origin_port = parts.port
        except ValueError:
            return "cross-site Origin"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "cross-site Origin"
        if not self.allows_host(parts.hostname):
            return "cross-site Origin"
        host, port = authority
        same_port = (origin_port or _DEFAULT_PORTS[parts.scheme]) == (
            port or _DEFAULT_PORTS.get(scheme, 80)
        )
        if parts.hostname.rstrip(".") != host or not same_port:
            return "cross-site Origin"
        return None


class TrustedProxies:
    """The client address of a connection, given the proxies whose ``X-Forwarded-For`` counts.

    The socket peer is the client unless it is one of ``networks``; then ``X-Forwarded-For`` is
    read from the right (the entry the proxy appended) and the first address that is not a
    trusted proxy is the client. An entry that is not an IP address ends the walk at the proxy
    that passed it. With no networks configured the header is never read.
    """

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        ip = _ip(address)
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def client_ip(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client address for ``peer`` given every ``X-Forwarded-For`` header value."""
        if not self.networks or not self.trusts(peer):
            return peer
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        client = peer
        for hop in reversed(hops):
            address = _forwarded_address(hop)
            if address is None:
                return client
            client = address
            if not self.trusts(address):
                return address
        return client


def _forwarded_address(hop: str) -> str | None:
    """The IP address of one ``X-Forwarded-For`` entry (``ip``, ``ip:port``, ``[v6]:port``)."""
    text = hop.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    address = _ip(text)
    return None if address is None else str(address)


def loggable(text: str, limit: int = 200) -> str:
    """``text`` for a log line: control characters escaped, at most ``limit`` characters."""
    cut = text[:limit]
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
    return escaped + ("…" if len(text) > limit else "")
