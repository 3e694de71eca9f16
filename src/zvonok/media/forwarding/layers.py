"""One RTP stream of a published track: the whole track when it is plain, one simulcast
encoding (RFC 8853 rid) when it is not.

Owns: ``ProducerLayer`` — its SSRC (given by the SDP, or learned from the rid extension, RFC
8852, by ``MediaEndpoint``) and RTX SSRC, sequence/loss/jitter tracking (RFC 3550 A.1/A.3/A.8),
receiver reports (§6.4.2) and generic NACKs (RFC 4585 §6.2.1) to the publisher, keyframe
requests (PLI RFC 4585 §6.3.1, FIR RFC 5104 §4.3.1) throttled to about one a second, RTX
unwrapping (RFC 4588 §4), its last sender report, its packet history, its measured bitrate and
activity, the picture size of its last keyframe, the measured rate of each VP8 temporal layer
(RFC 7741 §4.2 TID: bitrate and frame rate up to each TID, read from the history on the tick),
and the fan-out list of the consumers whose forwarder (or pending switch) is on it.
Must not import anything from zvonok outside ``zvonok.media``.

``receive_rtp`` is the hot path: the compiled ``ProducerCore`` of the layer, no Python per packet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..packets.codecs import (
    FrameSizeReader,
    KeyframeDetector,
    frame_size_reader,
    keyframe_detector,
    vp8_temporal_info,
    vp9_layer_info,
    vp9_resolutions,
)
from ..packets.rtcp import (
    Fir,
    Nack,
    Pli,
    SenderReport,
    ntp_middle,
)
from ..packets.rtp import rtp_header_size, rtp_timestamp, unwrap_rtx
from .forwarder import make_fanout, make_producer_core
from .history import PacketHistory
from .reports import ReceiverReports
from .stats import MissingPackets, ReceiveStats
from .types import CodecInfo, PacketSink

KEYFRAME_REQUEST_INTERVAL = 1.0
#: Seconds between two receiver reports about a stream (RFC 3550 §6.2; the tick's 0.25 s
#: granularity makes it 1-1.25 s). The router sends one early with the reports of the
#: publisher's other streams once ``EARLY_SHARE`` of it has passed (on 0.25 s ticks: after
#: 0.5 s, within the 0.5-1.5 x spread §6.3.1 gives the interval), so they go in one packet.
RECEIVER_REPORT_INTERVAL = 1.0
EARLY_SHARE = 0.45
#: Video packets kept for NACK answers: 2-5 s of video (NACKs older than NACK_MAX_AGE are moot).
HISTORY_SIZE = 512
#: Audio packets kept for ``recent_packets`` (audio levels, RFC 6464): about 1.3 s of Opus.
AUDIO_HISTORY_SIZE = 64
#: A layer is active while it received a packet within its activity window: four of its mean
#: packet intervals (measured over the last bitrate window that had packets), clamped to these
#: bounds. A 30 fps layer that stops (the publisher's encoder dropped it for its uplink) reads
#: inactive after 0.35-0.6 s, so its subscribers move to a layer that still flows before their
#: picture freezes for long; a layer with few packets keeps the longer window.
ACTIVE_WINDOW = 1.0
MIN_ACTIVE_WINDOW = 0.35
#: The bitrate is measured over windows of at least this long (from ``tick``).
BITRATE_WINDOW = 1.0


class ProducerLayer:
    """One inbound RTP stream of a ``Producer`` (its ``layers``)."""

    def __init__(
        self,
        *,
        rid: str | None,
        ssrc: int | None,
        rtx_ssrc: int | None,
        kind: str,
        codecs: Mapping[int, CodecInfo],
        rtx_payload_types: Mapping[int, int],
        sink: PacketSink,
        rtcp_ssrc: int,
        cname: str,
        clock: Callable[[], float],
    ) -> None:
        self.rid = rid
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.kind = kind
        self._sink = sink
        self._rtx_pts = dict(rtx_payload_types)
        self._rtcp_ssrc = rtcp_ssrc
        self._cname = cname
        self._clock = clock
        video = kind == "video"
        #: The original packets for NACK answers (video only).
        self.history: PacketHistory | None = PacketHistory(HISTORY_SIZE) if video else None
        #: Audio: the last packets, for ``recent_packets`` (the core fills one or the other).
        self._recent: PacketHistory | None = None if video else PacketHistory(AUDIO_HISTORY_SIZE)
        self._detectors: dict[int, KeyframeDetector] = {}
        self._sizes: dict[int, FrameSizeReader] = {}
        #: VP8 payload types: their packets' temporal layer ids are counted (``tick``).
        self._vp8 = frozenset(
            pt for pt, c in codecs.items() if video and c.mime.rpartition("/")[2].lower() == "vp8"
        )
        #: VP9 payload types: their packets' spatial and temporal layer ids are counted (SVC).
        self._vp9 = frozenset(
            pt for pt, c in codecs.items() if video and c.mime.rpartition("/")[2].lower() == "vp9"
        )
        if video:
            for pt, codec in codecs.items():
                detector = keyframe_detector(codec.mime)
                if detector is not None:
                    self._detectors[pt] = detector
                reader = frame_size_reader(codec.mime)
                if reader is not None:
                    self._sizes[pt] = reader
        first = next(iter(codecs.values()))
        self.clock_rate = first.clock_rate
        self._nack = video and any(c.nack for c in codecs.values())
        self._pli = any(c.pli for c in codecs.values())
        self._fir = any(c.fir for c in codecs.values())
        self._fir_seq = 0
        self._last_keyframe_request = float("-inf")
        self._keyframe_pending = False
        self._last_rr = float("-inf")
        #: The publisher's last sender report: (NTP timestamp, RTP timestamp, arrival time).
        self.last_sr: tuple[int, int, float] | None = None
        self.keyframes = 0
        self.rtx_received = 0
        self._rtx_dropped = 0
        self.nacks_sent = 0
        self.keyframe_requests_sent = 0
        #: The consumers' forwarders (and pending switches) fed by this stream, in order.
        self._items: list[Any] = []
        self.fanout = make_fanout()
        #: Picture size of the last keyframe seen (video), None until one was read.
        self.width: int | None = None
        self.height: int | None = None
        #: Bits per second received over the last ~second (``tick``); 0 before the first window.
        self.bitrate = 0
        self._rate_at = float("-inf")
        self._rate_bytes = 0
        self._seen_packets = 0
        self._seen_at = float("-inf")
        self._rate_packets = 0
        #: This layer's activity window (``ACTIVE_WINDOW``), from its packet rate.
        self.active_window = ACTIVE_WINDOW
        #: VP8 temporal layers measured over the last bitrate window: index t is the bit/s and
        #: the frames per second of TIDs 0..t together (the last entry is the whole stream);
        #: empty when the stream carries no TID (no temporal layers, other codecs).
        self.temporal_bitrates: tuple[int, ...] = ()
        self.temporal_fps: tuple[float, ...] = ()
        self._tid_bytes = [0] * 4
        self._tid_frames = [0] * 4
        #: VP9 SVC (RFC 9628 layer indices) measured over the last bitrate window: index s is
        #: the bit/s of spatial layers 0..s together (all TIDs; the last entry is the whole
        #: stream), and for each s the bit/s of TIDs 0..t within spatial layers 0..s; empty
        #: without spatial layers (one SID seen).
        self.spatial_bitrates: tuple[int, ...] = ()
        self.spatial_temporal_bitrates: tuple[tuple[int, ...], ...] = ()
        #: The resolution of each spatial layer, lowest first, from the last keyframe's VP9
        #: scalability structure; empty without one.
        self.spatial_sizes: tuple[tuple[int, int], ...] = ()
        self._layer_bytes = [[0] * 8 for _ in range(8)]  # [sid][tid]
        self._walked: int | None = None
        self._walk_ts = -1
        #: When the SSRC was last (re)bound by learning (``MediaEndpoint``).
        self.bound_at = float("-inf")
        self.stats = ReceiveStats(self.clock_rate)
        self.missing = MissingPackets()
        self._build_core()
        # The first keyframe is read for its picture size even before anyone asks for one.
        self.core.want_keyframe = bool(self._detectors)

    def _build_core(self) -> None:
        ring = self.history if self.history is not None else self._recent
        #: The per-packet work (compiled when built); ``receive_rtp`` is its bound method.
        self.core = make_producer_core(
            stats=self.stats,
            missing=self.missing.entries,
            history=ring.slots if ring is not None else None,
            fanout=self.fanout,
            on_gap=self._on_gap,
            spot_keyframe=self._spot_keyframe,
            clock=self._clock,
        )
        self.receive_rtp: Callable[[bytes], None] = self.core.receive

    # -- counters --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.core.closed

    @property
    def want_keyframe(self) -> bool:
        """Keyframes are only looked for between a request and the next keyframe (video)."""
        return self.core.want_keyframe

    @want_keyframe.setter
    def want_keyframe(self, value: bool) -> None:
        self.core.want_keyframe = value

    @property
    def packets_received(self) -> int:
        return self.core.packets_received

    @property
    def bytes_received(self) -> int:
        return self.core.bytes_received

    @property
    def dropped(self) -> int:
        return self.core.dropped + self._rtx_dropped

    @property
    def active(self) -> bool:
        """A packet arrived within the last ``ACTIVE_WINDOW`` seconds (as seen at the last
        look: ``tick`` looks 4-5 times a second)."""
        return self._look(self._clock())

    def _look(self, now: float) -> bool:
        count = self.core.packets_received
        if count != self._seen_packets:
            self._seen_packets, self._seen_at = count, now
        return now - self._seen_at <= self.active_window

    # -- hot-path callbacks ----------------------------------------------------------------

    def _spot_keyframe(self, packet: bytes) -> bool:
        """True if the packet starts a keyframe (waiting consumers start there)."""
        pt = packet[1] & 0x7F
        detector = self._detectors.get(pt)
        if detector is None:
            return False
        try:
            start = rtp_header_size(packet)
        except ValueError:
            return False
        payload = memoryview(packet)[start:]
        if not detector(payload):
            return False
        self.keyframes += 1
        self._keyframe_pending = self.want_keyframe = False
        reader = self._sizes.get(pt)
        size = reader(payload) if reader is not None else None
        if size is not None:
            self.width, self.height = size
        if pt in self._vp9:
            self.spatial_sizes = vp9_resolutions(payload)
        return True

    def _on_gap(self, seq: int, gap: int, now: float) -> None:
        if not self._nack or self.ssrc is None:
            return
        seqs = self.missing.add_gap((seq - gap) & 0xFFFF, gap, now)
        if seqs:
            self._send_nack(seqs)

    def receive_rtx(self, packet: bytes) -> None:
        """An RFC 4588 retransmission: unwrap and handle like the original (padding-only: drop)."""
        if self.closed or len(packet) < 12 or self.ssrc is None:
            self._rtx_dropped += 1
            return
        apt = self._rtx_pts.get(packet[1] & 0x7F)
        if apt is None:
            self._rtx_dropped += 1
            return
        try:
            original = unwrap_rtx(packet, apt, self.ssrc)
        except ValueError:
            self._rtx_dropped += 1  # padding-only probes land here too
            return
        self.rtx_received += 1
        self.receive_rtp(bytes(original))

    @property
    def ring(self) -> PacketHistory | None:
        """The ring the core stores every packet in: the history (video), or the last
        ``AUDIO_HISTORY_SIZE`` packets (audio). Read it, never write it."""
        return self.history if self.history is not None else self._recent

    def recent_packets(self, count: int = AUDIO_HISTORY_SIZE) -> list[bytes]:
        """The last ``count`` packets received in sequence order, oldest first (gaps skipped)."""
        ring = self.ring
        if ring is None or not self.stats.started:
            return []
        newest = self.stats.max_seq
        count = max(0, min(count, len(ring.slots)))
        out = []
        for back in range(count - 1, -1, -1):
            packet = ring.get((newest - back) & 0xFFFF)
            if packet is not None:
                out.append(packet)
        return out

    # -- fan-out ---------------------------------------------------------------------------

    def attach(self, item: object) -> None:
        """Feed ``item`` (a forwarder, or a pending switch) from the next packet on."""
        if item not in self._items:
            self._items.append(item)
            self.fanout.set(self._items)

    def detach(self, item: object) -> None:
        if item in self._items:
            self._items.remove(item)
            self.fanout.set(self._items)

    def replace(self, old: object, new: object) -> None:
        """Put ``new`` where ``old`` was (appended when ``old`` is not here)."""
        try:
            self._items[self._items.index(old)] = new
        except ValueError:
            self._items.append(new)
        self.fanout.set(self._items)

    @property
    def items(self) -> tuple[object, ...]:
        return tuple(self._items)

    # -- SSRC learning ---------------------------------------------------------------------

    def rebind(self, ssrc: int, now: float) -> None:
        """The publisher sends this stream under a new SSRC (first sight, or its encoder
        restarted): fresh receive state; consumers on this layer re-sync (``Producer``)."""
        self.bound_at = now
        if self.ssrc is None or self.ssrc == ssrc:
            self.ssrc = ssrc
            return
        self.ssrc = ssrc
        old = self.core
        self.stats = ReceiveStats(self.clock_rate)
        self.missing.entries.clear()
        if self.history is not None:
            self.history.clear()
        if self._recent is not None:
            self._recent.clear()
        self.last_sr = None
        self._walked = None
        self._build_core()
        self.core.packets_received = old.packets_received
        self.core.bytes_received = old.bytes_received
        self.core.dropped = old.dropped
        self.core.want_keyframe = bool(self._detectors)
        old.closed = True

    # -- RTCP ------------------------------------------------------------------------------

    def receive_sender_report(self, sr: SenderReport, now: float) -> None:
        self.last_sr = (sr.ntp_timestamp, sr.rtp_timestamp, now)

    def request_keyframe(self) -> None:
        """PLI (or FIR when PLI was not negotiated) to the publisher, at most one a second."""
        if self.closed or self.kind != "video":
            return
        self.want_keyframe = bool(self._detectors)
        now = self._clock()
        if now - self._last_keyframe_request < KEYFRAME_REQUEST_INTERVAL or self.ssrc is None:
            self._keyframe_pending = True
            return
        self._send_keyframe_request(now)

    def _send_keyframe_request(self, now: float) -> None:
        ssrc = self.ssrc
        if ssrc is None:
            return
        self._last_keyframe_request = now
        self._keyframe_pending = False
        if self._pli:
            packet = bytes(Pli(self._rtcp_ssrc, ssrc))
        elif self._fir:
            self._fir_seq = (self._fir_seq + 1) & 0xFF
            packet = bytes(Fir(self._rtcp_ssrc, 0, [(ssrc, self._fir_seq)]))
        else:
            return
        self.keyframe_requests_sent += 1
        self._sink.send_rtcp(packet)

    def _send_nack(self, seqs: list[int]) -> None:
        if self.ssrc is None:
            return
        self.nacks_sent += 1
        self._sink.send_rtcp(bytes(Nack(self._rtcp_ssrc, self.ssrc, seqs)))

    def tick(self, now: float, reports: ReceiverReports | None = None) -> None:
        """Receiver report about once a second (its block handed to ``reports`` when given,
        which sends the publisher's blocks together; else sent alone), NACK retries, a
        throttled keyframe request, the bitrate window and the activity look."""
        if self.closed:
            return
        self._look(now)
        if self._vp8 or self._vp9:
            self._walk_history()
        if now - self._rate_at >= BITRATE_WINDOW:
            received = self.core.bytes_received
            packets = self.core.packets_received
            if self._rate_at > float("-inf"):
                span = now - self._rate_at
                self.bitrate = int((received - self._rate_bytes) * 8 / span)
                if packets > self._rate_packets:  # a window without packets keeps the last one
                    interval = span / (packets - self._rate_packets)
                    self.active_window = min(ACTIVE_WINDOW, max(MIN_ACTIVE_WINDOW, 4 * interval))
                if self._vp8 or self._vp9:
                    self._temporal_window(span)
            else:  # the first window opens: what the walk saw so far came before it
                self._tid_bytes = [0] * 4
                self._tid_frames = [0] * 4
                self._layer_bytes = [[0] * 8 for _ in range(8)]
            self._rate_at, self._rate_bytes, self._rate_packets = now, received, packets
        if self._keyframe_pending and now - self._last_keyframe_request >= (
            KEYFRAME_REQUEST_INTERVAL
        ):
            self._send_keyframe_request(now)
        if self.missing.entries:
            seqs = self.missing.due(now)
            if seqs:
                self._send_nack(seqs)
        if self.report_due(now):
            if reports is None:
                self._sink.send_rtcp(self.receiver_report(now))
            else:
                reports.add(self._sink, self.report_block(now))

    def _walk_history(self) -> None:
        """Count the bytes and frames of each temporal layer id in the packets received since
        the last walk (read from the history ring: nothing per packet on the hot path; at 4-5
        ticks a second the 512-packet ring holds the packets of up to ~2,000 packets/s). A
        stream whose newest packet has no TID (no temporal layers) costs one read a tick."""
        history = self.history
        stats = self.stats
        if history is None or not stats.started:
            return
        newest = stats.max_seq
        walked = self._walked
        last = history.get(newest)
        if last is not None and last[1] & 0x7F in self._vp8:
            try:
                info = vp8_temporal_info(last, rtp_header_size(last))
            except ValueError:
                info = None
            if info is not None and info[0] < 0:  # no temporal layers (now): nothing to count
                self._walked = newest
                return
        elif last is not None and last[1] & 0x7F in self._vp9:
            try:
                svc = vp9_layer_info(last, rtp_header_size(last))
            except ValueError:
                svc = None
            if svc is not None and svc[1] < 0:  # no layer indices: nothing to count
                self._walked = newest
                return
        count = len(history.slots)
        todo = count if walked is None else min((newest - walked) & 0xFFFF, count)
        if todo >= 0x8000:
            todo = 0
        self._walked = newest
        tid_bytes, tid_frames, vp8, vp9 = self._tid_bytes, self._tid_frames, self._vp8, self._vp9
        layer_bytes = self._layer_bytes
        for back in range(todo - 1, -1, -1):
            packet = history.get((newest - back) & 0xFFFF)
            if packet is None:
                continue
            pt = packet[1] & 0x7F
            if pt in vp9:
                try:
                    svc = vp9_layer_info(packet, rtp_header_size(packet))
                except ValueError:
                    continue
                if svc is None or svc[1] < 0:
                    continue
                sid, tid = svc[0], min(svc[1], 3)
                layer_bytes[sid][tid] += len(packet)
            elif pt in vp8:
                try:
                    info = vp8_temporal_info(packet, rtp_header_size(packet))
                except ValueError:
                    continue
                if info is None or info[0] < 0:
                    continue
                tid = info[0]
            else:
                continue
            tid_bytes[tid] += len(packet)
            ts = rtp_timestamp(packet)
            if ts != self._walk_ts:
                self._walk_ts = ts
                tid_frames[tid] += 1

    def _temporal_window(self, span: float) -> None:
        """The temporal layers' rates of the window just closed (cumulative per TID)."""
        tid_bytes, tid_frames = self._tid_bytes, self._tid_frames
        top = max((t for t in range(4) if tid_frames[t]), default=-1)
        rates: list[int] = []
        fps: list[float] = []
        total_bytes = total_frames = 0
        for t in range(top + 1):
            total_bytes += tid_bytes[t]
            total_frames += tid_frames[t]
            rates.append(int(total_bytes * 8 / span))
            fps.append(round(total_frames / span, 1))
        self.temporal_bitrates, self.temporal_fps = tuple(rates), tuple(fps)
        self._tid_bytes = [0] * 4
        self._tid_frames = [0] * 4
        layer_bytes = self._layer_bytes
        sids = max((s for s in range(8) if any(layer_bytes[s])), default=0) + 1
        spatial: list[int] = []
        per_spatial: list[tuple[int, ...]] = []
        if sids > 1:
            below = [0] * 4  # bytes per TID of the spatial layers so far
            for sid in range(sids):
                for tid in range(4):
                    below[tid] += layer_bytes[sid][tid]
                cumulative = [sum(below[: t + 1]) for t in range(top + 1)] if top >= 0 else []
                per_spatial.append(tuple(int(b * 8 / span) for b in cumulative))
                spatial.append(int(sum(below) * 8 / span))
        self.spatial_bitrates = tuple(spatial)
        self.spatial_temporal_bitrates = tuple(per_spatial)
        self._layer_bytes = [[0] * 8 for _ in range(8)]

    @property
    def sink(self) -> PacketSink:
        """The publisher's transport (where this stream's RTCP goes)."""
        return self._sink

    def report_due(self, now: float, share: float = 0.95) -> bool:
        """A receiver report about this stream is due (``share`` of the interval passed since
        the last one; a smaller share: it may go early, with another stream's)."""
        return (
            now - self._last_rr >= RECEIVER_REPORT_INTERVAL * share
            and self.ssrc is not None
            and self.stats.started
        )

    def report_block(self, now: float) -> bytes:
        """The RFC 3550 §6.4.1 report block (24 bytes) about this stream for the interval since
        the previous one; the interval restarts now."""
        self._last_rr = now
        lsr = dlsr = 0
        if self.last_sr is not None:
            ntp, _, at = self.last_sr
            lsr = ntp_middle(ntp)
            dlsr = min(0xFFFF_FFFF, max(0, int((now - at) * 65536)))
        return bytes(self.stats.report_block(self.ssrc or 0, lsr, dlsr))

    def receiver_report(self, now: float) -> bytes:
        """RR (+ SDES CNAME) about this stream alone, for the interval since the previous one."""
        return ReceiverReports.compound(self._rtcp_ssrc, self._cname, [self.report_block(now)])

    def close(self) -> None:
        self.core.closed = True
        self._items.clear()
        self.fanout.set(())
        if self.history is not None:
            self.history.clear()
        if self._recent is not None:
            self._recent.clear()
