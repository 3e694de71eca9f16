"""One generated call participant: signaling, ICE, DTLS-SRTP, replaying and receiving media.

Owns ``Meter`` (what every participant counts into: packets sent and received per kind inside the
measurement window, one-way latencies), ``Pacer`` (a browser-like video pacer), ``MediaLeg`` (one
peer connection's media plane, shared with the Janus target in ``janus``) and ``BenchClient``: the
protocol of docs/protocol.md over ``websockets`` with one ``MediaLeg``. The leg is a full ICE agent
reduced to what a loopback call needs (one host candidate, one check with USE-CANDIDATE, consent
checks every 4-6 s, RFC 8445 §7.2 / RFC 7675), DTLS (RFC 5764, via
``zvonok.media.transport.dtls``'s context and key export; the client role against zvonok, either
role against Janus) and SRTP (pylibsrtp via ``zvonok.media.transport.srtp``). Media is the
``Clip`` replayed: Opus every 20 ms, VP8 at 30 fps through the pacer (or in one burst per frame),
a keyframe (the loop restarts) on PLI/FIR. Every RTP packet carries RTP padding (RFC 3550 §5.1)
holding its send time (CLOCK_REALTIME, taken just before SRTP protect and ``sendto``), the
publisher's own packet number for that kind, the publisher and the kind; the server forwards
padding untouched and never reads it, subscribers read it back. A subscriber counts a packet as
delivered only when it comes from a publisher it subscribes to (``MediaLeg.sources``) and is the
first copy of that packet (``Seen``); other publishers' packets and second copies are counted
apart. Each leg's UDP socket is a plain non-blocking socket read with
``recvmsg`` from ``loop.add_reader``, with SO_TIMESTAMPNS on: the kernel's receive timestamp of
every datagram (same clock) gives the latency the SFU adds, apart from the generator's own event
loop. With ``tcp`` (``zvonok bench --tcp``) a leg instead connects to the server's ``tcptype
passive`` candidate (ICE-TCP, RFC 6544: an active candidate in the answer) and carries the same
STUN, DTLS, SRTP and SRTCP as RFC 4571 frames (2-byte length) over that one connection, read
with ``recvmsg`` too (the kernel timestamp is the last segment's of each read) and written
without blocking, whole frames queued (bounded, ``TCP_BACKLOG``) while the socket is full.
With ``simulcast`` (``zvonok bench --simulcast``) a publisher sends its video as three simulcast
layers like Chrome: its own offer (``BenchClient``: the server's first offer is left to the glare
rule of docs/protocol.md, which answers ours a second later) with ``a=rid``/``a=simulcast:send
q;h;f`` and no video a=ssrc, then one SSRC and one sequence space per layer, every packet carrying
the rtp-stream-id extension (RFC 8852, one-byte form). The layers are cut from the one clip: ``f``
is each frame as without simulcast, ``h`` the first half of its packets, ``q`` its first packet
(each with the marker on its last packet): roughly Chrome's 1 : 1/4 : 1/16 pixel ratio in
packets, not in bytes or in decodable pictures. A PLI/FIR on any layer restarts the clip on all
three (a real encoder would restart only the layer asked). Only ``f`` packets are expected at the
subscribers (the server forwards the top layer when nothing limits a subscriber); ``h``/``q``
packets carry their own send-mark kind and are counted apart when they arrive
(``Meter.layer_received``). The server's ``publish-layers`` (dynacast) are counted; a publisher
follows them (stops and resumes sending a layer, as the SDK does) only with ``dynacast``, else it
keeps sending all three layers, the most a server receives from such a publisher.
Never imported by the server.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import socket
import struct
import time
from array import array
from collections import deque
from typing import Any

from aioice import stun
from OpenSSL import SSL
from websockets.asyncio.client import ClientConnection, connect

from ..media.transport.dtls import DtlsCertificate, export_srtp, split_records
from ..media.transport.srtp import SrtpSession
from .clip import Clip
from .sdp import (
    RID_URI,
    SIMULCAST_RIDS,
    LocalMedia,
    OfferInfo,
    build_answer,
    build_offer,
    parse_offer,
)

AUDIO, VIDEO = 0, 1
KINDS = ("audio", "video")
#: The send-mark kinds (and stream indices) of the lower simulcast layers: video ``f`` is VIDEO.
HALF, QUARTER = 2, 3
#: Lower layers by stream index, with their rids (``--simulcast``).
LOWER_LAYERS = {HALF: "h", QUARTER: "q"}
# send time (ns), the publisher's packet number for this kind (stream: AUDIO, VIDEO or a lower
# simulcast layer), publisher index, kind, padding length
MARK = struct.Struct("!QIHBB")
MARK_SIZE = MARK.size
_HEADER = struct.Struct("!BBHII")
CONNECT_TIMEOUT = 20.0
MAX_MESSAGES = 100_000
MAX_CONSENT_CHECKS = 100_000
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; == SCM_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
RX_BUFFER = 2048
TCP_RX_BUFFER = 65536
#: Bytes of whole frames a TCP leg queues while its socket is full; more are dropped (counted).
TCP_BACKLOG = 1 << 20
_FRAME = struct.Struct("!H")
PACE_FACTOR = 2.5  # libwebrtc's PacingController::kDefaultPaceMultiplier
PACE_INTERVAL = 0.005  # its periodic process interval (kDefaultMinPacketLimit)
PACE_MAX_DEBT = 0.5  # seconds of pacing rate the debt may reach (kMaxDebtInTime)
SEEN_WINDOW = 4096  # packets per stream behind the newest one a duplicate is recognised in


def _kernel_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The kernel's receive time (SO_TIMESTAMPNS) in a ``recvmsg`` result, 0 when absent."""
    if ancillary:
        level, kind, cdata = ancillary[0]
        if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
            sec, nsec = _TIMESPEC.unpack(cdata)
            return int(sec * 1_000_000_000 + nsec)
    return 0


