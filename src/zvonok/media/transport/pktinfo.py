"""Which local address a datagram arrived on, and sending from that address (multi-homed hosts).

Owns the ancillary data of a media socket bound to a wildcard address (``0.0.0.0`` or ``::``):
``enable`` asks the kernel to report each datagram's destination address (``IP_PKTINFO``, Linux
ip(7); ``IPV6_RECVPKTINFO``, RFC 3542 §6.1, which on a dual-stack socket reports IPv4 datagrams
as ``::ffff:a.b.c.d``), ``local_address`` reads it from ``recvmsg`` ancillary data, and
``source_ancillary`` builds the control message that makes ``sendmsg`` send from it
(``IP_PKTINFO`` with ``ipi_spec_dst`` / ``IPV6_PKTINFO`` with ``ipi6_addr``, interface 0: the
route still chooses the interface). Why: a client that reaches the announced address through
another interface would otherwise get answers from the source address the kernel picks by route,
and RFC 8445 §7.2.5.2.1 makes it discard a response whose source is not the address its request
went to. A socket bound to one address needs none of this (the kernel sends from that address),
so ``enable`` does nothing there. The compiled ``Demux`` / ``SendTarget`` (``_fastpath.c``) parse
and build the same structures; the unit tests hold both to this module.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

#: ``IP_PKTINFO`` (Linux; the socket module of Python 3.11 does not export it).
IP_PKTINFO: int = getattr(socket, "IP_PKTINFO", 8)
#: ``struct in_pktinfo`` (ifindex, spec_dst, addr) and ``struct in6_pktinfo`` (addr, ifindex).
IN_PKTINFO = struct.Struct("=i4s4s")
IN6_PKTINFO = struct.Struct("=16sI")
#: Room for either control message (``recvmsg``'s ``ancbufsize``), with slack.
ANCILLARY_SPACE = 64

Ancillary = list[tuple[int, int, bytes]]


def is_wildcard(sock: socket.socket) -> bool:
    """Is ``sock`` bound to ``0.0.0.0`` or ``::`` (the kernel chooses each source address)?"""
    try:
        host = sock.getsockname()[0]
        return ipaddress.ip_address(host).is_unspecified
    except (OSError, ValueError, IndexError):
        return False


def enable(sock: socket.socket) -> bool:
    """Have ``sock`` report every datagram's destination, if it is bound to a wildcard address;
    True if it now does (then read it with ``recvmsg`` and send with ``source_ancillary``)."""
    if sock.type != socket.SOCK_DGRAM or not is_wildcard(sock):
        return False
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        elif sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        else:
            return False
    except OSError:
        return False
    return True


def local_address(ancdata: Ancillary) -> str | None:
    """The address a datagram was sent to, from its ``recvmsg`` ancillary data, as the socket's
    family writes it (``::ffff:a.b.c.d`` for IPv4 on a dual-stack socket); None if it is absent
    or not one this host can send from (IPv6 multicast)."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= IN_PKTINFO.size:
            _ifindex, spec_dst, _addr = IN_PKTINFO.unpack_from(data)
            return socket.inet_ntop(socket.AF_INET, spec_dst)
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            if len(data) < IN6_PKTINFO.size:
                continue
            addr, _ifindex = IN6_PKTINFO.unpack_from(data)
            if addr[0] == 0xFF:
                return None
            return socket.inet_ntop(socket.AF_INET6, addr)
    return None


def source_ancillary(local: str, family: int) -> Ancillary:
    """``sendmsg`` ancillary data that sends from ``local`` on a socket of ``family``.

    ValueError if ``local`` is not an address that family can send from.
    """
    try:
        ip = ipaddress.ip_address(local)
    except ValueError:
        raise ValueError(f"source {local!r} is not an IP address") from None
    if family == socket.AF_INET6:
        if isinstance(ip, ipaddress.IPv4Address):
            ip = ipaddress.IPv6Address("::ffff:" + str(ip))
        return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, IN6_PKTINFO.pack(ip.packed, 0))]
    if family == socket.AF_INET:
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is None:
                raise ValueError(f"source {local!r} is IPv6 but the socket is IPv4")
            ip = ip.ipv4_mapped
        return [(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(0, ip.packed, bytes(4)))]
    raise ValueError(f"no source address for socket family {family}")
