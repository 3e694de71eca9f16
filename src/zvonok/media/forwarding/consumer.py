"""One subscriber's copy of one producer's track.

Owns: ``Consumer`` — per-subscriber rewriting of SSRC, payload type, sequence number, timestamp
and header-extension ids (RFC 3550 §5.1, RFC 8285) on a copy of the raw bytes; waiting for a
keyframe after start/resume; NACK answers from the producer's history as RTX (RFC 4585 §6.2.1,
RFC 4588 §4) or plain resends; keyframe requests passed to the producer; sender reports
(RFC 3550 §6.4.1) derived from the publisher's so that lip sync holds, with SDES CNAME (§6.5);
loss/jitter/RTT from the subscriber's receiver reports (§6.4.1, A.8); the layer it receives of a
simulcast track (``target_layer``, ``current_layer``): a switch waits for a keyframe of the
target layer (a ``_SwitchProbe`` in that layer's fan-out, PLI/FIR upstream) while the current
layer keeps flowing, then moves the forwarder with continuous sequence numbers and timestamps
(the layers aligned by their sender reports, else by the wall clock) and VP8 PictureID /
TL0PICIDX / KEYIDX continuing from the last ones sent (the forwarder's offsets, RFC 7741 §4.2;
NACK answers carry the same rewritten indices); VP8 temporal layers
(``temporal_target``, RFC 7741 §4.2 TID/Y): a ``_TemporalFilter`` in the forwarder's place drops
the frames above the cap, keeps the outgoing sequence numbers and PictureIDs continuous and maps
NACKed sequence numbers back (``_SeqMap``); a consumer without a cap keeps the compiled path;
a hand-over between producers on one SSRC (``timeline``/``continue_timeline``: codec steering's
backup stream) continues the output the same way a layer switch does.
Must not import anything from zvonok outside ``zvonok.media``. Sees its producer only through
``ConsumedTrack`` (the producer module imports this one, not the other way round).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from struct import unpack_from
from typing import Literal, Protocol

from ..packets.codecs import (
    offset_vp8_indices,
    shift_vp8_picture_id,
    vp8_is_keyframe,
    vp8_picture_fields,
    vp8_temporal_info,
    vp9_layer_info,
)
from ..packets.rtcp import (
    ReportBlock,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_middle,
)
from ..packets.rtp import (
    ext_id_table,
    rewrite_rtp,
    rtp_header_size,
    rtp_payload_bounds,
    wrap_rtx,
)
from .forwarder import ForwarderLike, can_send, make_forwarder
from .history import PacketHistory
from .types import CodecInfo, ConsumerParams, PacketSink

SENDER_REPORT_INTERVAL = 1.0
MAX_NACKED_PER_REQUEST = 128
_SENT_SR_KEPT = 8
#: A pending layer switch without a keyframe of the target layer is given up (and asked again)
#: after this many seconds.
SWITCH_TIMEOUT = 3.0
_U32 = 0xFFFF_FFFF
#: The highest VP8 temporal layer id (TID is 2 bits, RFC 7741 §4.2): a cap of 3 drops nothing.
MAX_TID = 3
#: The highest VP9 spatial layer id (SID is 3 bits, RFC 9628 §4.2): a cap of 7 drops nothing.
MAX_SID = 7
#: Outgoing sequence numbers a temporal filter remembers for NACK answers (a power of two; the
#: producer's history keeps 512 packets, so older NACKs find nothing to resend anyway).
SEQ_MAP_SIZE = 1024


class _ReceiveClock(Protocol):
    """The two fields of a layer's receive statistics a switch reads (RFC 3550 A.8 state)."""

    @property
    def last_ts(self) -> int: ...

    @property
    def last_transit(self) -> int: ...


class ConsumedLayer(Protocol):
    """One stream of the producer (``layers.ProducerLayer`` satisfies it)."""

    @property
    def rid(self) -> str | None: ...

    @property
    def history(self) -> PacketHistory | None:
        """The layer's recent packets, for NACK answers (video only)."""
        ...

    @property
    def last_sr(self) -> tuple[int, int, float] | None:
        """The publisher's last sender report: (NTP timestamp, RTP timestamp, arrival time)."""
        ...

    @property
    def stats(self) -> _ReceiveClock: ...

    def request_keyframe(self) -> None: ...

    def attach(self, item: object) -> None: ...

    def detach(self, item: object) -> None: ...

    def replace(self, old: object, new: object) -> None: ...


class ConsumedTrack(Protocol):
    """What a consumer needs from its producer (``Producer`` satisfies it)."""

    @property
    def kind(self) -> str: ...

    @property
    def clock_rate(self) -> int: ...

    @property
    def codecs(self) -> Mapping[int, CodecInfo]: ...

    @property
    def layers(self) -> Sequence[ConsumedLayer]: ...

    def default_layer(self) -> int: ...

    def remove_consumer(self, consumer: Consumer) -> None: ...


@dataclass(frozen=True, slots=True)
class Timeline:
    """Where a consumer's output stands (``Consumer.timeline``): the last sequence number sent,
    the output timestamp it would carry at ``at`` (wall clock), the last frame's, and the newest
    VP8 PictureID / TL0PICIDX / KEYIDX sent (-1: none)."""

    last_seq: int
    ts: int
    at: float
    last_ts: int
    last_pid: int = -1
    last_tl0: int = -1
    last_keyidx: int = -1


class _SwitchProbe:
    """Sits in the target layer's fan-out until that layer's next keyframe (any packet for
    audio), then hands the switch to its consumer. Called from the (compiled) fan-out: never
    raises."""

    __slots__ = ("consumer", "layer", "since")

    def __init__(self, consumer: Consumer, layer: int, since: float) -> None:
        self.consumer = consumer
        self.layer = layer
        self.since = since

    def forward(self, packet: bytes, keyframe: bool = False) -> None:
        if keyframe or not self.consumer._video:
            self.consumer._complete_switch(self, packet)


