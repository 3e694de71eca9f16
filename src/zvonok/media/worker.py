"""``MediaWorker``: one UDP socket, one DTLS certificate and one housekeeping tick per process.

Owns: the worker's socket (``transport.udp.MediaUdpProtocol``), its optional ICE-TCP listener
(``transport.tcp.MediaTcpServer``, RFC 6544 passive), its ECDSA P-256 certificate and
DTLS context, the live ``WebRtcTransport``s, the announced host candidates (RFC 8445 §5.1.1.1,
priorities per §5.1.2.1, loopback lowest; ``tcptype passive`` ones after them, priorities per
RFC 6544 §4.2, so always below every UDP one) and the tick task that runs the callbacks
registered with ``add_tick`` (the rooms' routers) and, once a second, evaluates every transport's
consent and DTLS timeouts. The tick runs at ~4 Hz while a room on the worker has a published
track (a router holds ``hurry``: RTCP, NACK retries, keyframe requests, the layer allocation),
and at ~1 Hz while none has (``IDLE_TICK_INTERVAL``: nothing of that exists, and an idle server's
cost is its wake-ups); the first hold brings the next tick to one ``TICK_INTERVAL`` after the
last, not after the slow sleep. A pass runs in slices of ``TICK_SLICE`` (0.5 ms): between two slices
the event loop reads the socket, so a packet never waits behind a whole pass over every room.
The tick sleeps while the worker is ``idle`` (no transport, and no callback registered with
``keep_awake``: an idle media worker process wakes up for nothing) and runs again from the next
transport or such callback on.
IPv6: ``host = "::"`` binds one dual-stack socket (``IPV6_V6ONLY`` off) that serves IPv4 and IPv6
peers on the one port (IPv4 peers appear as ``::ffff:a.b.c.d``, see ``transport.address``); a
kernel without IPv6 falls back to ``0.0.0.0`` with a warning. Announced addresses are canonical
(RFC 5952 text, IPv4-mapped unwrapped), rendered unbracketed in candidates (RFC 8839 §5.1).
Must not import anything from zvonok outside ``zvonok.media`` (and ``zvonok.errors``/``ids``).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence

from .fastpath import native
from .transport.address import canonical_ip, is_ipv6
from .transport.dtls import DtlsCertificate
from .transport.tcp import MediaTcpServer
from .transport.transport import TransportListener, WebRtcTransport
from .transport.udp import MediaUdpProtocol

log = logging.getLogger(__name__)

#: Seconds between two housekeeping ticks (the routers' RTCP and NACK timing needs ~250 ms).
TICK_INTERVAL = 0.25
#: Seconds between two ticks while no room on the worker has a published track (no router holds
#: ``hurry``): what is left to do then — the transports' sweep, each session's ``stats`` on its
#: phase of a 5 s interval, idle rooms' checks — needs no more (a callback may ask for less with
#: ``add_tick(idle_period=...)``, the quality monitor does for a shorter ``stats_interval``).
IDLE_TICK_INTERVAL = 1.0
#: The longest the tick keeps the event loop before it lets waiting packets through (seconds):
#: a tick over many rooms runs in slices, so no packet waits behind all of it.
TICK_SLICE = 0.0005
#: Seconds between two sweeps of every transport's consent and DTLS deadlines: their timeouts
#: are whole seconds (8 s stale, 30 s consent, 10 s DTLS), and an idle server's cost is mostly
#: such wake-ups, so the sweep runs on every fourth tick, not on each.
TRANSPORT_SWEEP_INTERVAL = 1.0
#: Socket buffers: a burst of keyframe packets for many subscribers must not overflow them.
SOCKET_BUFFER = 4 * 1024 * 1024
_SIOCGIFADDR = 0x8915
#: RFC 8445 §5.1.2.2: type preference of host candidates (RFC 6544 §4.2: the same for TCP).
_HOST_TYPE_PREFERENCE = 126
#: RFC 6544 §4.2: direction-pref of a passive host candidate (6 active, 4 passive, 2 S-O).
_PASSIVE_DIRECTION_PREFERENCE = 4


def local_ipv4_addresses() -> list[str]:
    """Every interface's IPv4 address (SIOCGIFADDR), loopback last; 127.0.0.1 always included."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue  # no IPv4 address on this interface
            ip = socket.inet_ntoa(reply[20:24])
            if ip not in found:
                found.append(ip)
    if "127.0.0.1" not in found:
        found.append("127.0.0.1")
    return sorted(found, key=lambda ip: ipaddress.ip_address(ip).is_loopback)