class Meter:
    """Counters shared by every client of one run; the window is [t0, t1) in ``time.time_ns``.

    CLOCK_REALTIME, the clock of the send marks and of SO_TIMESTAMPNS. ``received`` counts the
    first copy of each packet from a publisher the subscriber subscribes to, ``duplicates`` the
    further copies of such packets, ``unexpected`` packets from any other publisher (one's own
    echoed back, another room's). ``latencies`` is the end-to-end latency (subscriber's event loop
    − send mark) of the ``received`` packets, ``sfu_latencies`` the kernel receive timestamp −
    send mark of the same packets.
    """

    def __init__(self) -> None:
        self.t0 = self.t1 = 1 << 62
        self.sent = [0, 0]
        self.expected = [0, 0]
        self.received = [0, 0]
        self.duplicates = [0, 0]
        self.unexpected = [0, 0]
        self.latencies = array("q")
        self.sfu_latencies = array("q")
        self.no_timestamp = 0  # delivered packets without a kernel timestamp
        #: Packets of the lower simulcast layers (``HALF``, ``QUARTER``) sent inside the window and
        #: arrived (first or not) at a subscriber of their publisher: not expected, counted apart.
        self.layer_sent = {HALF: 0, QUARTER: 0}
        self.layer_received = {HALF: 0, QUARTER: 0}
        #: Dynacast: ``publish-layers`` messages the publishers got (whole run), and per rid how
        #: often one turned that layer off.
        self.publish_layers = 0
        self.layers_turned_off: dict[str, int] = {}
        self.tx_dropped = 0  # sendto failures (EAGAIN/ENOBUFS): neither sent nor expected
        self.errors: list[str] = []

    def open(self) -> None:
        self.t0, self.t1 = time.time_ns(), 1 << 62

    def close(self) -> None:
        self.t1 = time.time_ns()


class Seen:
    """Which packets of each (publisher, kind) stream a subscriber has had: duplicate detection.

    Keyed by the publisher's packet number from the send mark, a sliding window like SRTP's
    replay list (RFC 3711 §3.3.2): the newest number and a bitmask of the ``SEEN_WINDOW`` before
    it. A packet older than the window is taken as new (a copy that late cannot be told apart;
    on loopback reordering is a few packets at most).
    """

    def __init__(self) -> None:
        self._streams: dict[int, list[int]] = {}  # publisher << 1 | kind -> [newest, mask]

    def first(self, stream: int, number: int) -> bool:
        """Record ``number`` of ``stream``; False when it was seen before."""
        state = self._streams.get(stream)
        if state is None:
            self._streams[stream] = [number, 1]
            return True
        newest, mask = state
        if number > newest:
            shift = number - newest
            state[0] = number
            state[1] = ((mask << shift) | 1) & _SEEN_MASK if shift < SEEN_WINDOW else 1
            return True
        if newest - number >= SEEN_WINDOW:
            return True
        bit = 1 << (newest - number)
        if mask & bit:
            return False
        state[1] = mask | bit
        return True


_SEEN_MASK = (1 << SEEN_WINDOW) - 1