class _SeqMap:
    """Which input packet (and PictureID shift) each outgoing sequence number carried while a
    ``_TemporalFilter`` renumbered: NACKs (RFC 4585 §6.2.1) name outgoing numbers, and after a
    drop the forwarder's offset no longer maps them back. ``first``: the oldest outgoing number
    the map answers for (at most ``SEQ_MAP_SIZE`` behind the newest; older ones are forgotten,
    ``trimmed``); ``end``: the last number of the period once the filter left (None while it
    runs); ``offset_before``: the forwarder's offset before the period (None: the period began
    at a layer switch, what came before is another stream's numbering)."""

    __slots__ = ("slots", "first", "end", "offset_before", "trimmed")

    def __init__(self, first: int, offset_before: int | None) -> None:
        self.slots: list[tuple[int, int, int] | None] = [None] * SEQ_MAP_SIZE
        self.first = first & 0xFFFF
        self.end: int | None = None
        self.offset_before = offset_before
        self.trimmed = False

    def put(self, out_seq: int, in_seq: int, pid_shift: int) -> None:
        self.slots[out_seq & (SEQ_MAP_SIZE - 1)] = (out_seq, in_seq, pid_shift)
        ahead = (out_seq - self.first) & 0xFFFF
        if SEQ_MAP_SIZE <= ahead < 0x8000:
            self.first = (out_seq - SEQ_MAP_SIZE + 1) & 0xFFFF
            self.trimmed = True

    def reopen(self, last_out_seq: int, offset: int) -> None:
        """A filter again after the compiled forwarder sent ``end``+1..``last_out_seq`` with
        ``offset``: those are noted, and the map runs on."""
        if self.end is None:
            return
        gap = min((last_out_seq - self.end) & 0xFFFF, SEQ_MAP_SIZE)
        for back in range(gap - 1, -1, -1):
            out_seq = (last_out_seq - back) & 0xFFFF
            self.put(out_seq, (out_seq - offset) & 0xFFFF, 0)
        self.end = None

    def input_of(self, out_seq: int) -> tuple[int, int] | None | Literal[False]:
        """(input seq, PictureID shift) of ``out_seq`` when this map knows it; None when the
        period never sent it (a dropped frame's number is never sent) or forgot it; False when
        the forwarder's current offset maps it (after the period, or before one that began at
        a switch)."""
        end = self.end
        if end is not None and 0 < (out_seq - end) & 0xFFFF < 0x8000:
            return False  # after the period
        if (out_seq - self.first) & 0xFFFF >= 0x8000:  # before what the map holds
            if self.trimmed:
                return None
            if self.offset_before is None:
                return False
            return (out_seq - self.offset_before) & 0xFFFF, 0
        entry = self.slots[out_seq & (SEQ_MAP_SIZE - 1)]
        if entry is None or entry[0] != out_seq:
            return None
        return entry[1], entry[2]