#: Linux's list of IPv6 addresses: address (hex), ifindex, prefix, scope, flags, name.
_IF_INET6 = "/proc/net/if_inet6"
#: IFA_F_TENTATIVE | IFA_F_DADFAILED: an address the kernel does not use (yet).
_UNUSABLE_IPV6_FLAGS = 0x40 | 0x08


def local_ipv6_addresses(path: str = _IF_INET6) -> list[str]:
    """Every interface's usable IPv6 address, link-local ones left out (a candidate cannot carry
    their zone), loopback last; empty when the kernel has no IPv6."""
    found: list[str] = []
    try:
        with open(path, encoding="ascii") as table:
            lines = table.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        try:
            ip = ipaddress.IPv6Address(int(fields[0], 16))
            flags = int(fields[4], 16)
        except ValueError:
            continue
        if ip.is_link_local or ip.is_multicast or flags & _UNUSABLE_IPV6_FLAGS:
            continue
        if ip.compressed not in found:
            found.append(ip.compressed)
    return sorted(found, key=lambda text: ipaddress.ip_address(text).is_loopback)


def host_candidates(ips: Sequence[str], port: int, tcp_port: int | None = None) -> list[str]:
    """``candidate:`` lines for host candidates, all on the one worker port (component 1); with
    ``tcp_port``, a ``tcptype passive`` candidate per address after the UDP ones (RFC 6544 §4.5)
    with a distinct foundation (RFC 8445 §5.1.1.3: another transport protocol)."""
    lines = []
    for index, ip in enumerate(ips):
        local_preference = max(65535 - index, 0)
        priority = (_HOST_TYPE_PREFERENCE << 24) | (local_preference << 8) | (256 - 1)
        lines.append(f"candidate:{index + 1} 1 udp {priority} {ip} {port} typ host")
    if tcp_port is not None:
        for index, ip in enumerate(ips):
            priority = tcp_priority(index)
            foundation = len(ips) + index + 1
            lines.append(
                f"candidate:{foundation} 1 tcp {priority} {ip} {tcp_port} typ host tcptype passive"
            )
    return lines


def tcp_priority(index: int) -> int:
    """RFC 6544 §4.2: local preference = 2^13 * direction-pref + other-pref (8191 for the first
    address, one less for each next): at most 40959, below every UDP host candidate's."""
    other_preference = max(8191 - index, 0)
    local_preference = (_PASSIVE_DIRECTION_PREFERENCE << 13) + other_preference
    return (_HOST_TYPE_PREFERENCE << 24) | (local_preference << 8) | (256 - 1)


def _announced(host: str, announce_ips: Sequence[str]) -> list[str]:
    """The addresses put into candidates: ``announce_ips`` if given; for ``0.0.0.0`` every local
    IPv4 address; for ``::`` every local IPv4 address, then every IPv6 one, loopback last."""
    if announce_ips:
        return list(dict.fromkeys(canonical_ip(ip) for ip in announce_ips))
    if host in ("", "0.0.0.0"):
        return local_ipv4_addresses()
    if host == "::":
        ips = [*local_ipv4_addresses(), *local_ipv6_addresses()]
        return sorted(ips, key=lambda text: ipaddress.ip_address(text).is_loopback)
    return [canonical_ip(host)]


