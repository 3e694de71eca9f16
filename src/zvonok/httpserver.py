"""The connection layer of the HTTP/WebSocket port: uvicorn's protocols with the limits that keep
the port safe before anyone authenticates, and the exact liveness deadline of a WebSocket.

Owns ``EdgeLimits`` (the settings), ``ConnectionTable`` (open connections, in total and per
client address), ``connection_budget`` (``max_connections`` bounded by the file-descriptor limit)
and ``protocol_classes``, which builds the two classes ``app.run`` hands to uvicorn:

- ``EdgeHttpProtocol`` (uvicorn's httptools protocol): a connection beyond ``max_connections``, or
  beyond ``max_connections_per_ip`` from one address (IPv4) or /64 (IPv6), is answered ``503`` and
  closed at once; a request head (request line and header fields, RFC 9112 §2.1) that is not
  complete ``header_timeout`` after the connection opened (on a kept-alive connection: after the
  next request began) is answered ``408`` and closed, however slowly its bytes trickle in.
- ``EdgeWebSocketProtocol`` (uvicorn's sans-I/O websockets protocol): on upgrade it takes over
  the connection's slot, released when the socket closes; it pings every ``ping_interval``
  (RFC 6455 §5.5.2) and fails the connection (close 1011, §7.1.7) ``silence_timeout`` after the
  client's last message or pong (§5.5.3), exactly, wherever that falls between two pings. Both
  timers run on ``Edge.beat``, a 1 s beat every connection shares (``beat.Beat``), so an idle
  server wakes once a second for them, not once per connection and timer.

Imports uvicorn, ``beat`` and ``metrics`` only; knows nothing about calls.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame

from . import metrics
from .beat import Beat, BeatHandle

log = logging.getLogger("zvonok.edge")

#: File descriptors kept free of client connections: the media socket, database and HTTP
#: clients, log files, the event loop's own.
FD_RESERVE = 256
#: How long a closed WebSocket waits for the client's close frame before the socket is cut
#: (RFC 6455 §7.1.1); a live client answers within a round trip.
CLOSE_TIMEOUT = 5.0
#: Refusals are logged at most this often per reason (each one is counted in the metrics).
LOG_EVERY = 10.0
#: The WebSockets' keepalive pings and silence checks run on a shared beat of this many
#: seconds (``beat.Beat``): a ping goes out up to this much before ``ping_interval`` is up.
KEEPALIVE_BEAT = 1.0

_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 20\r\nconnection: close\r\nretry-after: 5\r\n\r\ntoo many connections"
)
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 24\r\nconnection: close\r\n\r\nrequest header too slow\n"
)


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The edge's settings (see docs/configuration.md)."""

    max_connections: int = 10_000
    max_connections_per_ip: int = 200
    header_timeout: float = 10.0
    #: A socket with no message and no pong for this long is failed; 0 = never.
    silence_timeout: float = 30.0
    #: Trusted proxies (IPs/CIDRs): each client's connections arrive from them, so the
    #: per-address cap does not apply to them (the total cap does).
    proxies: tuple[str, ...] = ()


def client_key(host: str) -> str:
    """What the per-address cap counts: an IPv4 address, an IPv6 /64, or the text as given."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ConnectionTable:
    """Open connections, in total and per client key; a key's entry exists while it has one."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.open = 0
        self._by_key: dict[str, int] = {}

    def acquire(self, key: str, *, capped: bool = True) -> str | None:
        """Count one more connection of ``key``; the refusal reason when a cap is reached.
        ``capped=False``: the per-key cap does not apply (a trusted proxy)."""
        if self.open >= self.total:
            return "max-connections"
        count = self._by_key.get(key, 0)
        if capped and count >= self.per_ip:
            return "max-connections-per-ip"
        self._by_key[key] = count + 1
        self.open += 1
        return None

    def release(self, key: str) -> None:
        count = self._by_key.get(key, 0)
        if count <= 0:
            raise ValueError(f"release of {key!r} without a connection")
        if count == 1:
            del self._by_key[key]
        else:
            self._by_key[key] = count - 1
        self.open -= 1

    def count(self, key: str) -> int:
        return self._by_key.get(key, 0)


class _Slot:
    """One admitted connection's place in the table; released once, by whoever holds it last."""

    __slots__ = ("_table", "key")

    def __init__(self, table: ConnectionTable, key: str) -> None:
        self._table: ConnectionTable | None = table
        self.key = key

    def release(self) -> None:
        if self._table is not None:
            self._table.release(self.key)
            self._table = None


