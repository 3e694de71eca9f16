"""The worker's ICE-TCP listener: passive TCP candidates (RFC 6544) with RFC 4571 framing.

Owns ``MediaTcpServer`` (the listening socket, the cap on connections and the counters),
``TcpConnection`` (one accepted connection: its ``framing.FrameReader``, its deadline, its
bounded send buffer) and ``TcpSendTarget``, the ``target.SendTargetLike`` of a session whose
selected candidate pair runs over TCP (pure Python: the compiled fast path sends UDP datagrams
only, so the forwarders of such a session are rebuilt on this target, see
``WebRtcTransport.on_target_change``).

A connection starts unauthenticated: its first frame must be a STUN binding request (RFC 6544
§7.2: the active side sends its check first) whose USERNAME names a live session and which that
session authenticates; anything else — another first byte, a bad check, a frame longer than a
check can be, no valid check within ``auth_timeout`` — closes it. Once authenticated it belongs to
that one session for good and carries STUN, DTLS and SRTP/SRTCP, demultiplexed by first byte as
on UDP (RFC 7983). Each session keeps at most one connection (``WebRtcTransport``). Sending never
waits: beyond ``send_buffer`` bytes queued in user space a packet is dropped and counted, and a
reader that stays that slow for ``SLOW_READER_TIMEOUT`` seconds is disconnected.
At ``max_connections`` the oldest unauthenticated connection makes room for a new one; when every
connection is authenticated, the new one is closed at once.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol, cast

from .address import canonical_address
from .framing import MAX_FRAME, FrameReader, frame
from .ice import Address, BindingRequest
from .receiver import ReceiverLike
from .srtp import SrtpSession
from .target import TwccStamper

log = logging.getLogger(__name__)

#: The longest first frame accepted before authentication: a binding request from a browser is
#: 100-200 bytes; a stranger cannot make us buffer 64 KiB per connection.
MAX_CHECK_FRAME = 1500
#: Bytes queued for one connection beyond which packets are dropped, not queued.
SEND_BUFFER = 512 * 1024
#: Seconds a connection may stay above ``send_buffer`` before it is closed as a slow reader.
SLOW_READER_TIMEOUT = 5.0


class TcpEndpoint(Protocol):
    """What an authenticated connection hands its frames to (a ``WebRtcTransport``)."""

    @property
    def media_in(self) -> ReceiverLike: ...

    def handle_tcp_stun(self, request: BindingRequest, conn: TcpConnection) -> bool:
        """Answer a check that came over ``conn``; True if valid (``conn`` is now the session's)."""
        ...

    def handle_tcp_dtls(self, data: bytes, conn: TcpConnection) -> None: ...
    def tcp_closed(self, conn: TcpConnection) -> None: ...


class TcpConnection(asyncio.Protocol):
    """One accepted ICE-TCP connection (RFC 6544 passive side)."""

    def __init__(self, server: MediaTcpServer) -> None:
        self._server = server
        self._reader = FrameReader(MAX_CHECK_FRAME)
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self.endpoint: TcpEndpoint | None = None
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._paused_since: float | None = None
        self.rx_frames = self.tx_frames = self.tx_dropped = self.rx_dropped = 0

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is no asyncio.Transport subclass, but it has the same methods.
        self.transport = tcp = cast(asyncio.Transport, transport)
        peer = tcp.get_extra_info("peername")
        # An IPv4 client of a dual-stack listener is ::ffff:a.b.c.d to the socket; STUN's
        # XOR-MAPPED-ADDRESS and the logs carry a.b.c.d.
        self.peer = canonical_address((str(peer[0]), int(peer[1]))) if peer else ("", 0)
        sock = tcp.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        server = self._server
        tcp.set_write_buffer_limits(high=server.send_buffer, low=server.send_buffer // 2)
        if not server.admit(self):
            self.closed = True
            tcp.abort()
            return
        self._timer = asyncio.get_running_loop().call_later(server.auth_timeout, self._expire)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server.forget(self)
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            endpoint.tcp_closed(self)

    def pause_writing(self) -> None:
        self._paused_since = asyncio.get_running_loop().time()

    def resume_writing(self) -> None:
        self._paused_since = None

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self._reader.feed(data)
        except ValueError as exc:
            self._reject(str(exc))
            return
        for payload in frames:
            if self.closed:
                return
            self.rx_frames += 1
            endpoint = self.endpoint
            if endpoint is None:
                self._first_check(payload)
                continue
            first = payload[0]
            if 127 < first < 192:
                endpoint.media_in.receive(payload)
            elif first < 4:
                self._check(endpoint, payload)
            elif 19 < first < 64:
                endpoint.handle_tcp_dtls(payload, self)
            else:
                self.rx_dropped += 1

    def eof_received(self) -> bool:
        return False  # close our side too

    # -- STUN -------------------------------------------------------------------------------

    def _first_check(self, payload: bytes) -> None:
        if payload[0] >= 4:
            self._reject("first frame is not STUN")
            return
        try:
            request = BindingRequest.parse(payload)
        except ValueError as exc:
            self._reject(str(exc))
            return
        endpoint = self._server.lookup(request.local_ufrag)
        if endpoint is None:
            self._reject(f"STUN USERNAME names no live session: {request.local_ufrag!r}")
            return
        if not endpoint.handle_tcp_stun(request, self):
            self._reject("the session refused the check")
            return
        self.endpoint = endpoint
        self._reader.max_frame = MAX_FRAME
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server.authenticated(self)

    def _check(self, endpoint: TcpEndpoint, payload: bytes) -> None:
        try:
            request = BindingRequest.parse(payload)
        except ValueError as exc:
            self._server.refuse(str(exc))
            return
        if self._server.lookup(request.local_ufrag) is not endpoint:
            self._server.refuse("STUN USERNAME names another session")
            return
        if not endpoint.handle_tcp_stun(request, self):
            self._server.refuse("the session refused the check")

    # -- sending and closing ----------------------------------------------------------------

    def send(self, payload: bytes) -> bool:
        """Frame and queue one packet; False (dropped) when closed or the reader is too slow."""
        tcp = self.transport
        if self.closed or tcp is None:
            return False
        paused = self._paused_since
        if paused is not None:
            self.tx_dropped += 1
            self._server.tx_dropped += 1
            if asyncio.get_running_loop().time() - paused >= SLOW_READER_TIMEOUT:
                self._server.slow_readers += 1
                self.close(abort=True)
            return False
        try:
            tcp.write(frame(payload))
        except ValueError:
            self.tx_dropped += 1
            return False
        self.tx_frames += 1
        return True

    def close(self, *, abort: bool = False) -> None:
        """Close (flushing a small queue first) or abort. Idempotent."""
        if self.closed:
            return
        self.closed = True
        tcp = self.transport
        if tcp is None:
            return
        if abort or tcp.get_write_buffer_size() > 0:
            tcp.abort()
        else:
            tcp.close()

    def _reject(self, reason: str) -> None:
        self._server.refuse(reason)
        self.close(abort=True)

    def _expire(self) -> None:
        self._timer = None
        if self.endpoint is None and not self.closed:
            self._server.timed_out += 1
            self._server.last_refusal = "no valid STUN binding request in time"
            self.close(abort=True)


class MediaTcpServer:
    """The worker's ICE-TCP listening socket and its connections."""

    def __init__(
        self,
        lookup: Callable[[str], TcpEndpoint | None],
        *,
        max_connections: int = 1000,
        auth_timeout: float = 5.0,
        send_buffer: int = SEND_BUFFER,
    ) -> None:
        self.lookup = lookup
        self.max_connections = max_connections
        self.auth_timeout = auth_timeout
        self.send_buffer = send_buffer
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pending: dict[TcpConnection, None] = {}  # unauthenticated, oldest first
        self._live: set[TcpConnection] = set()  # authenticated
        self.accepted = self.over_cap = self.evicted = self.timed_out = 0
        self.refused = self.tx_dropped = self.slow_readers = 0
        self.last_refusal = ""

    @property
    def connections(self) -> int:
        """Open connections, authenticated or not."""
        return len(self._pending) + len(self._live)

    @property
    def unauthenticated(self) -> int:
        return len(self._pending)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "::" serves IPv4 clients too, as the UDP socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if host != "::" else 0)
            sock.bind((host, port))
            sock.setblocking(False)
            self._server = await loop.create_server(
                lambda: TcpConnection(self), sock=sock, backlog=1024
            )
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and abort every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._pending) + list(self._live):
            conn.close(abort=True)
        if server is not None:
            await server.wait_closed()

    # -- called by the connections ----------------------------------------------------------

    def admit(self, conn: TcpConnection) -> bool:
        """Room for ``conn``? Evicts the oldest unauthenticated connection at the cap."""
        self.accepted += 1
        if self.connections >= self.max_connections:
            if not self._pending:
                self.over_cap += 1
                return False
            oldest = next(iter(self._pending))
            self.evicted += 1
            self.last_refusal = "evicted: connection cap reached"
            oldest.close(abort=True)
            self._pending.pop(oldest, None)
        self._pending[conn] = None
        return True

    def authenticated(self, conn: TcpConnection) -> None:
        self._pending.pop(conn, None)
        self._live.add(conn)

    def forget(self, conn: TcpConnection) -> None:
        self._pending.pop(conn, None)
        self._live.discard(conn)

    def refuse(self, reason: str) -> None:
        """A bad first frame or check (evictions and timeouts are counted apart)."""
        self.refused += 1
        self.last_refusal = reason

    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics and tests."""
        return {
            "port": self.port,
            "connections": self.connections,
            "unauthenticated": self.unauthenticated,
            "accepted": self.accepted,
            "over_cap": self.over_cap,
            "evicted": self.evicted,
            "timed_out": self.timed_out,
            "refused": self.refused,
            "tx_dropped": self.tx_dropped,
            "slow_readers": self.slow_readers,
        }


class TcpSendTarget(TwccStamper):
    """Protects RTP and sends it framed over the session's TCP connection (``SendTargetLike``);
    stamps transport-wide sequence numbers as the UDP target does (``target.TwccStamper``)."""

    __slots__ = (
        "address", "enabled", "tx_packets", "tx_bytes", "srtp_errors", "send_errors",
        "_conn", "_srtp",
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.address: Address | None = None
        self.enabled = False
        self.tx_packets = self.tx_bytes = self.srtp_errors = self.send_errors = 0
        self._conn: TcpConnection | None = None
        self._srtp: SrtpSession | None = None

    @property
    def ready(self) -> bool:
        return self.enabled and self._srtp is not None and self._conn is not None

    @property
    def connection(self) -> TcpConnection | None:
        return self._conn

    def set_connection(self, conn: TcpConnection | None) -> None:
        self._conn = conn
        self.address = None if conn is None else conn.peer

    def set_srtp(self, ctx: int, protect: int, keep: SrtpSession, protect_rtcp: int = 0) -> None:
        self._srtp = keep

    def clear_srtp(self) -> None:
        self._srtp = None

    @property
    def source(self) -> str | None:
        """A connection sends from the address it was accepted on: never chosen here."""
        return None

    def set_address(self, addr: Address | None, source: str | None = None) -> None:
        """The address follows the connection; ``None`` detaches it."""
        if addr is None:
            self.set_connection(None)

    def send(self, packet: bytes | bytearray) -> None:
        srtp, conn = self._srtp, self._conn
        if srtp is None or conn is None or not self.enabled:
            return
        if self.twcc_id:
            packet = self.stamp(packet)
        try:
            data = srtp.protect_rtp(packet)
        except ValueError:
            self.srtp_errors += 1
            return
        if conn.send(data):
            self.tx_packets += 1
            self.tx_bytes += len(data)
        else:
            self.send_errors += 1

    def send_rtcp(self, packet: bytes | bytearray) -> None:
        """SRTCP-protect one (compound) RTCP packet and send it framed on the connection."""
        srtp, conn = self._srtp, self._conn
        if srtp is None or conn is None or not self.enabled:
            return
        try:
            data = srtp.protect_rtcp(bytes(packet))
        except ValueError:
            self.srtp_errors += 1
            return
        if conn.send(data):
            self.tx_packets += 1
            self.tx_bytes += len(data)
        else:
            self.send_errors += 1
