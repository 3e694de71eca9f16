"""Peer addresses of the media socket: one canonical form, and the form a socket reports.

Owns ``canonical_ip`` / ``canonical_address`` (what logs, the admin API, STUN's XOR-MAPPED-ADDRESS
and SDP candidates carry: an IPv4-mapped IPv6 address ``::ffff:a.b.c.d`` (RFC 4291 §2.5.5.2)
unwrapped to ``a.b.c.d``, IPv6 text in the RFC 5952 form, no brackets) and ``socket_address``
(the exact tuple a socket of a family hands ``datagram_received``: ``(ip, port)`` for ``AF_INET``;
``(ip, port, flowinfo, scope_id)`` for ``AF_INET6``, IPv4 peers of a dual-stack socket as
``::ffff:a.b.c.d``). The worker's address → session tables (``udp.MediaUdpProtocol._by_addr``
and the compiled ``Demux``, which looks up the tuple asyncio delivers as is) are keyed by the
socket's form; every lookup that does not come straight from the socket converts with
``socket_address`` first, so ``127.0.0.1`` and ``::ffff:127.0.0.1`` find the same session.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import ipaddress
import socket

Address = tuple[str, int]


def canonical_ip(text: str) -> str:
    """``text`` as an IP address in canonical form; ValueError if it is not one."""
    try:
        ip = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return ip.compressed
    return str(ip)


def is_ipv6(text: str) -> bool:
    """Is ``text`` (canonical or not) an IPv6 address that is not IPv4-mapped?"""
    return ":" in canonical_ip(text)


def canonical_address(addr: Address) -> Address:
    """``(ip, port)`` in canonical form, whatever family the socket that reported it has."""
    host = addr[0]
    if host.startswith("::ffff:") or host.startswith("::FFFF:"):
        tail = host[7:]
        if "." in tail:  # the socket's own text for a mapped address: no parsing needed
            return (tail, addr[1])
    if ":" not in host:
        return (host, addr[1])
    try:
        return (canonical_ip(host), addr[1])
    except ValueError:
        return (host, addr[1])


def socket_address(addr: Address, family: int) -> Address:
    """``addr`` in the form a ``family`` socket reports its peers (the key of the tables);
    an address that family cannot carry (IPv6 on an IPv4 socket) is returned unchanged."""
    host, port = canonical_address(addr)
    if family == socket.AF_INET6:
        if ":" not in host:
            host = "::ffff:" + host
        extra: tuple[int, ...] = tuple(addr[2:4]) if len(addr) >= 4 else (0, 0)
        return (host, port, *extra)  # type: ignore[return-value]
    if ":" in host:
        return addr
    return (host, port)
