"""The worker's one UDP socket: RFC 7983 demultiplexing and address → session lookup.

Owns: ``MediaUdpProtocol`` (the ``asyncio.DatagramProtocol``), the two lookup tables (local ICE
ufrag → endpoint, remote address → endpoint) and the drop counters. ``datagram_received`` is the
hot path: one look at the first byte (RFC 7983 §7: 0-3 STUN, 20-63 DTLS, 128-191 RTP/RTCP,
anything else dropped), one dict lookup by source address, one call into the endpoint; no
logging and no exceptions on valid packets. An unknown address is only learned through a STUN
binding request whose USERNAME names a live endpoint and which that endpoint authenticates
(MESSAGE-INTEGRITY with its local pwd, FINGERPRINT).
Addresses are keyed in the form the socket reports them (``address.socket_address``: on a
dual-stack ``::`` socket an IPv4 peer is ``("::ffff:a.b.c.d", port, 0, 0)``); ``bind_address`` and
``endpoint_for`` convert what they are given, so callers may pass either form.
When the compiled fast path is built, a ``_fastpath.Demux`` takes the SRTP/SRTCP branch of
``datagram_received`` (same table, straight to the transport's ``media_in``) and hands every other
datagram to the Python method, which stays the reference. It remembers the compiled receivers
``_by_addr`` led it to by raw socket address (its peer table, so a known peer costs no address
tuple, dict lookup or attribute read); ``_by_addr`` stays the only authority: every change to it
(``bind_address``, its eviction, ``unregister``) calls ``Demux.changed``, which empties that
table. ``open`` then also reads the socket itself: the event loop watches the fd
(``add_reader``) and each wake-up calls ``Demux.drain``, which reads with ``recvmmsg(2)`` (up
to ``RX_BATCH`` = 32 datagrams a call, at most ``MAX_BATCHES_PER_WAKEUP`` calls before the
loop's other callbacks run) and demultiplexes every
datagram in arrival order exactly as ``datagram_received`` would; datagrams this side sends go
out with ``sendto`` on the same non-blocking socket, queued (bounded) while it would block.
Without the compiled module ``open`` hands the socket to the event loop's datagram transport.
Multi-homed hosts (``pktinfo.py``): on a socket bound to ``0.0.0.0`` or ``::`` every datagram
is read with its destination address (``Demux.drain``, or without the compiled module a Python
``recvmsg`` reader in place of the event loop's transport); a check's response leaves from the
address the check was sent to, and everything else sent to a peer from the address of its
nominating check (``source_of``; the transport hands it to its ``SendTarget`` with the selected
address), RFC 8445 §7.2.5.2.1. On a socket bound to one address none of this runs.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from types import MethodType
from typing import Any, Protocol, cast

from ..fastpath import native
from . import pktinfo
from .address import socket_address
from .ice import Address, BindingRequest

#: How many authenticated addresses one endpoint may hold (candidate pairs being checked).
MAX_ADDRESSES_PER_ENDPOINT = 8
#: ``recvmmsg`` calls (32 datagrams each) one wake-up may make before the loop runs other work.
MAX_BATCHES_PER_WAKEUP = 4
#: Datagrams the Python reader (no compiled module, wildcard socket) takes per wake-up.
MAX_READS_PER_WAKEUP = 128
#: Source ancillary data kept ready per local address (the host's addresses: a handful).
MAX_SOURCES_CACHED = 64
#: Datagrams waiting for the socket to become writable again; beyond this they are dropped and
#: counted (``send_dropped``), as a full kernel buffer would drop them.
MAX_SEND_BACKLOG = 1024


class DatagramEndpoint(Protocol):
    """What the socket hands datagrams to (a ``WebRtcTransport``)."""

    def handle_stun(self, request: BindingRequest, addr: Address) -> bool:
        """Answer a check; True if it was valid (the address may be bound to this endpoint)."""
        ...

    def handle_dtls(self, data: bytes, addr: Address) -> None: ...
    def handle_media(self, data: bytes, addr: Address) -> None: ...


def _nothing() -> None:
    """No compiled peer table to tell."""


#: A datagram waiting to be sent: bytes, peer, the ancillary data naming its source (or None).
_Pending = tuple[bytes, Address, pktinfo.Ancillary | None]


class MediaUdpProtocol(asyncio.DatagramProtocol):
    """Demultiplexes the worker socket's datagrams to the sessions."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        #: The socket's file descriptor (-1 without a real socket), for the compiled send path.
        self.fileno = -1
        #: The socket's address family (AF_INET6: dual-stack or IPv6-only), set on connection.
        self.family: int = socket.AF_INET
        self._lost = asyncio.Event()
        self._by_addr: dict[Address, DatagramEndpoint] = {}
        self._by_ufrag: dict[str, DatagramEndpoint] = {}
        self._addrs_of: dict[int, list[Address]] = {}
        self.dropped = 0  # datagrams dropped before reaching any session
        self.send_dropped = 0  # datagrams dropped because the send backlog was full
        #: The compiled demultiplexer (None: pure Python); it reads the socket once ``open``.
        self.demux: Any = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backlog: deque[_Pending] = deque()
        #: Datagrams are read with their destination and sent from a chosen source (wildcard).
        self.pktinfo = False
        #: Bound peer -> the local address its nominating (or first) valid check was sent to.
        self._source: dict[Address, str] = {}
        #: While a check is being answered: its peer and the local address it was sent to.
        self._reply: tuple[Address, str] | None = None
        self._ancillary: dict[str, pktinfo.Ancillary] = {}
        #: Called after every change of ``_by_addr`` (the compiled peer table forgets).
        self._changed: Callable[[], object] = _nothing
        if native is not None:
            # SRTP/SRTCP from bound addresses go straight to the transport's compiled receiver;
            # STUN, DTLS and anything unknown come back to the Python method below.
            demux = native.Demux(
                self._by_addr, MethodType(MediaUdpProtocol.datagram_received, self)
            )
            self.datagram_received = demux.datagram_received  # type: ignore[method-assign]
            self.demux = demux
            # Its peer table remembers what ``_by_addr`` answered: told of every change (a
            # module built before the table existed has nothing to tell).
            self._changed = getattr(demux, "changed", _nothing)
        self.stun_refused = 0  # binding requests refused (bad integrity, unknown ufrag...)
        self.last_refusal = ""  # why the last one was refused (debugging and tests)

    # -- the socket -------------------------------------------------------------------------

    async def open(self, sock: socket.socket) -> None:
        """Serve ``sock`` (bound, non-blocking): batched reads by the compiled demultiplexer
        when it is built and the loop can watch file descriptors, else the loop's datagram
        transport (one ``datagram_received`` per datagram). Bound to a wildcard address, the
        socket reports each datagram's destination (``pktinfo``) and is read by the compiled
        demultiplexer or, without it, by ``_read_ready``."""
        loop = asyncio.get_running_loop()
        wildcard = pktinfo.enable(sock)
        # A module built before drain() existed (an install not rebuilt yet) keeps the old path;
        # one built before pktinfo existed cannot read destinations: the Python reader does.
        drain = getattr(self.demux, "drain", None)
        if wildcard and not hasattr(self.demux, "pktinfo"):
            drain = None
        if drain is not None or wildcard:
            fd = sock.fileno()
            try:
                if drain is not None:
                    loop.add_reader(fd, drain, MAX_BATCHES_PER_WAKEUP)
                else:
                    loop.add_reader(fd, self._read_ready)
            except NotImplementedError:  # a loop without add_reader (Windows proactor)
                pass
            else:
                self._sock, self._loop, self.fileno = sock, loop, fd
                self.family = int(sock.family)
                self.pktinfo = wildcard
                if drain is not None:
                    self.demux.fd = fd
                    if wildcard:
                        self.demux.pktinfo = True
                self.sendto = self._send_now  # type: ignore[method-assign]
                return
        await loop.create_datagram_endpoint(lambda: self, sock=sock)

    def _read_ready(self) -> None:
        """The wildcard socket is readable (no compiled module): read datagrams with their
        destination until it would block or ``MAX_READS_PER_WAKEUP`` were read."""
        receive = MediaUdpProtocol.datagram_received
        for _ in range(MAX_READS_PER_WAKEUP):
            sock = self._sock
            if sock is None:
                return
            try:
                data, ancdata, _flags, addr = sock.recvmsg(65536, pktinfo.ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # an error report (ICMP): consent freshness notices; read on next wake-up
            receive(self, data, addr, pktinfo.local_address(ancdata))

    def source_of(self, addr: Address | None) -> str | None:
        """The local address datagrams to ``addr`` leave from (None: the kernel chooses): while
        a check from ``addr`` is answered, the address it was sent to; else the one of the
        peer's nominating (or first) valid check. Always None unless ``pktinfo``."""
        reply = self._reply
        if reply is not None and reply[0] == addr:
            return reply[1]
        return None if addr is None else self._source.get(addr)

    def _ancillary_for(self, addr: Address) -> pktinfo.Ancillary | None:
        local = self.source_of(addr)
        if local is None:
            return None
        ancillary = self._ancillary.get(local)
        if ancillary is None:
            try:
                ancillary = pktinfo.source_ancillary(local, self.family)
            except ValueError:
                return None
            if len(self._ancillary) >= MAX_SOURCES_CACHED:
                self._ancillary.clear()
            self._ancillary[local] = ancillary
        return ancillary

    def _send_now(self, data: bytes, addr: Address) -> None:
        """Send on the socket this side reads (after ``open`` with the compiled path)."""
        sock = self._sock
        if sock is None or not data:
            return
        ancillary = self._ancillary_for(addr) if self.pktinfo else None
        if self._backlog:  # keep the order: behind what is already waiting
            self._queue(data, addr, ancillary)
            return
        try:
            if ancillary is None:
                sock.sendto(data, addr)
            else:
                sock.sendmsg([data], ancillary, 0, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr, ancillary)
            if self._loop is not None:
                self._loop.add_writer(self.fileno, self._flush)
        except socket.gaierror:  # an IPv4 address on a dual-stack socket: the socket's form
            mapped = socket_address(addr, self.family)
            if mapped != addr:
                self._send_now(data, mapped)
        except OSError:
            pass  # an error report (peer port closed, no route): consent freshness notices

    def _queue(self, data: bytes, addr: Address, ancillary: pktinfo.Ancillary | None) -> None:
        if len(self._backlog) >= MAX_SEND_BACKLOG:
            self.send_dropped += 1
        else:
            self._backlog.append((bytes(data), socket_address(addr, self.family), ancillary))

    def _flush(self) -> None:
        """The socket is writable again: send the backlog in order until it would block."""
        sock, backlog = self._sock, self._backlog
        while sock is not None and backlog:
            data, addr, ancillary = backlog[0]
            try:
                if ancillary is None:
                    sock.sendto(data, addr)
                else:
                    sock.sendmsg([data], ancillary, 0, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
            backlog.popleft()
        if self._loop is not None and self.fileno >= 0:
            self._loop.remove_writer(self.fileno)

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.sendto = self.transport.sendto  # type: ignore[method-assign]  # one lookup less
        sock = transport.get_extra_info("socket")
        try:
            self.fileno = sock.fileno() if sock is not None else -1
            self.family = int(sock.family) if sock is not None else socket.AF_INET
        except (AttributeError, OSError):
            self.fileno = -1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.fileno = -1
        self.__dict__.pop("sendto", None)
        self._lost.set()

    async def close(self) -> None:
        """Close the socket and wait until asyncio has released it."""
        sock, loop = self._sock, self._loop
        if sock is not None and loop is not None:
            loop.remove_reader(self.fileno)
            loop.remove_writer(self.fileno)
            if self.demux is not None:
                self.demux.fd = -1  # a drain under way stops
            self._sock = None
            self._backlog.clear()
            self.connection_lost(None)
            sock.close()
            return
        if self.transport is not None:
            self.transport.close()
            await self._lost.wait()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors (peer port closed): consent freshness notices a dead peer

    def datagram_received(self, data: bytes, addr: Address, local: str | None = None) -> None:
        """One datagram from ``addr``; ``local``: the address it was sent to (``pktinfo``)."""
        if not data:
            self.dropped += 1
            return
        first = data[0]
        if 127 < first < 192:
            endpoint = self._by_addr.get(addr)
            if endpoint is not None:
                endpoint.handle_media(data, addr)
                return
        elif first < 4:
            self._on_stun(data, addr, local)
            return
        elif 19 < first < 64:
            endpoint = self._by_addr.get(addr)
            if endpoint is not None:
                endpoint.handle_dtls(data, addr)
                return
        self.dropped += 1

    # -- STUN -------------------------------------------------------------------------------

    def _on_stun(self, data: bytes, addr: Address, local: str | None = None) -> None:
        try:
            request = BindingRequest.parse(data)
            endpoint = self._by_ufrag.get(request.local_ufrag)
            if endpoint is None:
                raise ValueError(f"STUN USERNAME names no live session: {request.local_ufrag!r}")
        except ValueError as exc:
            self._refuse(str(exc))
            return
        if local is None:
            valid = endpoint.handle_stun(request, addr)
        else:
            self._reply = (addr, local)  # the response leaves from where the check arrived
            try:
                valid = endpoint.handle_stun(request, addr)
            finally:
                self._reply = None
        if not valid:
            return
        if self._by_addr.get(addr) is not endpoint:
            self.bind_address(addr, endpoint)
        if local is not None and (request.use_candidate or addr not in self._source):
            self._source[addr] = local

    def _refuse(self, reason: str) -> None:
        self.stun_refused += 1
        self.last_refusal = reason

    # -- registry (called by the transports) ------------------------------------------------

    def refuse_stun(self, reason: str) -> None:
        """An endpoint refused a check after the lookup (bad integrity): count it here."""
        self._refuse(reason)

    def register_ufrag(self, ufrag: str, endpoint: DatagramEndpoint) -> None:
        """Route checks whose USERNAME starts with ``ufrag`` to ``endpoint``."""
        self._by_ufrag[ufrag] = endpoint

    def unregister_ufrag(self, ufrag: str, endpoint: DatagramEndpoint) -> None:
        """Forget a retired local ufrag (only if it still belongs to ``endpoint``)."""
        if self._by_ufrag.get(ufrag) is endpoint:
            del self._by_ufrag[ufrag]

    def bind_address(self, addr: Address, endpoint: DatagramEndpoint) -> None:
        """Deliver datagrams from ``addr`` to ``endpoint`` (after a valid check from it)."""
        addr = socket_address(addr, self.family)
        previous = self._by_addr.get(addr)
        if previous is not None:
            self._addrs_of[id(previous)].remove(addr)
            self._source.pop(addr, None)  # another session's peer now: its checks say again
        self._by_addr[addr] = endpoint
        addrs = self._addrs_of.setdefault(id(endpoint), [])
        addrs.append(addr)
        if len(addrs) > MAX_ADDRESSES_PER_ENDPOINT:
            evicted = addrs.pop(0)
            del self._by_addr[evicted]
            self._source.pop(evicted, None)
        self._changed()

    def unregister(self, endpoint: DatagramEndpoint, ufrags: list[str]) -> None:
        """Forget every address and ufrag of a closed endpoint."""
        for addr in self._addrs_of.pop(id(endpoint), []):
            if self._by_addr.get(addr) is endpoint:
                del self._by_addr[addr]
                self._source.pop(addr, None)
        self._changed()
        for ufrag in ufrags:
            self.unregister_ufrag(ufrag, endpoint)

    def endpoint_for_ufrag(self, ufrag: str) -> DatagramEndpoint | None:
        """The endpoint whose local ufrag is ``ufrag`` (the ICE-TCP listener looks up here too)."""
        return self._by_ufrag.get(ufrag)

    def endpoint_for(self, addr: Address) -> DatagramEndpoint | None:
        """The endpoint bound to ``addr`` (either form, see the module docstring), if any."""
        return self._by_addr.get(socket_address(addr, self.family))

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram; silently nothing once the socket is closed."""
        if self.transport is not None:
            self.transport.sendto(data, addr)