class Pacer:
    """A periodic media budget like libwebrtc's pacer (``PacingController``, ``IntervalBudget``).

    Every ``PACE_INTERVAL`` the budget gets ``rate × interval`` bytes: debt is paid down, but an
    unused positive budget does not build up (it is replaced). Queued packets go out while the
    budget is positive, each one charged with its size, so the debt may go below zero (down to
    ``PACE_MAX_DEBT`` of the rate). Audio bypasses it, as in libwebrtc. No timers of its own: the
    publish loop calls ``refill`` and drains ``queue`` when ``next_tick`` is due; ticks that
    passed while the queue was empty are credited at the next call, so a frame that finds the
    queue empty starts going out at once, then one small burst every 5 ms.
    """

    def __init__(self, rate_bps: float, now: float) -> None:
        self.per_tick = rate_bps / 8 * PACE_INTERVAL
        self.max_debt = rate_bps / 8 * PACE_MAX_DEBT
        self.budget = 0.0
        self.last_tick = now - PACE_INTERVAL
        #: (stream, RTP timestamp, payload, marker)
        self.queue: deque[tuple[int, int, bytes, bool]] = deque()

    @property
    def next_tick(self) -> float:
        return self.last_tick + PACE_INTERVAL

    def refill(self, now: float) -> None:
        """Credit the ticks up to ``now`` (at least one when ``now >= next_tick``)."""
        ticks = int((now - self.last_tick) / PACE_INTERVAL + 1e-9)
        if ticks <= 0:
            return
        self.last_tick += ticks * PACE_INTERVAL
        # Tick by tick: a debt is paid down by per_tick; a budget >= 0 is replaced by per_tick.
        budget, per_tick = self.budget, self.per_tick
        paid = budget + ticks * per_tick
        self.budget = per_tick if budget >= 0 or paid >= per_tick else paid

    def spend(self, size: int) -> None:
        self.budget = max(self.budget - size, -self.max_debt)


