"""The per-packet state of a producer and of each of its consumers, and the fan-out list.

Owns the pure-Python reference of the hot path's compiled types (``zvonok.media._fastpath``):
``ProducerCore`` (a published track's per-packet work: statistics, NACK bookkeeping, keyframe
spotting, history, fan-out),
``Forwarder`` — continuous sequence numbers across keyframe gating, pause and dropped packets, a
random timestamp offset, payload-type and header-extension-id rewriting on a copy of the raw bytes
(RFC 3550 §5.1, RFC 8285), and VP8 PictureID / TL0PICIDX / KEYIDX continuity across restarts
(RFC 7741 §4.2: at each keyframe it restarts on, the indices continue from the last ones it sent)
— and ``Fanout``, which calls every forwarder of a producer in order.
``make_forwarder`` and ``make_fanout`` pick the compiled types when the transport offers a
compiled ``SendTarget``; everything else (unit tests with recording sinks, builds without a C
compiler, ``ZVONOK_PURE_PYTHON=1``) uses these classes. Both sides count the same way.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from struct import Struct
from typing import TYPE_CHECKING, Any, Protocol

from ..fastpath import native

if TYPE_CHECKING:
    from .. import _fastpath
from ..packets.codecs import offset_vp8_indices, vp8_picture_fields
from ..packets.rtp import rewrite_rtp, rtp_payload_bounds

_unpack_u32 = Struct("!I").unpack_from
#: Keep the sync point this far behind the newest packet so that 16-bit wrap is safe.
SYNC_TRAIL = 0x1000


class ForwarderLike(Protocol):
    """What ``Consumer`` reads and writes on its forwarder (Python or compiled)."""

    @property
    def ssrc(self) -> int: ...

    @property
    def video(self) -> bool: ...

    blocked: bool
    held: bool
    seq_offset: int
    sync_in_seq: int
    last_out_seq: int
    pid_offset: int
    tl0_offset: int
    keyidx_offset: int
    last_pid: int
    last_tl0: int
    last_keyidx: int
    vp8_resync: bool

    @property
    def ts_offset(self) -> int: ...

    packets_sent: int
    octets_sent: int
    dropped: int

    def forward(self, packet: bytes, keyframe: bool = False, /) -> None: ...


class FanoutLike(Protocol):
    """What ``Producer`` does with its fan-out list (Python or compiled)."""

    def set(self, items: Iterable[ForwarderLike], /) -> None: ...

    def forward(self, packet: bytes, keyframe: bool, /) -> None: ...


class ProducerCoreLike(Protocol):
    """What ``Producer`` reads and writes on its per-packet core (Python or compiled)."""

    closed: bool
    want_keyframe: bool
    packets_received: int
    bytes_received: int
    dropped: int

    def receive(self, packet: bytes, /) -> None: ...


class Forwarder:
    """Rewrites a producer's packets for one subscriber and hands them to ``send``.

    ``blocked``: nothing is forwarded until a start point (video: a keyframe); ``held``: paused
    or closed, so not even a keyframe starts it. A video keyframe starts it only when ``ready()``
    (the subscriber's send target is keyed and addressed, as the compiled forwarder checks its
    target): a keyframe its transport cannot send yet (DTLS not done) is dropped like any other
    packet while blocked, else the subscriber's decoder would start on frames it cannot decode
    until the next keyframe. ``ready`` defaults to always true (a sink without a target).

    VP8 (input payload types ``vp8_payload_types``, RFC 7741 §4.2): every packet sent has
    ``pid_offset`` added to its PictureID, ``tl0_offset`` to its TL0PICIDX and
    ``keyidx_offset`` to its KEYIDX (each in its field's width, ``offset_vp8_indices``; zero:
    nothing written), and ``last_pid`` / ``last_tl0`` / ``last_keyidx`` follow the newest
    values sent (-1: none yet; ``last_pid`` in 15 bits, a 7-bit id extending it by its distance
    modulo 2^7). At each (re)start point ``vp8_resync`` is set, and the first VP8 packet sent
    after it (the keyframe's first) sets the offsets so that its indices are the last ones sent
    plus one: a subscriber moved to another stream (a simulcast layer with its own numbering, a
    resumed or restarted encoder) sees one continuous numbering, as libwebrtc's VP8 reference
    finder needs. A forwarder that never restarted after sending keeps offsets 0.
    """

    __slots__ = (
        "ssrc", "video", "blocked", "held", "seq_offset", "sync_in_seq", "last_out_seq",
        "ts_offset", "packets_sent", "octets_sent", "dropped", "pid_offset", "tl0_offset",
        "keyidx_offset", "last_pid", "last_tl0", "last_keyidx", "vp8_resync", "_send", "_ready",
        "_pts", "_ext", "_vp8",
    )  # fmt: skip

    def __init__(
        self,
        *,
        send: Callable[[bytearray], None],
        ssrc: int,
        payload_types: Mapping[int, int],
        ext_table: bytes,
        video: bool,
        ts_offset: int,
        last_out_seq: int,
        vp8_payload_types: Iterable[int] = (),
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self._send = send
        self._ready = ready
        self._pts = dict(payload_types)
        self._ext = ext_table
        self._vp8 = frozenset(vp8_payload_types)
        if any(not 0 <= pt <= 127 for pt in self._vp8):
            raise ValueError("payload types must be 0..127")
        self.ssrc = ssrc
        self.video = video
        self.blocked = True
        self.held = False
        self.seq_offset = 0
        self.sync_in_seq = 0
        self.last_out_seq = last_out_seq & 0xFFFF
        self.ts_offset = ts_offset & 0xFFFF_FFFF
        self.packets_sent = 0
        self.octets_sent = 0
        self.dropped = 0
        self.pid_offset = self.tl0_offset = self.keyidx_offset = 0
        self.last_pid = self.last_tl0 = self.last_keyidx = -1
        self.vp8_resync = False

    def forward(self, packet: bytes, keyframe: bool = False) -> None:
        """Rewrite a copy of the producer's packet for this subscriber and send it."""
        in_seq = packet[2] << 8 | packet[3]
        if self.blocked:
            if self.held:
                return
            if self.video and (not keyframe or (self._ready is not None and not self._ready())):
                self.dropped += 1
                return
            self.seq_offset = (self.last_out_seq + 1 - in_seq) & 0xFFFF
            self.sync_in_seq = in_seq
            self.blocked = False
            self.vp8_resync = True
        since_sync = (in_seq - self.sync_in_seq) & 0xFFFF
        if since_sync >= 0x8000:
            self.dropped += 1  # older than our sync point: never sent in this numbering
            return
        if since_sync > SYNC_TRAIL:
            self.sync_in_seq = (in_seq - SYNC_TRAIL) & 0xFFFF
        pt = self._pts.get(packet[1] & 0x7F)
        if pt is None:
            self.skip(in_seq)
            return
        ts = (_unpack_u32(packet, 4)[0] + self.ts_offset) & 0xFFFF_FFFF
        seq = (in_seq + self.seq_offset) & 0xFFFF
        try:
            out = rewrite_rtp(packet, self.ssrc, pt, seq, ts, self._ext)
        except ValueError:
            self.skip(in_seq)
            return
        if (seq - self.last_out_seq) & 0xFFFF < 0x8000:
            self.last_out_seq = seq
        self.packets_sent += 1
        if packet[1] & 0x7F in self._vp8:
            self._continue_vp8(out)
        first = out[0]
        header = 12 + (first & 0x0F) * 4
        if first & 0x10:
            header += 4 + (out[header + 2] << 8 | out[header + 3]) * 4
        self.octets_sent += max(0, len(out) - header)
        self._send(out)

    def _continue_vp8(self, out: bytearray) -> None:
        """Offset the VP8 indices of ``out`` (set the offsets first after a restart) and note
        the newest ones sent. A descriptor that is truncated is left alone."""
        try:
            start, end = rtp_payload_bounds(out)
        except ValueError:
            return
        fields = vp8_picture_fields(out, start, end)
        if fields is None:
            return
        pid_pos, tl0_pos, key_pos = fields
        if self.vp8_resync:
            self.vp8_resync = False
            self.pid_offset = self.tl0_offset = self.keyidx_offset = 0
            if pid_pos >= 0 and self.last_pid >= 0:
                pid = out[pid_pos] & 0x7F
                if out[pid_pos] & 0x80:
                    pid = pid << 8 | out[pid_pos + 1]
                self.pid_offset = (self.last_pid + 1 - pid) & 0x7FFF
            if tl0_pos >= 0 and self.last_tl0 >= 0:
                self.tl0_offset = (self.last_tl0 + 1 - out[tl0_pos]) & 0xFF
            if key_pos >= 0 and self.last_keyidx >= 0:
                self.keyidx_offset = (self.last_keyidx + 1 - out[key_pos]) & 0x1F
        offset_vp8_indices(out, fields, self.pid_offset, self.tl0_offset, self.keyidx_offset)
        if pid_pos >= 0:
            last = self.last_pid
            if out[pid_pos] & 0x80:
                pid = (out[pid_pos] & 0x7F) << 8 | out[pid_pos + 1]
                if last < 0 or (pid - last) & 0x7FFF < 0x4000:
                    self.last_pid = pid
            elif last < 0:
                self.last_pid = out[pid_pos]
            elif (out[pid_pos] - last) & 0x7F < 0x40:
                self.last_pid = (last + ((out[pid_pos] - last) & 0x7F)) & 0x7FFF
        if tl0_pos >= 0:
            tl0 = out[tl0_pos]
            if self.last_tl0 < 0 or (tl0 - self.last_tl0) & 0xFF < 0x80:
                self.last_tl0 = tl0
        if key_pos >= 0:
            key = out[key_pos] & 0x1F
            if self.last_keyidx < 0 or (key - self.last_keyidx) & 0x1F < 0x10:
                self.last_keyidx = key

    def skip(self, in_seq: int) -> None:
        """Drop a packet without leaving a hole in our numbering when it is the next in order."""
        self.dropped += 1
        if (in_seq + self.seq_offset - self.last_out_seq) & 0xFFFF == 1:
            self.seq_offset = (self.seq_offset - 1) & 0xFFFF
            self.sync_in_seq = (in_seq + 1) & 0xFFFF


class Fanout:
    """One producer's forwarders, called in order for every packet."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: tuple[Any, ...] = ()

    def set(self, items: Iterable[Any]) -> None:
        self.items = tuple(items)

    def forward(self, packet: bytes, keyframe: bool) -> None:
        for item in self.items:
            item.forward(packet, keyframe)


def can_send(sink: object) -> bool:
    """The subscriber's transport can send now: its send target is keyed and addressed (DTLS
    done); a sink without a target always can. A video start point needs it (``Forwarder``, and
    the compiled forwarder's own check of its target), and so does asking for one (``Consumer``)."""
    target = getattr(sink, "rtp_target", None)
    return target is None or bool(target.ready)


def make_forwarder(
    sink: object,
    *,
    ssrc: int,
    payload_types: Mapping[int, int],
    ext_table: bytes,
    video: bool,
    ts_offset: int,
    last_out_seq: int,
    vp8_payload_types: Iterable[int] = (),
) -> ForwarderLike:
    """The compiled forwarder when ``sink`` (a transport) has a compiled ``rtp_target``, else the
    Python one sending through ``sink.send_rtp`` (and asking ``sink.rtp_target.ready`` before a
    video start point, when the sink has a target)."""
    target = getattr(sink, "rtp_target", None)
    if native is not None and isinstance(target, native.SendTarget):
        forwarder: _fastpath.Forwarder = native.Forwarder(
            target=target, ssrc=ssrc, payload_types=dict(payload_types), ext_table=ext_table,
            video=video, ts_offset=ts_offset, last_out_seq=last_out_seq,
            vp8_payload_types=tuple(vp8_payload_types),
        )  # fmt: skip
        return forwarder
    ready = None if target is None else (lambda: can_send(sink))
    return Forwarder(
        send=sink.send_rtp,  # type: ignore[attr-defined]
        ssrc=ssrc, payload_types=payload_types, ext_table=ext_table, video=video,
        ts_offset=ts_offset, last_out_seq=last_out_seq, vp8_payload_types=vp8_payload_types,
        ready=ready,
    )  # fmt: skip


def make_fanout() -> FanoutLike:
    """The compiled fan-out (batches compiled forwarders into one sendmmsg) or the Python one."""
    if native is not None:
        fanout: _fastpath.Fanout = native.Fanout()
        return fanout
    return Fanout()


class ProducerCore:
    """A published track's per-packet work: the pure-Python reference of the compiled
    ``ProducerCore``. ``receive`` counts, updates the receive statistics (RFC 3550 A.1/A.8),
    reports a gap to ``on_gap(seq, gap, now)`` (NACK, RFC 4585 §6.2.1) or forgets an arrived
    missing seq, asks ``spot_keyframe(packet)`` while ``want_keyframe``, stores the packet in the
    history ring and fans it out."""

    __slots__ = (
        "stats", "closed", "want_keyframe", "packets_received", "bytes_received", "dropped",
        "_missing", "_history", "_mask", "_fanout", "_on_gap", "_spot", "_clock",
    )  # fmt: skip

    def __init__(
        self,
        stats: Any,
        missing: dict[int, list[float]],
        history: list[bytes | None] | None,
        fanout: Any,
        on_gap: Callable[[int, int, float], None],
        spot_keyframe: Callable[[bytes], bool],
        clock: Callable[[], float] | None,
    ) -> None:
        self.stats = stats
        self.closed = self.want_keyframe = False
        self.packets_received = self.bytes_received = self.dropped = 0
        self._missing = missing
        self._history = history
        self._mask = len(history) - 1 if history is not None else 0
        self._fanout = fanout
        self._on_gap = on_gap
        self._spot = spot_keyframe
        self._clock = clock or time.monotonic

    def receive(self, packet: bytes) -> None:
        if self.closed or len(packet) < 12:
            self.dropped += 1
            return
        self.packets_received += 1
        self.bytes_received += len(packet)
        seq = packet[2] << 8 | packet[3]
        now = self._clock()
        gap = self.stats.update(seq, _unpack_u32(packet, 4)[0], now)
        if gap:
            self._on_gap(seq, gap, now)
        elif self._missing:
            self._missing.pop(seq, None)
        keyframe = self.want_keyframe and self._spot(packet)
        history = self._history
        if history is not None:
            history[seq & self._mask] = packet
        self._fanout.forward(packet, keyframe)


def make_producer_core(
    *,
    stats: Any,
    missing: dict[int, list[float]],
    history: list[bytes | None] | None,
    fanout: Any,
    on_gap: Callable[[int, int, float], None],
    spot_keyframe: Callable[[bytes], bool],
    clock: Callable[[], float],
) -> ProducerCoreLike:
    """The compiled core when the extension is built, else the Python one. A ``clock`` that is
    ``time.monotonic`` is read in C (the same CLOCK_MONOTONIC) instead of called."""
    own_clock = None if clock is time.monotonic else clock
    if native is not None:
        core: _fastpath.ProducerCore = native.ProducerCore(
            stats, missing, history, fanout, on_gap, spot_keyframe, own_clock
        )
        return core
    return ProducerCore(stats, missing, history, fanout, on_gap, spot_keyframe, own_clock)