def media_socket(host: str, port: int) -> socket.socket:
    """The worker's UDP socket bound to ``host:port``: ``::`` is dual-stack (``IPV6_V6ONLY``
    off, whatever ``net.ipv6.bindv6only`` says), another IPv6 address IPv6 only."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class MediaWorker:
    """The media plane of one process: socket, certificate, transports and the tick."""

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",
        port: int = 40000,
        announce_ips: Sequence[str] = (),
        consent_timeout: float = 30.0,
        dtls_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        ice_tcp: bool = False,
        tcp_port: int | None = None,
        tcp_max_connections: int = 1000,
        tcp_auth_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        #: The ICE-TCP listener (None: UDP only). ``tcp_port`` None: the UDP port's number.
        self.tcp: MediaTcpServer | None = None
        if ice_tcp:
            self.tcp = MediaTcpServer(
                self._tcp_endpoint,
                max_connections=tcp_max_connections,
                auth_timeout=tcp_auth_timeout,
            )
        self._tcp_port = tcp_port
        self.announced_ips: list[str] = _announced(host, announce_ips)
        self.certificate = DtlsCertificate.generate()
        self.fingerprint = ("sha-256", self.certificate.fingerprint("sha-256"))
        self.consent_timeout = consent_timeout
        self.dtls_timeout = dtls_timeout
        self.clock = clock
        self.udp = MediaUdpProtocol()
        self._context = self.certificate.make_context()
        self._transports: dict[str, WebRtcTransport] = {}
        #: The tick's callbacks in registration order, by a key of their registration.
        self._ticks: dict[int, Callable[[float], None]] = {}
        self._tick_keys = 0
        #: How many of ``_ticks`` keep the tick running with no transport (the rooms' routers).
        self._keepers = 0
        self._wake = asyncio.Event()
        #: Ticks since the tick last woke from idle (1 on the first after a pause).
        self.awake_ticks = 0
        self._tick_task: asyncio.Task[None] | None = None
        self._candidates: list[str] = []
        self._next_sweep = float("-inf")
        #: How many holders (routers with a published track) keep the tick at ``TICK_INTERVAL``.
        self._hurried = 0
        #: The callbacks' ``idle_period``s, by the key of their registration.
        self._idle_periods: dict[int, float] = {}
        #: The tick's current sleep: when it started (loop time), its timer and its waiter.
        self._sleep_started = 0.0
        self._sleep_timer: asyncio.TimerHandle | None = None
        self._sleep_waiter: asyncio.Future[None] | None = None
        #: Seconds the tick planned to sleep before its last pass (the loop-lag probe's baseline).
        self.slept = TICK_INTERVAL

    @property
    def transports(self) -> dict[str, WebRtcTransport]:
        """Live transports by id (read-only use)."""
        return self._transports

    @property
    def forwarding(self) -> str:
        """Which forwarding loop runs: "compiled" (C, one sendmmsg per fan-out) or "python"."""
        return "compiled" if native is not None and self.udp.fileno >= 0 else "python"

    def transport_count(self) -> int:
        """How many transports are live (health endpoint, metrics)."""
        return len(self._transports)

    async def start(self) -> None:
        """Bind the UDP socket (port 0 picks an ephemeral port, see ``.port``), start the tick."""
        try:
            sock = media_socket(self.host, self.port)
        except OSError as exc:
            if self.host != "::" or exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
            log.warning("media: no IPv6 on this host (%s); serving IPv4 on 0.0.0.0 only", exc)
            self.host = "0.0.0.0"
            self.announced_ips = [ip for ip in self.announced_ips if not is_ipv6(ip)]
            sock = media_socket(self.host, self.port)
        try:
            await self.udp.open(sock)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        tcp_port: int | None = None
        if self.tcp is not None:
            try:
                tcp_port = await self._start_tcp(self.tcp)
            except BaseException:
                await self.udp.close()
                raise
        self._candidates = host_candidates(self.announced_ips, self.port, tcp_port)
        self._tick_task = asyncio.create_task(self._tick_loop(), name="media-worker-tick")
        log.info(
            "media worker on %s:%d (udp)%s, announcing %s",
            self.host,
            self.port,
            "" if tcp_port is None else f" and :{tcp_port} (ice-tcp)",
            self.announced_ips,
        )

    async def _start_tcp(self, tcp: MediaTcpServer) -> int:
        """Listen for ICE-TCP on ``tcp_port``, or on the UDP port's number when unset; in that
        case a number already taken by another TCP socket falls back to any free port (the
        candidates announce the real one) with a warning."""
        if self._tcp_port is not None:
            return await tcp.start(self.host, self._tcp_port)
        try:
            return await tcp.start(self.host, self.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        port = await tcp.start(self.host, 0)
        log.warning(
            "ICE-TCP: TCP port %d is taken, listening on %d instead (set media_tcp_port)",
            self.port,
            port,
        )
        return port

    async def close(self) -> None:
        """Close every transport, then the tick task and the socket. Idempotent."""
        for transport in list(self._transports.values()):
            transport.close()
        task, self._tick_task = self._tick_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # our own cancellation still propagates
        if self.tcp is not None:
            await self.tcp.close()
        await self.udp.close()

    def create_transport(self, listener: TransportListener) -> WebRtcTransport:
        """A new session transport on this worker's socket."""
        transport = WebRtcTransport(
            transport_id=secrets.token_hex(6),
            listener=listener,
            udp=self.udp,
            dtls_context=self._context,
            fingerprint=self.fingerprint,
            candidates=self.local_candidates,
            loop=asyncio.get_running_loop(),
            clock=self.clock,
            consent_timeout=self.consent_timeout,
            dtls_timeout=self.dtls_timeout,
            on_closed=self._transport_closed,
        )
        self._transports[transport.id] = transport
        self._wake.set()
        return transport

    def local_candidates(self) -> list[str]:
        """The worker's host candidates (the same for every transport)."""
        return list(self._candidates)

    @property
    def idle(self) -> bool:
        """No transport and no callback that keeps the tick running: the tick sleeps."""
        return not self._transports and not self._keepers

    def add_tick(
        self,
        callback: Callable[[float], None],
        *,
        keep_awake: bool = True,
        idle_period: float | None = None,
    ) -> Callable[[], None]:
        """Run ``callback(now)`` on every housekeeping tick; returns the unsubscribe function.

        ``keep_awake=False``: the callback has nothing to do while the worker has no transport
        (a process's metrics, load report, quality monitor), so it does not keep the tick from
        sleeping; it runs on each tick while there is one, and once more after the last
        transport closed (the tick then sleeps until the next transport).
        ``idle_period``: the longest the callback may wait between two ticks while nothing is
        published (``tick_interval``; never below ``TICK_INTERVAL``)."""
        self._tick_keys += 1
        key = self._tick_keys
        self._ticks[key] = callback
        if idle_period is not None:
            self._idle_periods[key] = idle_period
        if keep_awake:
            self._keepers += 1
            self._wake.set()

        def unsubscribe() -> None:
            self._idle_periods.pop(key, None)
            if self._ticks.pop(key, None) is not None and keep_awake:
                self._keepers -= 1

        return unsubscribe

    @property
    def tick_interval(self) -> float:
        """Seconds between two ticks now: ``TICK_INTERVAL`` while anything holds ``hurry``,
        else ``IDLE_TICK_INTERVAL`` or the shortest ``idle_period`` asked for (not below
        ``TICK_INTERVAL``)."""
        if self._hurried:
            return TICK_INTERVAL
        periods = self._idle_periods
        slow = min(IDLE_TICK_INTERVAL, *periods.values()) if periods else IDLE_TICK_INTERVAL
        return max(TICK_INTERVAL, slow)

    def hurry(self) -> Callable[[], None]:
        """Keep the tick at ``TICK_INTERVAL`` until the returned release is called (once; a
        second call does nothing). A router holds it while its room has a published track.
        The first hold while the tick sleeps a longer interval moves its wake-up to one
        ``TICK_INTERVAL`` after the sleep began (or now, if that has passed): what a new track
        needs from the tick (its layer allocation, keyframe requests, RTCP) never waits for the
        rest of a slow sleep."""
        self._hurried += 1
        if self._hurried == 1:
            self._shorten_sleep()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._hurried -= 1

        return release

    def _shorten_sleep(self) -> None:
        waiter, timer = self._sleep_waiter, self._sleep_timer
        if waiter is None or timer is None or waiter.done() or self.slept <= TICK_INTERVAL:
            return
        loop = waiter.get_loop()
        timer.cancel()
        due = max(self._sleep_started + TICK_INTERVAL, loop.time())
        self.slept = due - self._sleep_started
        self._sleep_timer = loop.call_at(due, _wake_up, waiter)

    async def _sleep(self, interval: float) -> None:
        """Sleep ``interval`` seconds (``hurry`` may end it sooner)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._sleep_started = started = loop.time()
        self.slept = interval
        self._sleep_waiter = waiter
        self._sleep_timer = loop.call_at(started + interval, _wake_up, waiter)
        try:
            await waiter
        finally:
            timer, self._sleep_timer, self._sleep_waiter = self._sleep_timer, None, None
            if timer is not None:
                timer.cancel()

    def tick(self, now: float) -> None:
        """One housekeeping pass in one go (tests call it with a fake clock): the transports'
        deadlines once per ``TRANSPORT_SWEEP_INTERVAL``, the callbacks always."""
        for _ in self._tick_steps(now):
            pass

    async def tick_sliced(self, now: float) -> None:
        """The same pass as ``tick``, giving the event loop a turn whenever a slice of it took
        ``TICK_SLICE``: packets that arrive meanwhile are forwarded between two rooms' work
        instead of after all of it (the SFU-added latency's tail, docs/benchmarks.md)."""
        clock = time.perf_counter
        started = clock()
        for _ in self._tick_steps(now):
            if clock() - started >= TICK_SLICE:
                await asyncio.sleep(0)
                started = clock()

    def _tick_steps(self, now: float) -> Iterator[None]:
        """The pass, one step per transport or callback. A transport closed or a callback
        unsubscribed while the loop had its turn is skipped."""
        if now >= self._next_sweep:
            self._next_sweep = now + TRANSPORT_SWEEP_INTERVAL * 0.95
            for transport in list(self._transports.values()):
                if self._transports.get(transport.id) is transport:
                    transport.tick(now)
                    yield
        for key, callback in list(self._ticks.items()):
            if key not in self._ticks:
                continue
            try:
                callback(now)
            except Exception:
                log.exception("tick callback %r raised", callback)
            yield

    async def _tick_loop(self) -> None:
        while True:
            if self.idle:
                self._wake.clear()
                await self._wake.wait()
                self.awake_ticks = 0
            await self._sleep(self.tick_interval)
            self.awake_ticks += 1
            try:
                await self.tick_sliced(self.clock())
            except Exception:  # a bug in one pass must not stop consent checking for good
                log.exception("media worker tick failed")

    def _tcp_endpoint(self, ufrag: str) -> WebRtcTransport | None:
        """The live transport whose local ufrag is ``ufrag`` (for ICE-TCP's first check)."""
        endpoint = self.udp.endpoint_for_ufrag(ufrag)
        return endpoint if isinstance(endpoint, WebRtcTransport) else None

    def _transport_closed(self, transport: WebRtcTransport) -> None:
        self._transports.pop(transport.id, None)


def _wake_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