class _TemporalFilter:
    """Stands in the current layer's fan-out for the consumer's forwarder while the consumer
    caps VP8 temporal layers (``Consumer.temporal_target``): called per packet from the
    (compiled) fan-out, it decides per frame (a new RTP timestamp) whether the frame's TID is
    within the cap, hands the packets it keeps to the forwarder and drops the rest so that the
    outgoing sequence numbers stay continuous (the forwarder's own skip rule, on its fields).
    PictureIDs are shifted down by the frames dropped so far, so the subscriber sees no missing
    picture (libwebrtc's VP8 reference finder waits for a missing PictureID before decoding
    the frames that reference across it); the shift is reset at a keyframe. A lower cap applies
    from the next frame; a higher one at a layer-sync frame (Y=1) of a layer above the current
    cap — one layer at a time — or at a keyframe. Non-VP8 payload types and packets without a
    TID pass unchanged. Never raises."""

    __slots__ = (
        "consumer", "vp8", "cap", "target", "frame_ts", "frame_pass", "pid_shift", "recent",
        "pending",
    )  # fmt: skip

    def __init__(self, consumer: Consumer, vp8: frozenset[int], target: int) -> None:
        self.consumer = consumer
        self.vp8 = vp8
        #: The cap applied now, and the one wanted (``MAX_TID``: everything).
        self.cap = MAX_TID
        self.target = target
        self.frame_ts: int | None = None
        self.frame_pass = True
        #: How many frames were dropped since the last keyframe (PictureIDs go down by it).
        self.pid_shift = 0
        #: The last frames' decisions (RTP timestamp -> kept, PictureID shift), for packets
        #: that arrive after a later frame began.
        self.recent: dict[int, tuple[bool, int]] = {}
        #: Input seqs dropped out of order (an earlier packet still to come): skipped in the
        #: numbering once the forwarder reaches them, so reordering leaves no hole either.
        self.pending: dict[int, None] = {}

    def forward(self, packet: bytes, keyframe: bool = False) -> None:
        consumer = self.consumer
        core = consumer.core
        if packet[1] & 0x7F not in self.vp8 or core.blocked:
            # a waiting forwarder drops all but a keyframe itself, which restarts the stream
            if keyframe and core.blocked and not core.held:
                self.reset()
            self._send(consumer, core, packet, keyframe, 0)
            return
        try:
            start = rtp_header_size(packet)
        except ValueError:
            start = len(packet)
        info = vp8_temporal_info(packet, start)
        if info is None:
            self._send(consumer, core, packet, keyframe, 0)
            return
        tid, sync, pid_pos = info
        ts: int = unpack_from("!I", packet, 4)[0]
        shift = self.pid_shift
        if ts == self.frame_ts:
            keep = self.frame_pass
        elif self.frame_ts is None or (ts - self.frame_ts) & _U32 < 0x8000_0000:
            self.frame_ts = ts
            key = keyframe or (tid <= 0 and vp8_is_keyframe(memoryview(packet)[start:]))
            keep = self.frame_pass = self._new_frame(tid, sync, key)
            shift = self.pid_shift
            recent = self.recent
            recent[ts] = (keep, shift)
            if len(recent) > 8:
                del recent[next(iter(recent))]
        else:  # a late packet of an earlier frame: as that frame was, else by its own TID
            keep, shift = self.recent.get(ts, (tid <= self.cap, shift))
        if not keep:
            self._drop(core, packet[2] << 8 | packet[3])
            return
        if pid_pos < 0:
            shift = 0
        if shift:
            packet = shift_vp8_picture_id(packet, pid_pos, shift)
        self._send(consumer, core, packet, keyframe, shift)
        if self.pending:
            self._skip_pending(core)
        if self.target == MAX_TID and not self.pid_shift:
            consumer._remove_filter()  # uncapped, nothing dropped since the last keyframe

    @property
    def uncapped(self) -> bool:
        return self.target == MAX_TID

    def _drop(self, core: ForwarderLike, in_seq: int) -> None:
        """Leave packet ``in_seq`` out without a hole in the outgoing numbering: skipped at once
        when it is the next in order, else once the forwarder reaches it."""
        core.dropped += 1
        if (in_seq + core.seq_offset - core.last_out_seq) & 0xFFFF == 1:
            core.seq_offset = (core.seq_offset - 1) & 0xFFFF
            core.sync_in_seq = (in_seq + 1) & 0xFFFF
            if self.pending:
                self._skip_pending(core)
        elif (in_seq + core.seq_offset - core.last_out_seq) & 0xFFFF < 0x8000:
            pending = self.pending
            pending[in_seq] = None
            if len(pending) > 64:
                del pending[next(iter(pending))]

    @staticmethod
    def _send(
        consumer: Consumer, core: ForwarderLike, packet: bytes, key: bool, shift: int
    ) -> None:
        """Forward, and note which input packet the outgoing sequence number carries."""
        sent = core.packets_sent
        core.forward(packet, key)
        seq_map = consumer._seq_map
        if core.packets_sent != sent and seq_map is not None:
            in_seq = packet[2] << 8 | packet[3]
            seq_map.put((in_seq + core.seq_offset) & 0xFFFF, in_seq, shift)

    def _skip_pending(self, core: ForwarderLike) -> None:
        """Skip, in the numbering, the dropped packets that are next in order now."""
        pending = self.pending
        while True:
            following = (core.last_out_seq + 1 - core.seq_offset) & 0xFFFF
            if following not in pending:
                return
            del pending[following]
            core.seq_offset = (core.seq_offset - 1) & 0xFFFF
            core.sync_in_seq = (following + 1) & 0xFFFF

    def _new_frame(self, tid: int, sync: bool, key: bool) -> bool:
        target = self.target
        if key:
            self.cap = target
            self.pid_shift = 0
        elif target < self.cap:
            self.cap = target  # down: from this frame on
        elif target > self.cap and sync and self.cap < tid <= target:
            self.cap = tid  # up: this frame depends on the base layer only
        keep = tid <= self.cap
        if not keep:
            self.pid_shift += 1  # (a stream without PictureIDs has nothing to shift)
        return keep

    def reset(self) -> None:
        """A keyframe restarted the stream (a switch, a resume): PictureIDs continue unshifted
        and the target cap applies at once (an uncapped filter then leaves)."""
        self.cap = self.target
        self.pid_shift = 0
        self.frame_ts = None
        self.recent.clear()
        self.pending.clear()