class MediaLeg:
    """One peer connection's media plane: socket, ICE checks, DTLS, SRTP, sending and receiving.

    The signaling side (``BenchClient`` for zvonok, ``janus.JanusParticipant`` for Janus) fills
    ``sending`` (mid -> (kind, SSRC) of the m-lines we send on), ``simulcast`` (mid -> rids of the
    one sent in simulcast, if any) and ``ext`` (negotiated extension ids), sets ``dtls_server``
    (our DTLS role: the client unless the peer's SDP said ``a=setup:active``) and hands the
    peer's description to ``set_remote``; its tasks are owned here and cancelled by ``cancel``.
    """

    def __init__(
        self, *, index: int, name: str, meter: Meter, clip: Clip, certificate: DtlsCertificate,
        publish: tuple[bool, bool], speak: bool, receivers: int, pacing: bool = True,
        tcp: bool = False, simulcast: bool = False,
    ) -> None:  # fmt: skip
        self.index, self.name = index, name
        #: The video layers' rids when the video goes out in simulcast (lowest first), else ().
        self.rids: tuple[str, ...] = SIMULCAST_RIDS if simulcast and publish[VIDEO] else ()
        self.tcp = tcp
        self._rx = bytearray()  # TCP: bytes of a frame not complete yet
        self._closing = False  # cancel() was called: the server closing the stream is expected
        self._tx = bytearray()  # TCP: whole frames waiting for the socket
        self.meter, self.clip, self.receivers = meter, clip, receivers
        self.publish, self.speak, self.pacing = publish, speak, pacing
        self.ufrag, self.pwd = secrets.token_hex(4), secrets.token_hex(16)
        self.certificate = certificate
        self.fingerprint = certificate.fingerprint("sha-256")
        self.dtls_server = False
        # AUDIO, VIDEO (simulcast: its ``f`` layer), HALF, QUARTER
        self.ssrcs = tuple(random.getrandbits(32) for _ in range(4))
        self.sending: dict[str, tuple[str, int]] = {}
        self.simulcast: dict[str, tuple[str, ...]] = {}
        #: The rids not sent now: ``dynacast`` publishers follow the server's publish-layers.
        self.paused_rids: set[str] = set()
        self.ext: dict[str, int] = {}
        self.offer: OfferInfo | None = None
        self.sources: set[int] = set()  # indices of the publishers this leg subscribes to
        self.seen = Seen()
        self.numbers = [0, 0, 0, 0]  # our own packet number per stream (the send mark's)
        self.sock: socket.socket | None = None
        self.port = 0
        self.dtls: SSL.Connection | None = None
        self.srtp: SrtpSession | None = None
        self.ice_ok = False
        self.connected = asyncio.Event()
        self.keyframe_wanted = True
        self.first_rx_ns = 0
        self.plis = self.nacks = self.rx_packets = 0
        self._tasks: list[asyncio.Task[None]] = []

    def open(self, host: str = "127.0.0.1") -> None:
        """Bind the UDP socket on ``host`` (``port``) and start reading it (TCP: nothing yet,
        the connection is made once the server's candidate is known)."""
        if self.tcp:
            return
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setblocking(False)
            sock.bind((host, 0))
            loop.add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.port = sock.getsockname()[1]

    def learn_extensions(self, description: OfferInfo) -> None:
        """Take the header-extension ids the peer's description gives the m-lines we send on."""
        for m in description.media:
            if m.mid in self.sending:
                self.ext.update({f"{m.kind}:{u}": i for u, i in m.extensions.items()})

    def set_remote(self, offer: OfferInfo) -> None:
        """The peer's description; the first one starts ICE and DTLS (later ones change nothing)."""
        if self.offer is None:
            self.offer = offer
            self._tasks.append(asyncio.get_running_loop().create_task(self._connect()))

    async def cancel(self) -> None:
        """Cancel this leg's tasks (connect, consent, publish)."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def close_socket(self) -> None:
        if self.sock is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.sock.fileno())
            loop.remove_writer(self.sock.fileno())
            self.sock.close()
            self.sock = None

    async def _connect_tcp(self) -> None:
        """Connect to the server's passive ICE-TCP candidate and start reading the stream."""
        assert self.offer is not None
        if self.offer.tcp_address is None:
            raise ValueError("the server's offer has no tcptype passive candidate (ICE-TCP off?)")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            await loop.sock_connect(sock, self.offer.tcp_address)
            loop.add_reader(sock.fileno(), self._readable_tcp)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def _send_frame(self, data: bytes) -> bool:
        """One RFC 4571 frame on the TCP connection; False if it was dropped (backlog full)."""
        sock = self.sock
        if sock is None:
            return False
        frame = _FRAME.pack(len(data)) + data
        if self._tx:
            if len(self._tx) + len(frame) > TCP_BACKLOG:
                return False
            self._tx += frame
            return True
        try:
            sent = sock.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False
        if sent < len(frame):
            self._tx += frame[sent:]
            asyncio.get_running_loop().add_writer(sock.fileno(), self._writable_tcp)
        return True

    def _writable_tcp(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            sent = sock.send(self._tx)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(self._tx)
        del self._tx[:sent]
        if not self._tx:
            asyncio.get_running_loop().remove_writer(sock.fileno())

    def _readable_tcp(self) -> None:
        """The stream is readable: what has arrived, split into frames, with the kernel
        receive timestamp of the read's last segment."""
        sock = self.sock
        if sock is None:
            return
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(TCP_RX_BUFFER, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data, ancillary = b"", []
            self.meter.errors.append(f"{self.name}: ICE-TCP connection: {exc}")
        if not data:
            if self.srtp is not None and not self._closing:
                self.meter.errors.append(f"{self.name}: the server closed the ICE-TCP connection")
            self.close_socket()
            return
        kernel_ns = _kernel_ns(ancillary)
        buf = self._rx
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 2:
            size = buf[pos] << 8 | buf[pos + 1]
            if end - pos - 2 < size:
                break
            frame = bytes(buf[pos + 2 : pos + 2 + size])
            pos += 2 + size
            if frame:
                self.datagram_received(frame, kernel_ns)
        del buf[:pos]

    # -- ICE and DTLS ----------------------------------------------------------------------------

    def _sendto(self, data: bytes) -> None:
        """Signaling-plane datagrams (STUN, DTLS): dropped when the socket buffer is full."""
        assert self.offer is not None
        if self.tcp:
            self._send_frame(data)
        elif self.sock is not None:
            try:
                self.sock.sendto(data, self.offer.address)
            except OSError:
                pass

    def _check(self) -> None:
        assert self.offer is not None
        msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        msg.attributes["USERNAME"] = f"{self.offer.ice_ufrag}:{self.ufrag}"
        msg.attributes["PRIORITY"] = 0x6E0001FF
        msg.attributes["ICE-CONTROLLING"] = random.getrandbits(64)
        msg.attributes["USE-CANDIDATE"] = None
        msg.add_message_integrity(self.offer.ice_pwd.encode())
        msg.add_fingerprint()
        self._sendto(bytes(msg))

    def _answer_check(self, data: bytes) -> None:
        """Answer the peer's connectivity check (RFC 8445 §7.3; zvonok, ICE-lite, sends none,
        Janus's agent does): a success response authenticated with our password."""
        if self.offer is None:
            return
        try:
            request = stun.parse_message(data)
        except ValueError:
            return
        response = stun.Message(
            stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=request.transaction_id
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = self.offer.address  # our one peer address
        response.add_message_integrity(self.pwd.encode())
        response.add_fingerprint()
        self._sendto(bytes(response))

    async def _connect(self) -> None:
        """Checks until answered, the DTLS handshake (retransmitted), then consent checks."""
        deadline = time.monotonic() + CONNECT_TIMEOUT
        if self.tcp:
            try:
                await asyncio.wait_for(self._connect_tcp(), CONNECT_TIMEOUT)
            except (OSError, ValueError, TimeoutError) as exc:
                self.meter.errors.append(f"{self.name}: ICE-TCP connect: {exc}")
                return
        if self.dtls_server:  # ready before the peer's ClientHello, which follows its ICE
            self._start_dtls()
        while self.srtp is None:
            if time.monotonic() > deadline:
                self.meter.errors.append(f"{self.name}: media did not connect")
                return
            if not self.ice_ok:
                self._check()
            elif self.dtls is None:
                self._start_dtls()
                self._handshake()
            else:
                self.dtls.DTLSv1_handle_timeout()
                self._flush()
            await asyncio.sleep(0.1 if not self.ice_ok else 0.3)
        for _ in range(MAX_CONSENT_CHECKS):
            await asyncio.sleep(random.uniform(4.0, 6.0))
            self._check()

    def _start_dtls(self) -> None:
        """The DTLS connection in our role: the client unless ``dtls_server``."""
        self.dtls = SSL.Connection(self.certificate.make_context(server=self.dtls_server), None)
        if self.dtls_server:
            self.dtls.set_accept_state()
        else:
            self.dtls.set_connect_state()
        self.dtls.set_ciphertext_mtu(1200)

    def _handshake(self) -> None:
        assert self.dtls is not None
        try:
            self.dtls.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error as exc:
            self.meter.errors.append(f"{self.name}: DTLS {exc}")
        else:
            if self.srtp is None:
                self.srtp = export_srtp(self.dtls, server=self.dtls_server)
                self.connected.set()
        self._flush()

    def _flush(self) -> None:
        assert self.dtls is not None
        try:
            data = self.dtls.bio_read(65536)
        except SSL.WantReadError:
            return
        for datagram in split_records(data):
            self._sendto(datagram)

    # -- datagrams ------------------------------------------------------------------------------

    def _readable(self) -> None:
        """The socket is readable: one datagram and its kernel receive timestamp.

        One per callback: the poll is level-triggered, so the loop calls again while more are
        queued, and reading until EAGAIN would cost a raised exception per wake-up (most wake-ups
        bring one datagram), which costs more than the extra poll.
        """
        sock = self.sock
        if sock is None:
            return
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(RX_BUFFER, _ANCILLARY)
        except OSError:  # EAGAIN (spurious wake-up), or an ICMP error reported on the socket
            return
        kernel_ns = _kernel_ns(ancillary)
        if data:
            self.datagram_received(data, kernel_ns)

    def datagram_received(self, data: bytes, kernel_ns: int) -> None:
        """One datagram; ``kernel_ns`` its SO_TIMESTAMPNS receive time (0: none)."""
        first = data[0]
        srtp = self.srtp
        if 127 < first < 192 and srtp is not None:
            if 191 < data[1] < 224:
                self._rtcp(srtp, data)
                return
            try:
                packet = srtp.unprotect_rtp(data)
            except ValueError:
                return
            now = time.time_ns()
            self.rx_packets += 1
            if not self.first_rx_ns:
                self.first_rx_ns = time.perf_counter_ns()
            if packet[0] & 0x20 and len(packet) > 12 + MARK_SIZE:
                sent, number, pub, kind, size = MARK.unpack_from(packet, len(packet) - MARK_SIZE)
                meter = self.meter
                if size != MARK_SIZE or not meter.t0 <= sent < meter.t1:
                    return
                if kind < 2:
                    if pub not in self.sources:
                        meter.unexpected[kind] += 1
                        return
                    if not self.seen.first(pub << 1 | kind, number):
                        meter.duplicates[kind] += 1
                        return
                    meter.received[kind] += 1
                    meter.latencies.append(now - sent)
                    if kernel_ns:
                        meter.sfu_latencies.append(kernel_ns - sent)
                    else:
                        meter.no_timestamp += 1
                elif kind in LOWER_LAYERS and pub in self.sources:
                    meter.layer_received[kind] += 1
        elif first < 4:
            if first == 0 and data[1] == 1:  # a Binding request: the peer's own check
                self._answer_check(data)
            else:
                self.ice_ok = True
        elif 19 < first < 64 and self.dtls is not None:
            self.dtls.bio_write(data)
            self._handshake()

    def _rtcp(self, srtp: SrtpSession, data: bytes) -> None:
        try:
            packet = srtp.unprotect_rtcp(data)
        except ValueError:
            return
        pos = 0
        while pos + 4 <= len(packet):
            fmt, pt = packet[pos] & 0x1F, packet[pos + 1]
            if pt == 206 and fmt in (1, 4):
                self.plis += 1
                self.keyframe_wanted = True
            elif pt == 205 and fmt == 1:
                self.nacks += 1
            pos += 4 + (packet[pos + 2] << 8 | packet[pos + 3]) * 4

    # -- publishing -----------------------------------------------------------------------------

    def start_publishing(self, phase: float) -> None:
        """Replay the clip on the m-lines we send on (a task owned by this client)."""
        self._tasks.append(asyncio.get_running_loop().create_task(self._publish(phase)))

    def _extensions(self, kind: str, rid: str = "") -> bytes:
        """The RFC 8285 one-byte header extension block our packets of ``kind`` carry: audio
        level, abs-send-time, mid and (a simulcast layer, ``rid``) its rtp-stream-id, each when
        negotiated."""
        mid = next((m for m, (k, _) in self.sending.items() if k == kind), "")
        out = bytearray()
        level = self.ext.get(f"{kind}:urn:ietf:params:rtp-hdrext:ssrc-audio-level")
        if level:
            out += bytes([level << 4, 0x80 | 30])
        send_time = self.ext.get(
            f"{kind}:http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
        )
        if send_time:
            out += bytes([send_time << 4 | 2, 0, 0, 0])
        mid_id = self.ext.get(f"{kind}:urn:ietf:params:rtp-hdrext:sdes:mid")
        if mid_id and mid:
            out += bytes([mid_id << 4 | (len(mid) - 1)]) + mid.encode()
        rid_id = self.ext.get(f"{kind}:{RID_URI}")
        if rid_id and rid:
            out += bytes([rid_id << 4 | (len(rid) - 1)]) + rid.encode()
        if not out:
            return b""
        out += bytes(-len(out) % 4)
        return struct.pack("!HH", 0xBEDE, len(out) // 4) + bytes(out)

    async def _publish(self, phase: float) -> None:
        await asyncio.sleep(phase)
        pt_audio = pt_video = 0
        assert self.offer is not None
        for m in self.offer.media:
            if m.mid in self.sending:
                if m.kind == "audio":
                    pt_audio = m.payload_type("opus") or 111
                else:
                    pt_video = m.payload_type("VP8") or 96
        audio = (
            self.publish[AUDIO]
            and self.speak
            and any(k == "audio" for k, _ in self.sending.values())
        )
        video = self.publish[VIDEO] and any(k == "video" for k, _ in self.sending.values())
        # the video streams, lowest layer first: (stream, rid, header extensions); ``f`` is VIDEO
        if self.rids:
            by_rid = {"q": QUARTER, "h": HALF, "f": VIDEO}
            streams = [(by_rid[rid], rid, self._extensions("video", rid)) for rid in self.rids]
        else:
            streams = [(VIDEO, "", self._extensions("video"))]
        ext_a = self._extensions("audio")
        seq = [random.getrandbits(16) for _ in range(4)]
        start = time.perf_counter()
        next_audio = next_video = start
        audio_index = video_index = frame = 0
        pacer = Pacer(self._pacing_rate(audio), start) if video and self.pacing else None
        ext = {stream: block for stream, _, block in streams}
        while True:
            now = time.perf_counter()
            if audio and now >= next_audio:
                payload = self.clip.audio[audio_index % len(self.clip.audio)]
                ts = audio_index * 960
                self._send_rtp(AUDIO, pt_audio, seq, ts, ext_a, payload, marker=False)
                audio_index += 1
                next_audio = start + audio_index * 0.02
            if video and now >= next_video:
                if self.keyframe_wanted:  # any layer's PLI/FIR: all layers restart the clip
                    self.keyframe_wanted, frame = False, 0
                packets = self.clip.video[frame % len(self.clip.video)]
                ts = video_index * 3000
                for stream, rid, block in streams:
                    if rid in self.paused_rids:  # turned off by publish-layers (dynacast)
                        continue
                    layer = layer_packets(packets, stream)
                    last = len(layer) - 1
                    if pacer is not None:
                        pacer.queue.extend((stream, ts, p, i == last) for i, p in enumerate(layer))
                    else:  # the whole frame back to back (--no-pacing)
                        for i, payload in enumerate(layer):
                            self._send_rtp(stream, pt_video, seq, ts, block, payload,
                                           marker=i == last)  # fmt: skip
                video_index += 1
                frame += 1
                next_video = start + video_index / 30
            wake = min(next_audio if audio else 1e18, next_video if video else 1e18)
            if pacer is not None and pacer.queue:
                if now >= pacer.next_tick:
                    pacer.refill(now)
                    queue = pacer.queue
                    while queue and pacer.budget > 0:
                        stream, ts, payload, marker = queue.popleft()
                        pacer.spend(
                            self._send_rtp(
                                stream, pt_video, seq, ts, ext[stream], payload, marker=marker
                            )
                        )
                if pacer.queue:
                    wake = min(wake, pacer.next_tick)
            if wake > 1e17:
                return
            await asyncio.sleep(max(0.0, wake - time.perf_counter()))

    def _pacing_rate(self, audio: bool) -> float:
        """``PACE_FACTOR`` × the clip's bitrate (RTP payloads of every layer sent; audio
        included when sent), like libwebrtc's pacer over all of a sender's streams."""
        video = self.clip.video
        rate = self.clip.video_bitrate
        if self.rids:
            lower = sum(len(p) for f in video for s in (HALF, QUARTER) for p in layer_packets(f, s))
            rate += lower * 8 * 30 / max(1, len(video))
        if audio and self.clip.audio:
            rate += sum(len(p) for p in self.clip.audio) * 8 * 50 / len(self.clip.audio)
        return PACE_FACTOR * rate

    def _send_rtp(
        self, kind: int, pt: int, seq: list[int], ts: int, ext: bytes, payload: bytes, *,
        marker: bool,
    ) -> int:  # fmt: skip
        """Send one RTP packet of stream ``kind`` (AUDIO, VIDEO or a lower simulcast layer: its
        own SSRC and ``seq[kind]``), its send mark taken just before protect + ``sendto``; its
        size. Only AUDIO and VIDEO packets are expected at the subscribers."""
        srtp, sock, offer = self.srtp, self.sock, self.offer
        if srtp is None or sock is None or offer is None:
            return 0
        seq[kind] = (seq[kind] + 1) & 0xFFFF
        first = 0xA0 | (0x10 if ext else 0)
        header = _HEADER.pack(
            first, pt | (0x80 if marker else 0), seq[kind], ts & 0xFFFFFFFF, self.ssrcs[kind]
        )
        body = header + ext + payload
        number = self.numbers[kind] = (self.numbers[kind] + 1) & 0xFFFFFFFF
        now = time.time_ns()
        try:
            mark = MARK.pack(now, number, self.index & 0xFFFF, kind, MARK_SIZE)
            data = srtp.protect_rtp(body + mark)
        except ValueError:
            return 0
        meter = self.meter
        if self.tcp:
            if not self._send_frame(data):  # backlog full: the generator's drop, not the SFU's
                meter.tx_dropped += 1
                return len(data)
        else:
            try:
                sock.sendto(data, offer.address)
            except OSError:  # socket buffer full: a drop on the generator's side, not the SFU's
                meter.tx_dropped += 1
                return len(data)
        if meter.t0 <= now < meter.t1:
            if kind < 2:
                meter.sent[kind] += 1
                meter.expected[kind] += self.receivers
            else:
                meter.layer_sent[kind] += 1
        return len(data)


def layer_packets(packets: list[bytes], stream: int) -> list[bytes]:
    """The packets of one frame a simulcast layer sends: all of them (``f``, VIDEO), the first
    half rounded up (``h``, HALF) or the first one (``q``, QUARTER)."""
    if stream == QUARTER:
        return packets[:1]
    if stream == HALF:
        return packets[: (len(packets) + 1) // 2]
    return packets


class BenchClient:
    """One participant of zvonok (docs/protocol.md signaling, one ``MediaLeg``).

    It answers the server's offers; a ``simulcast`` publisher instead offers first (after
    ``joined``: sendonly audio, sendonly video in three rids, mids "0" and "1" as Chrome names
    them), leaves the server's colliding first offer unanswered (``error`` ``glare``, expected:
    the server withdraws it after ``glare_yield_ms`` and answers ours), and answers every offer
    after the server's answer, repeating its a=rid/a=simulcast:send on its own video m-line.
    """

    def __init__(
        self, *, index: int, url: str, token: str, room_id: str, meter: Meter, clip: Clip,
        certificate: DtlsCertificate, publish: tuple[bool, bool], speak: bool, receivers: int,
        pacing: bool = True, tcp: bool = False, simulcast: bool = False, dynacast: bool = False,
    ) -> None:  # fmt: skip
        self.index, self.url, self.token, self.room_id = index, url, token, room_id
        #: Follow ``publish-layers`` (stop/start sending a layer) as the SDK does; else keep
        #: sending all three (what a client that ignores it does: the most the server receives).
        self.dynacast = dynacast
        self.layers_off: set[str] = set()  # the rids the server's last publish-layers turned off
        self.session_id = f"bench-{index}"
        self.meter, self.publish = meter, publish
        self.leg = MediaLeg(
            index=index, name=self.session_id, meter=meter, clip=clip, certificate=certificate,
            publish=publish, speak=speak, receivers=receivers, pacing=pacing, tcp=tcp,
            simulcast=simulcast,
        )  # fmt: skip
        #: Our own offer is out and not answered yet (``simulcast``): server offers are left be.
        self.offering = False
        self.ws: ClientConnection | None = None
        self.ws_open_ns = 0
        #: When ``joined`` arrived (0: not yet); the room's kind and the node it joins through
        #: (``--nodes 2``: 0 or 1), set by the runner.
        self.joined_ns = 0
        self.room_kind = ""
        self.node = 0
        self.state = "new"
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> asyncio.Event:
        return self.leg.connected

    @property
    def first_rx_ns(self) -> int:
        return self.leg.first_rx_ns

    @property
    def plis(self) -> int:
        return self.leg.plis

    @property
    def nacks(self) -> int:
        return self.leg.nacks

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the socket and the WebSocket, join; ``connected`` is set when SRTP is ready."""
        self.leg.open()
        headers = [("Authorization", f"Bearer {self.token}")]
        self.ws = await connect(self.url, additional_headers=headers, open_timeout=CONNECT_TIMEOUT)
        self.ws_open_ns = time.perf_counter_ns()
        self._tasks.append(asyncio.get_running_loop().create_task(self._read()))
        await self._send("join")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.leg.cancel()
        if self.ws is not None:
            try:
                await self._send("leave")
                await self.ws.close()
            except Exception:  # noqa: BLE001 - already closed by the server
                pass
        self.leg.close_socket()

    def start_publishing(self, phase: float) -> None:
        """Replay the clip on the m-lines we send on (a task owned by the media leg)."""
        self.leg.start_publishing(phase)

    # -- signaling -----------------------------------------------------------------------------

    async def _send(self, type_: str, payload: dict[str, Any] | None = None) -> None:
        assert self.ws is not None
        message: dict[str, Any] = {"type": type_, "roomId": self.room_id}
        message["sessionId"] = self.session_id
        if payload is not None:
            message["payload"] = payload
        await self.ws.send(json.dumps(message))

    async def _read(self) -> None:
        assert self.ws is not None
        for _ in range(MAX_MESSAGES):
            message = json.loads(await self.ws.recv())
            payload = message.get("payload") or {}
            if isinstance(payload, str):
                payload = json.loads(payload)
            kind = message.get("type")
            if kind == "offer":
                if not self.offering:  # else withdrawn by the server once it answers ours
                    await self._answer(payload["sdp"])
            elif kind == "answer":
                self._take_answer(payload["sdp"])
            elif kind == "joined" and not self.joined_ns:
                self.joined_ns = time.perf_counter_ns()
                if self.leg.rids:
                    await self._offer()
            elif kind == "publish-layers":
                self._publish_layers(payload)
            elif kind == "state":
                self.state = str(payload.get("state"))
            elif kind == "error" and not (self.offering and payload.get("code") == "glare"):
                self.meter.errors.append(f"{self.session_id}: {payload}")

    def _publish_layers(self, payload: dict[str, Any]) -> None:
        """Dynacast: count the message and the layers it newly turns off; apply it (stop or
        resume sending those layers) when ``dynacast``."""
        off = {
            str(layer.get("rid"))
            for layer in payload.get("layers") or ()
            if isinstance(layer, dict) and layer.get("active") is False
        }
        meter = self.meter
        meter.publish_layers += 1
        for rid in off - self.layers_off:
            meter.layers_turned_off[rid] = meter.layers_turned_off.get(rid, 0) + 1
        self.layers_off = off
        if self.dynacast:
            self.leg.paused_rids = set(off)

    def _local(self) -> LocalMedia:
        leg = self.leg
        return LocalMedia(
            leg.ufrag, leg.pwd, leg.fingerprint, leg.port, f"c{self.index}", self.session_id,
            tcp=leg.tcp,
        )  # fmt: skip

    async def _offer(self) -> None:
        """A simulcast publisher's own offer: sendonly audio ("0") and video in ``leg.rids``
        ("1")."""
        leg = self.leg
        if self.publish[AUDIO]:
            leg.sending["0"] = ("audio", leg.ssrcs[AUDIO])
        leg.sending["1"] = ("video", leg.ssrcs[VIDEO])
        leg.simulcast = {"1": leg.rids}
        self.offering = True
        offer = build_offer(self._local(), leg.sending, leg.simulcast)
        await self._send("offer", {"type": "offer", "sdp": offer})

    def _take_answer(self, sdp: str) -> None:
        """The server's answer to our offer: our extension ids, the DTLS role, ICE."""
        if not self.offering:
            self.meter.errors.append(f"{self.session_id}: an answer to no offer of ours")
            return
        self.offering = False
        leg = self.leg
        try:
            answer = parse_offer(sdp)
        except ValueError as exc:
            self.meter.errors.append(f"{self.session_id}: {exc}")
            return
        for m in answer.media:
            if m.mid in leg.simulcast and not m.simulcast.startswith("recv"):
                self.meter.errors.append(f"{self.session_id}: the server refused simulcast")
        leg.learn_extensions(answer)
        leg.dtls_server = answer.setup == "active"
        leg.set_remote(answer)

    async def _answer(self, sdp: str) -> None:
        offer = parse_offer(sdp)
        leg = self.leg
        for m in offer.media:
            kind = AUDIO if m.kind == "audio" else VIDEO
            taken = any(k == m.kind for k, _ in leg.sending.values())
            if m.direction == "recvonly" and self.publish[kind] and not taken:
                leg.sending[m.mid] = (m.kind, leg.ssrcs[kind])
        leg.learn_extensions(offer)
        answer = build_answer(offer, self._local(), leg.sending, leg.simulcast)
        await self._send("answer", {"type": "answer", "sdp": answer})
        leg.set_remote(offer)