class Edge:
    """State shared by every connection of one server: limits, table, refusal accounting."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.table = ConnectionTable(limits.max_connections, limits.max_connections_per_ip)
        self._proxies = tuple(ipaddress.ip_network(n, strict=False) for n in limits.proxies)
        self._log_after: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        #: Every WebSocket's keepalive timers, one loop wake-up per beat.
        self.beat = Beat(KEEPALIVE_BEAT)

    def admit(self, host: str | None) -> _Slot | str:
        """A slot for a new connection from ``host``, or the reason it is refused."""
        key = client_key(host) if host is not None else "local"
        capped = not (host is not None and self._is_proxy(host))
        refusal = self.table.acquire(key, capped=capped)
        if refusal is not None:
            self.refused(refusal, key)
            return refusal
        return _Slot(self.table, key)

    def _is_proxy(self, host: str) -> bool:
        if not self._proxies:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._proxies)

    def refused(self, reason: str, key: str) -> None:
        """Count a refused or cut connection; log it, at most every ``LOG_EVERY`` per reason."""
        metrics.record("edge_refusals", reason)
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        now = time.monotonic()
        if now < self._log_after.get(reason, 0.0):
            return
        self._log_after[reason] = now + LOG_EVERY
        count = self._unlogged.pop(reason)
        log.warning(
            "connections refused or cut (%s): %d in the last %.0f s, the latest from %s; "
            "%d open (max_connections %d, max_connections_per_ip %d)",
            reason,
            count,
            LOG_EVERY,
            key,
            self.table.open,
            self.limits.max_connections,
            self.limits.max_connections_per_ip,
        )


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with connection caps and a request-head deadline."""

    edge: ClassVar[Edge]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slot: _Slot | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        slot = self.edge.admit(self.client[0] if self.client else None)
        if isinstance(slot, str):
            transport.write(_REFUSED)
            transport.close()
            return
        self._slot = slot
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._cancel_head_timer()
            if self._slot is not None:
                self._slot.release()
                self._slot = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None and self._slot is not None:
            self._arm_head_timer()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        slot, self._slot = self._slot, None
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if isinstance(protocol, EdgeWebSocketProtocol) and slot is not None:
            protocol.adopt(slot)
        elif slot is not None:  # not ours (a misconfiguration): never leak the slot
            slot.release()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.edge.limits.header_timeout, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        self.edge.refused("header-timeout", self._slot.key if self._slot else "?")
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_TIMED_OUT)  # else a response is under way: just cut
        self.transport.close()


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol holding its connection's slot, with a silence
    deadline counted from the client's last message or pong.

    uvicorn's own keepalive runs without a pong deadline (``ws_ping_timeout=None``): it only
    sends a ping every ``ping_interval`` (here on the edge's shared ``Beat``: at most
    ``KEEPALIVE_BEAT`` early, with every other connection's pings of that second).
    ``_silence_check`` fails the connection when nothing arrived for ``silence_timeout``; it is
    re-armed lazily, so a message costs one clock read, on the beat while the deadline is two
    beats or more away and then on a timer of its own, so the deadline is exact.
    """

    edge: ClassVar[Edge]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = CLOSE_TIMEOUT
        self._slot: _Slot | None = None
        self._last_seen = 0.0
        self._silence_timer: BeatHandle | asyncio.TimerHandle | None = None
        self._ping_handle: BeatHandle | asyncio.TimerHandle | None = None

    def adopt(self, slot: _Slot) -> None:
        """Hold the slot of the HTTP connection this WebSocket was upgraded from."""
        if self.disconnected:
            slot.release()
        else:
            self._slot = slot

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._cancel_silence_timer()
            if self._slot is not None:
                self._slot.release()
                self._slot = None

    def start_keepalive(self) -> None:  # the handshake was accepted
        super().start_keepalive()
        silence = self.edge.limits.silence_timeout
        if silence > 0:
            self._last_seen = now = self.loop.time()
            self._silence_timer = self.edge.beat.call_at(
                self.loop, now + silence, self._silence_check
            )

    def schedule_ping(self) -> None:
        """uvicorn's, on the beat: the next ping at the last beat at or before ``ping_interval``
        from now (uvicorn subtracts the last round trip because it schedules at the pong when a
        pong deadline is set; without one it schedules here, at the ping, and on the beat the
        pings then stay ``ping_interval`` apart)."""
        assert self.ping_interval is not None
        self._ping_handle = self.edge.beat.call_at(
            self.loop, self.loop.time() + self.ping_interval, self.send_keepalive_ping
        )

    def stop_keepalive(self) -> None:
        super().stop_keepalive()
        if self._ping_handle is not None:
            self._ping_handle.cancel()
            self._ping_handle = None
        self._cancel_silence_timer()

    # Signs of life: a data frame or a pong (a ping from the client is not: a client that pings
    # but reads nothing never answers ours).
    def handle_text(self, event: Frame) -> None:
        self._last_seen = self.loop.time()
        super().handle_text(event)

    def handle_bytes(self, event: Frame) -> None:
        self._last_seen = self.loop.time()
        super().handle_bytes(event)

    def handle_cont(self, event: Frame) -> None:
        self._last_seen = self.loop.time()
        super().handle_cont(event)

    def handle_pong(self, event: Frame) -> None:
        self._last_seen = self.loop.time()
        super().handle_pong(event)

    def _silence_check(self) -> None:
        self._silence_timer = None
        now = self.loop.time()
        if self.read_paused:  # the application has not read the last message: it is behind
            self._last_seen = now
        left = self._last_seen + self.edge.limits.silence_timeout - now
        if left > 0:
            self._silence_timer = self.edge.beat.call_at(self.loop, now + left, self._silence_check)
            return
        self.edge.refused("silence-timeout", self._slot.key if self._slot else "?")
        self.keepalive_timeout()  # close 1011 "keepalive ping timeout", socket closed now

    def _cancel_silence_timer(self) -> None:
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None


def protocol_classes(
    limits: EdgeLimits,
) -> tuple[type[EdgeHttpProtocol], type[EdgeWebSocketProtocol]]:
    """The HTTP and WebSocket protocol classes of one server, sharing one connection table."""
    edge = Edge(limits)

    class Http(EdgeHttpProtocol):
        pass

    class WebSocket(EdgeWebSocketProtocol):
        pass

    Http.edge = edge
    WebSocket.edge = edge
    return Http, WebSocket


def connection_budget(max_connections: int) -> int:
    """``max_connections``, bounded by the file-descriptor limit (raised toward it if allowed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - FD_RESERVE))