class _SvcFilter(_TemporalFilter):
    """Stands in the forwarder's place while the consumer of a VP9 SVC stream (one RTP stream
    carrying spatial and temporal layers, RFC 9628) caps its layers (``Consumer.spatial_target``,
    ``temporal_target``): per packet it reads the layer indices (SID, TID, U, B, E) and forwards
    only the packets with SID within the spatial cap and TID within the temporal cap, the
    outgoing sequence numbers kept continuous as ``_TemporalFilter`` does. The caps change at a
    new picture (a new RTP timestamp): down at once; spatial up only at a keyframe (in K-SVC
    modes such as Chrome's L3T3_KEY an upper spatial layer references the one below only
    there), asked for with PLI; temporal up at a switching-up picture (U=1) of a TID above the
    cap and within the target, one layer at a time (libwebrtc sets U on the pictures of its
    temporal pattern that reference only lower TIDs, as VP8's Y bit). The RTP
    marker bit is set on the packet that ends the highest forwarded spatial layer's frame (E=1):
    Chrome marks only the last packet of the whole picture, which a capped subscriber never
    gets (a picture without a frame of the capped layer goes out unmarked). PictureIDs need no
    rewrite: spatial layers share the picture's id, and Chrome sends flexible mode, whose frames
    name their references (P_DIFF). Non-VP9 payload types pass unchanged. Never raises."""

    __slots__ = ("spatial_cap", "spatial_target", "recent_caps", "top_tid")

    def __init__(self, consumer: Consumer, vp9: frozenset[int], spatial: int, tid: int) -> None:
        super().__init__(consumer, vp9, tid)
        #: The spatial cap applied now, and the one wanted (``MAX_SID``: every layer).
        self.spatial_cap = MAX_SID
        self.spatial_target = spatial
        #: The last pictures' caps (RTP timestamp -> (spatial, temporal)), for late packets.
        self.recent_caps: dict[int, tuple[int, int]] = {}
        #: The highest TID seen: a cap there keeps every temporal layer.
        self.top_tid = 0

    @property
    def uncapped(self) -> bool:
        return self.target >= MAX_TID and self.spatial_target >= MAX_SID

    @property
    def waits_for_keyframe(self) -> bool:
        """A higher spatial layer is wanted: it starts at the next keyframe."""
        return self.spatial_target > self.spatial_cap

    def forward(self, packet: bytes, keyframe: bool = False) -> None:
        consumer = self.consumer
        core = consumer.core
        if packet[1] & 0x7F not in self.vp8:  # (the VP9 payload types, here)
            self._send(consumer, core, packet, keyframe, 0)
            return
        try:
            start = rtp_header_size(packet)
        except ValueError:
            start = len(packet)
        info = vp9_layer_info(packet, start)
        if info is None:
            self._send(consumer, core, packet, keyframe, 0)
            return
        sid, tid, up, begin, end = info
        if tid > self.top_tid:
            self.top_tid = tid
        ts: int = unpack_from("!I", packet, 4)[0]
        if ts == self.frame_ts:
            spatial, temporal = self.spatial_cap, self.cap
        elif self.frame_ts is None or (ts - self.frame_ts) & _U32 < 0x8000_0000:
            self.frame_ts = ts
            key = keyframe or (sid == 0 and begin and not packet[start] & 0x40)
            self._new_picture(key, tid, up)
            spatial, temporal = self.spatial_cap, self.cap
            recent = self.recent_caps
            recent[ts] = (spatial, temporal)
            if len(recent) > 8:
                del recent[next(iter(recent))]
        else:  # a late packet of an earlier picture: as that picture was
            spatial, temporal = self.recent_caps.get(ts, (self.spatial_cap, self.cap))
        if sid > spatial or (temporal < MAX_TID and tid > temporal):
            self._drop(core, packet[2] << 8 | packet[3])
            return
        mark = 0
        if end and sid == spatial and not packet[1] & 0x80:
            packet = _with_marker(packet)
            mark = 1
        self._send(consumer, core, packet, keyframe, mark)
        if self.pending:
            self._skip_pending(core)
        if self.uncapped and self.spatial_cap >= MAX_SID and self.cap >= self.top_tid:
            consumer._remove_filter()  # everything flows again: the compiled path takes over

    def _new_picture(self, key: bool, tid: int, up: bool) -> None:
        if key:
            self.spatial_cap, self.cap = self.spatial_target, self.target
            return
        if self.spatial_target < self.spatial_cap:
            self.spatial_cap = self.spatial_target  # down: from this picture on
        if self.target < self.cap:
            self.cap = self.target
        elif self.target > self.cap and up and self.cap < tid <= self.target:
            self.cap = tid  # up: a switching-up picture references only lower TIDs

    def reset(self) -> None:
        """A keyframe restarted the stream: the target caps apply at once."""
        self.spatial_cap, self.cap = self.spatial_target, self.target
        self.frame_ts = None
        self.recent_caps.clear()
        self.pending.clear()


def _with_marker(packet: bytes) -> bytes:
    """A copy of the RTP packet with the marker bit set (RFC 3550 §5.1)."""
    out = bytearray(packet)
    out[1] |= 0x80
    return bytes(out)


def _offset_sent(out: bytearray, core: ForwarderLike) -> None:
    """A resent VP8 packet (rewritten ``out``) with the forwarder's PictureID / TL0PICIDX /
    KEYIDX offsets, as the forwarder sent it."""
    if not (core.pid_offset or core.tl0_offset or core.keyidx_offset):
        return
    try:
        start, end = rtp_payload_bounds(out)
    except ValueError:
        return
    fields = vp8_picture_fields(out, start, end)
    if fields is not None:
        offset_vp8_indices(out, fields, core.pid_offset, core.tl0_offset, core.keyidx_offset)


def _shift_stored(packet: bytes, shift: int) -> bytes:
    """A stored (history) packet with the PictureID shift it was sent with (NACK answers)."""
    try:
        start = rtp_header_size(packet)
    except ValueError:
        return packet
    info = vp8_temporal_info(packet, start)
    if info is None or info[2] < 0:
        return packet
    return shift_vp8_picture_id(packet, info[2], shift)


class Consumer:
    """Forwards one producer's packets to one subscriber. Created by ``Router.consume``.

    Layers (``producer.layers``; a plain track has one): ``target_layer`` is the layer wanted
    (None: paused for bandwidth), ``current_layer`` the one whose packets are forwarded (None
    while paused for bandwidth), ``layer_switches`` the switches completed. VP8 temporal
    layers: ``temporal_target`` is the highest TID wanted (None: all), ``current_temporal``
    the cap applied now.
    """

    def __init__(
        self,
        producer: ConsumedTrack,
        params: ConsumerParams,
        *,
        sink: PacketSink,
        clock: Callable[[], float],
        on_close: Callable[[Consumer], None],
    ) -> None:
        self.id = params.consumer_id
        self.ssrc = ssrc = params.ssrc
        self.rtx_ssrc = params.rtx_ssrc if params.rtx_payload_types else None
        self.kind = producer.kind
        self.producer = producer
        self.closed = False
        self.paused = False
        self._sink = sink
        self._send = sink.send_rtp
        self._pts = dict(params.payload_types)
        self._rtx_pts = dict(params.rtx_payload_types)
        self._ext = ext_id_table(params.ext_id_map)
        self._cname = params.cname
        self._clock = clock
        self._on_close = on_close
        self._video = producer.kind == "video"
        #: The payload types whose temporal layers can be capped and whose PictureID /
        #: TL0PICIDX continue across restarts (VP8, RFC 7741).
        self._vp8 = frozenset(
            pt
            for pt, codec in producer.codecs.items()
            if self._video and codec.mime.rpartition("/")[2].lower() == "vp8"
        )
        #: The per-copy state of the hot path (compiled when the transport is).
        self.core: ForwarderLike = make_forwarder(
            sink,
            ssrc=ssrc,
            payload_types=self._pts,
            ext_table=self._ext,
            video=self._video,
            ts_offset=secrets.randbits(32),
            last_out_seq=secrets.randbits(16),
            vp8_payload_types=self._vp8,
        )
        #: The layer whose fan-out holds ``core`` (None: paused for bandwidth, or detached).
        self._home: int | None = producer.default_layer()
        self._target: int | None = self._home
        self._probe: _SwitchProbe | None = None
        #: When the forwarder left its last layer with no successor yet (bandwidth pause,
        #: encoder restart): (output timestamp then, then, the last frame's output timestamp),
        #: the wall-clock fallback's origin.
        self._anchor: tuple[int, float, int] | None = None
        self.layer_switches = 0
        self.switch_timeouts = 0
        self._temporal_target: int | None = None
        #: The payload types whose spatial and temporal layers can be capped (VP9, RFC 9628).
        self._vp9 = frozenset(
            pt
            for pt, codec in producer.codecs.items()
            if self._video and codec.mime.rpartition("/")[2].lower() == "vp9"
        )
        self._spatial_target: int | None = None
        #: The producer is VP9 SVC (a spatial target was set): layer caps go to a ``_SvcFilter``.
        self._svc = False
        #: In the fan-out in place of ``core`` while temporal layers are capped (or PictureIDs
        #: still shifted), or VP9 SVC layers; None: the forwarder is called directly (compiled).
        self._filter: _TemporalFilter | None = None
        self._seq_map: _SeqMap | None = None
        self._rtx_seq = secrets.randbits(16)
        self._last_sr = float("-inf")
        self._sent_srs: dict[int, float] = {}
        self.rtx_sent = 0
        #: Bytes of those resends (what a probe cluster added to the link).
        self.rtx_bytes = 0
        self.nacks_received = 0
        self.keyframe_requests_received = 0
        self.fraction_lost = 0
        self.packets_lost = 0
        self.jitter = 0
        self.rtt: float | None = None

    # -- counters (kept by the forwarder) --------------------------------------------------

    @property
    def packets_sent(self) -> int:
        return self.core.packets_sent

    @property
    def octets_sent(self) -> int:
        return self.core.octets_sent

    @property
    def dropped(self) -> int:
        return self.core.dropped

    @property
    def waiting(self) -> bool:
        """True while a started consumer waits for its start point (video: a keyframe)."""
        return self._home is not None and self.core.blocked and not self.core.held

    # -- temporal layers (VP8) -------------------------------------------------------------

    @property
    def temporal_target(self) -> int | None:
        """The highest VP8 temporal layer (TID) to forward, None for all. A lower cap applies
        from the next frame, a higher one at a layer-sync frame (or keyframe). No effect on
        other codecs (their packets pass)."""
        return self._temporal_target

    @temporal_target.setter
    def temporal_target(self, tid: int | None) -> None:
        if tid is not None and not 0 <= tid <= MAX_TID:
            raise ValueError(f"temporal layer {tid} is not in 0..{MAX_TID}")
        if tid == MAX_TID:
            tid = None
        self._temporal_target = tid
        if self._svc:
            self._update_svc()
            return
        if self.closed or not self._vp8:
            return
        f = self._filter
        if tid is not None:
            if f is None:
                self._install_filter(tid)
            else:
                f.target = tid
            return
        if f is None:
            return
        f.target = MAX_TID
        if not f.pid_shift:
            self._remove_filter()  # nothing dropped since the last keyframe: nothing missing
        elif f.pid_shift and self._home is not None:
            # PictureIDs are shifted: only a keyframe lets the compiled path take over again
            self.producer.layers[self._home].request_keyframe()

    # -- VP9 SVC -----------------------------------------------------------------------------

    @property
    def spatial_target(self) -> int | None:
        """The highest VP9 spatial layer (SID) to forward of an SVC stream, None for all. A
        lower cap applies from the next picture, a higher one at the next keyframe (asked for).
        Setting it (also to None) makes ``temporal_target`` cap VP9 TIDs as well. No effect on
        a track without a VP9 payload type."""
        return self._spatial_target

    @spatial_target.setter
    def spatial_target(self, sid: int | None) -> None:
        if sid is not None and not 0 <= sid <= MAX_SID:
            raise ValueError(f"spatial layer {sid} is not in 0..{MAX_SID}")
        if sid == MAX_SID:
            sid = None
        self._spatial_target = sid
        if self._vp9:
            self._svc = True
            self._update_svc()

    @property
    def current_spatial(self) -> int | None:
        """The spatial cap applied now (None: every spatial layer is forwarded)."""
        f = self._filter
        if not isinstance(f, _SvcFilter) or f.spatial_cap >= MAX_SID:
            return None
        return f.spatial_cap

    def _update_svc(self) -> None:
        if self.closed:
            return
        spatial = MAX_SID if self._spatial_target is None else self._spatial_target
        tid = MAX_TID if self._temporal_target is None else self._temporal_target
        f = self._filter
        if not isinstance(f, _SvcFilter):
            if spatial >= MAX_SID and tid >= MAX_TID:
                return
            self._remove_filter()
            f = _SvcFilter(self, self._vp9, spatial, tid)
            self._put_filter(f)
        else:
            f.spatial_target, f.target = spatial, tid
        if f.waits_for_keyframe and self._home is not None:
            self.producer.layers[self._home].request_keyframe()

    @property
    def current_temporal(self) -> int | None:
        """The temporal cap applied now (None: every layer is forwarded)."""
        f = self._filter
        return None if f is None or f.cap >= MAX_TID else f.cap

    @property
    def _item(self) -> object:
        """What this consumer puts into its layer's fan-out."""
        return self._filter if self._filter is not None else self.core

    def _install_filter(self, target: int) -> None:
        self._put_filter(_TemporalFilter(self, self._vp8, target))

    def _put_filter(self, f: _TemporalFilter) -> None:
        core = self.core
        if self._seq_map is None:
            self._seq_map = _SeqMap(core.last_out_seq + 1, core.seq_offset)
        else:  # the last period's numbers stay known (they were sent with other offsets)
            self._seq_map.reopen(core.last_out_seq, core.seq_offset)
        self._filter = f
        if self._home is not None:
            self.producer.layers[self._home].replace(core, f)

    def _remove_filter(self) -> None:
        f, self._filter = self._filter, None
        if f is None:
            return
        if self._seq_map is not None:
            self._seq_map.end = self.core.last_out_seq
        if self._home is not None and not self.closed:
            self.producer.layers[self._home].replace(f, self.core)

    # -- layers ----------------------------------------------------------------------------

    @property
    def target_layer(self) -> int | None:
        """The layer this subscriber should receive (an index of ``producer.layers``), None to
        pause the video for bandwidth. Setting it starts a switch at the layer's next keyframe."""
        return self._target

    @target_layer.setter
    def target_layer(self, index: int | None) -> None:
        if index is not None and not 0 <= index < len(self.producer.layers):
            raise ValueError(f"layer {index} is not one of {len(self.producer.layers)}")
        self._target = index
        if not self.closed:
            self._apply_target()

    @property
    def current_layer(self) -> int | None:
        """The layer being forwarded (or waited on for a first keyframe); None when paused for
        bandwidth."""
        return self._home

    @property
    def switch_pending(self) -> bool:
        return self._probe is not None

    @property
    def current_rid(self) -> str | None:
        return self.producer.layers[self._home].rid if self._home is not None else None

    def attach(self) -> None:
        """Put the forwarder into its layer's fan-out (``Producer.add_consumer``)."""
        if self._home is not None and not self.closed:
            self.producer.layers[self._home].attach(self._item)

    def detach(self) -> None:
        """Take the forwarder and any pending switch out of every fan-out."""
        self._cancel_probe()
        if self._home is not None:
            self.producer.layers[self._home].detach(self._item)

    def leave_layer(self, index: int) -> bool:
        """Layer ``index`` is about to be sent under a new SSRC (its encoder restarted: new
        sequence and timestamp spaces): a forwarder on it leaves, keeping its output clock;
        True if it did (then ``rejoin`` once the layer is rebound)."""
        if self.closed or self._home != index:
            return False
        self._leave_home()
        return True

    def rejoin(self) -> None:
        """Wait for the target layer's next keyframe again (after ``leave_layer``)."""
        if not self.closed:
            self._apply_target()

    def timeline(self) -> Timeline | None:
        """This consumer's output clock and numbering, for a consumer of another producer that
        takes over its SSRC (``continue_timeline``), also once closed (its producer went
        away); None when nothing was sent yet."""
        if not self.core.packets_sent:
            return None
        now = self._clock()
        ts, last = self._output_ts(now), self._last_output_ts()
        if ts is None or last is None:
            return None
        core = self.core
        return Timeline(
            core.last_out_seq, ts, now, last, core.last_pid, core.last_tl0, core.last_keyidx
        )

    def continue_timeline(self, timeline: Timeline) -> None:
        """Take over the output of a consumer of another producer on the same SSRC (a subscriber
        moved between a track and its backup stream, codec steering): wait for this producer's
        next keyframe, then continue ``timeline``'s sequence numbers and, by the wall clock, its
        timestamps, as a layer switch without sender reports does."""
        if self.closed:
            return
        self._cancel_probe()
        if self._home is not None:
            self.producer.layers[self._home].detach(self._item)
            self._home = None
        self.core.blocked = True
        self.core.last_out_seq = timeline.last_seq
        # VP8 indices continue from the other consumer's at this producer's first keyframe
        self.core.last_pid = timeline.last_pid
        self.core.last_tl0 = timeline.last_tl0
        self.core.last_keyidx = timeline.last_keyidx
        self._anchor = (timeline.ts, timeline.at, timeline.last_ts)
        self._apply_target()

    def _apply_target(self) -> None:
        target = self._target
        if target is None:
            self._cancel_probe()
            if self._home is not None:
                self._leave_home()
            return
        if self.paused:
            return  # applied on resume
        if target == self._home:
            self._cancel_probe()
            return
        if self._probe is not None and self._probe.layer == target:
            return
        self._cancel_probe()
        layers = self.producer.layers
        if self._home is not None and self.core.packets_sent == 0:
            # nothing forwarded yet: no timeline to continue, wait on the target directly
            layers[self._home].detach(self._item)
            self._home = target
            layers[target].attach(self._item)
            self.start()
            return
        probe = _SwitchProbe(self, target, self._clock())
        self._probe = probe
        layer = self.producer.layers[target]
        layer.attach(probe)
        if self._video:
            layer.request_keyframe()

    def _cancel_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            self.producer.layers[probe.layer].detach(probe)

    def _leave_home(self) -> None:
        """Stop forwarding without a successor layer yet; remember the output clock."""
        home = self._home
        if home is None:
            return
        now = self._clock()
        ts = self._output_ts(now)
        last = self._last_output_ts()
        if ts is not None and last is not None:
            self._anchor = (ts, now, last)
        self.producer.layers[home].detach(self._item)
        self.core.blocked = True
        self._home = None

    def _output_ts(self, now: float) -> int | None:
        """The output timestamp the stream would carry at ``now``: the current layer's last
        frame extrapolated by the wall clock (RFC 3550 A.8 transit = arrival - timestamp),
        or the anchor's; None when nothing was forwarded yet."""
        rate = self.producer.clock_rate
        if self._home is not None and self.core.packets_sent:
            stats = self.producer.layers[self._home].stats
            if stats.last_ts >= 0:
                return (self.core.ts_offset + int(now * rate) - stats.last_transit) & _U32
        if self._anchor is not None:
            ts, at, _ = self._anchor
            return (ts + round((now - at) * rate)) & _U32
        return None

    def _last_output_ts(self) -> int | None:
        """The output timestamp of the last frame forwarded (about), or None."""
        if self._home is not None and self.core.packets_sent:
            last = self.producer.layers[self._home].stats.last_ts
            if last >= 0:
                return (last + self.core.ts_offset) & _U32
        return self._anchor[2] if self._anchor is not None else None

    def _switch_offset(self, target: ConsumedLayer, packet: bytes) -> int:
        """The timestamp offset that continues the output timeline on ``target``, whose
        keyframe ``packet`` is: the layers' sender reports map both RTP clocks to the same NTP
        instant; without them, the output clock is extrapolated by the wall clock. Never
        earlier than the last frame sent (then one 30 fps frame later)."""
        core = self.core
        rate = self.producer.clock_rate
        ts_new: int = unpack_from("!I", packet, 4)[0]
        old = self.producer.layers[self._home] if self._home is not None else None
        offset: int | None = None
        if old is not None and core.packets_sent and old.last_sr and target.last_sr:
            ntp_old, rtp_old, _ = old.last_sr
            ntp_new, rtp_new, _ = target.last_sr
            delta = ((ntp_new - ntp_old + (1 << 63)) & (1 << 64) - 1) - (1 << 63)
            offset = core.ts_offset + rtp_old - rtp_new + round(delta * rate / (1 << 32))
        else:
            now_ts = self._output_ts(self._clock())
            if now_ts is not None:
                offset = now_ts - ts_new
        if offset is None:
            return core.ts_offset
        floor = self._last_output_ts()
        if floor is not None:
            ahead = ((ts_new + offset - floor + (1 << 31)) & _U32) - (1 << 31)
            if ahead <= 0:
                offset = floor + max(1, rate // 30) - ts_new
        return offset & _U32

    def _complete_switch(self, probe: _SwitchProbe, packet: bytes) -> None:
        """The target layer's keyframe: move the forwarder there and forward it."""
        layers = self.producer.layers
        target = layers[probe.layer]
        if probe is not self._probe or self.closed:
            target.detach(probe)
            return
        try:
            offset = self._switch_offset(target, packet)
        except (ValueError, IndexError):  # struct.error is a ValueError; a short packet
            return
        old = self.core
        if self._home is not None:
            layers[self._home].detach(self._item)
        core = self._make_core(offset, old)
        core.blocked = True
        core.held = False
        old.blocked = old.held = True
        self.core = core
        f = self._filter
        if f is not None:
            # another stream: its own PictureIDs and numbering from this keyframe on
            f.reset()
            self._seq_map = _SeqMap(old.last_out_seq + 1, None)
            if f.uncapped:
                self._filter = None
                self._seq_map.end = old.last_out_seq
        else:
            self._seq_map = None  # what it mapped was the old stream's
        target.replace(probe, self._item)
        self._probe = None
        self._home = probe.layer
        self._anchor = None
        self.layer_switches += 1
        self._item.forward(packet, True)  # type: ignore[attr-defined]

    def _make_core(self, ts_offset: int, old: ForwarderLike) -> ForwarderLike:
        """A forwarder with ``ts_offset``, numbering, VP8 indices and counters carried over
        from ``old``."""
        core = make_forwarder(
            self._sink,
            ssrc=self.ssrc,
            payload_types=self._pts,
            ext_table=self._ext,
            video=self._video,
            ts_offset=ts_offset,
            last_out_seq=old.last_out_seq,
            vp8_payload_types=self._vp8,
        )
        core.blocked = old.blocked
        core.held = old.held
        core.seq_offset = old.seq_offset
        core.sync_in_seq = old.sync_in_seq
        # VP8 indices: a rebuilt forwarder goes on with the same offsets; a switch's new one
        # is blocked, and its first keyframe sets them from the last values sent
        core.pid_offset = old.pid_offset
        core.tl0_offset = old.tl0_offset
        core.keyidx_offset = old.keyidx_offset
        core.last_pid = old.last_pid
        core.last_tl0 = old.last_tl0
        core.last_keyidx = old.last_keyidx
        core.vp8_resync = old.vp8_resync
        core.packets_sent = old.packets_sent
        core.octets_sent = old.octets_sent
        core.dropped = old.dropped
        return core

    # -- control ---------------------------------------------------------------------------

    def retarget(self) -> None:
        """The sink's send target was replaced (its transport moved between UDP and ICE-TCP):
        rebuild the forwarder on the new one, numbering and counters carried over."""
        if self.closed:
            return
        self._rebuild()

    def update(self, params: ConsumerParams) -> None:
        """The subscriber renegotiated its m-line with other payload types or header-extension
        ids (aiortc renumbers both in every offer it makes, RFC 8285 §6 lets it): forward with
        the new maps from the next packet on, numbering and counters carried over."""
        pts = dict(params.payload_types)
        rtx_pts = dict(params.rtx_payload_types)
        ext = ext_id_table(params.ext_id_map)
        if self.closed or (pts == self._pts and rtx_pts == self._rtx_pts and ext == self._ext):
            return
        self._pts, self._rtx_pts, self._ext = pts, rtx_pts, ext
        self._rebuild()

    def _rebuild(self) -> None:
        old = self.core
        self.core = self._make_core(old.ts_offset, old)
        if self._home is not None and self._filter is None:  # a filter calls ``self.core``
            self.producer.layers[self._home].replace(old, self.core)

    def start(self) -> None:
        """Begin forwarding: video waits for a keyframe and asks the producer for one (once the
        subscriber's transport can send: else the tick asks as soon as it can)."""
        if not self.paused and not self.closed and self._video and self._home is not None:
            if self._can_send():
                self.producer.layers[self._home].request_keyframe()

    def _can_send(self) -> bool:
        """The subscriber's transport can send now (DTLS done). A keyframe that comes before
        that starts nothing (the forwarder waits for one it can send), and asking for it would
        hold the layer's next request back by up to ``KEYFRAME_REQUEST_INTERVAL``, so a new
        subscriber asks for its first keyframe when its transport is ready."""
        return can_send(self._sink)

    def pause(self) -> None:
        if self.closed:
            return
        self.paused = True
        self._cancel_probe()
        self.core.held = True
        self.core.blocked = True

    def resume(self) -> None:
        if self.closed or not self.paused:
            return
        self.paused = False
        self.core.held = False
        self.core.blocked = True
        if self._target != self._home:
            self._apply_target()
        else:
            self.start()

    def receive_nack(self, seqs: Iterable[int]) -> None:
        """Resend the packets the subscriber lost (its seqs) from the current layer's history."""
        self.nacks_received += 1
        if self._home is None or self.closed or self.paused:
            return
        history = self.producer.layers[self._home].history
        if history is None:
            return
        seq_map = self._seq_map
        for count, seq in enumerate(seqs):
            if count >= MAX_NACKED_PER_REQUEST:
                break
            core = self.core
            if core.blocked:
                continue
            seq &= 0xFFFF
            known = seq_map.input_of(seq) if seq_map is not None else False
            if known is None:
                continue  # a number a temporal filter never sent (or forgot)
            shift = 0
            if known is False:
                in_seq = (seq - core.seq_offset) & 0xFFFF
                if (in_seq - core.sync_in_seq) & 0xFFFF >= 0x8000:
                    continue  # before our sync point: another stream's numbering
            else:
                in_seq, shift = known
            packet = history.get(in_seq)
            if packet is not None:
                self._resend(packet, seq, shift)

    def _resend(self, packet: bytes, seq: int, pid_shift: int = 0) -> None:
        pt = self._pts.get(packet[1] & 0x7F)
        if pt is None:
            return
        if pid_shift and packet[1] & 0x7F in self._vp9:
            packet = _with_marker(packet)  # as sent: it ended the top forwarded spatial layer
        elif pid_shift:
            packet = _shift_stored(packet, pid_shift)
        ts = (unpack_from("!I", packet, 4)[0] + self.core.ts_offset) & 0xFFFF_FFFF
        try:
            out = rewrite_rtp(packet, self.ssrc, pt, seq, ts, self._ext)
            if packet[1] & 0x7F in self._vp8:
                _offset_sent(out, self.core)  # the indices it was first sent with
            rtx_pt = self._rtx_pts.get(pt)
            if rtx_pt is not None and self.rtx_ssrc is not None:
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
                out = wrap_rtx(out, self.rtx_ssrc, rtx_pt, self._rtx_seq)
        except ValueError:
            return
        self.rtx_sent += 1
        self.rtx_bytes += len(out)
        self._send(out)

    def receive_keyframe_request(self) -> None:
        """PLI/FIR from the subscriber: a (throttled) request to the current layer."""
        self.keyframe_requests_received += 1
        if not self.closed and self._video and self._home is not None:
            self.producer.layers[self._home].request_keyframe()

    def receive_receiver_report(self, block: ReportBlock, now: float) -> None:
        """Loss and jitter as the subscriber sees them; RTT from LSR/DLSR (RFC 3550 §6.4.1)."""
        self.fraction_lost = block.fraction_lost
        self.packets_lost = block.packets_lost
        self.jitter = block.jitter
        sent_at = self._sent_srs.get(block.lsr) if block.lsr else None
        if sent_at is not None:
            self.rtt = max(0.0, now - sent_at - block.dlsr / 65536)

    # -- periodic --------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Sender report + SDES about once a second; re-ask for a keyframe while waiting; a
        pending layer switch is given up and asked again after ``SWITCH_TIMEOUT``."""
        if self.closed:
            return
        seq_map = self._seq_map
        if seq_map is not None and seq_map.end is not None:
            if (self.core.last_out_seq - seq_map.end) & 0xFFFF > SEQ_MAP_SIZE:
                self._seq_map = None  # NACKs that old find nothing in the history anyway
        if self._video and not self.paused:
            probe = self._probe
            if probe is not None and now - probe.since >= SWITCH_TIMEOUT:
                self.switch_timeouts += 1
                probe.since = now
                self.producer.layers[probe.layer].request_keyframe()
            if self.waiting and self._can_send():
                self.producer.layers[self._home].request_keyframe()  # type: ignore[index]
            f = self._filter
            if isinstance(f, _SvcFilter) and f.waits_for_keyframe and self._home is not None:
                self.producer.layers[self._home].request_keyframe()  # throttled by the layer
        if now - self._last_sr >= SENDER_REPORT_INTERVAL * 0.95:
            report = self.sender_report(now)
            if report is not None:
                self._last_sr = now
                self._sink.send_rtcp(report)

    def sender_report(self, now: float) -> bytes | None:
        """SR + SDES CNAME, or None before the current layer's first SR or our first packet.

        The NTP↔RTP relation is the publisher's (of the current layer), shifted by our
        timestamp offset and extrapolated to ``now`` at the codec clock rate; the counts are
        our own.
        """
        if self._home is None:
            return None
        last = self.producer.layers[self._home].last_sr
        if last is None or self.core.packets_sent == 0:
            return None
        ntp, rtp_ts, at = last
        elapsed = now - at
        ntp_now = (ntp + int(elapsed * (1 << 32))) & 0xFFFF_FFFF_FFFF_FFFF
        rtp_now = (rtp_ts + self.core.ts_offset + round(elapsed * self.producer.clock_rate)) & (
            0xFFFF_FFFF
        )
        core = self.core
        packets, octets = core.packets_sent & 0xFFFF_FFFF, core.octets_sent & 0xFFFF_FFFF
        sr = SenderReport(self.ssrc, ntp_now, rtp_now, packets, octets)
        self._sent_srs[ntp_middle(ntp_now)] = now
        while len(self._sent_srs) > _SENT_SR_KEPT:
            del self._sent_srs[next(iter(self._sent_srs))]
        return build_compound([sr, SourceDescription.cname_of(self.ssrc, self._cname)])

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop forwarding and detach from the producer and the router. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.core.held = True
        self.core.blocked = True
        self.producer.remove_consumer(self)
        self._on_close(self)
