"""One subscriber's copy of one producer's track.

Owns: ``Consumer`` — per-subscriber rewriting of SSRC, payload type, sequence number, timestamp
and header-extension ids (RFC 3550 §5.1, RFC 8285) on a copy of the raw bytes; waiting for a
keyframe after start/resume; NACK answers from the producer's history as RTX (RFC 4585 §6.2.1,
RFC 4588 §4) or plain resends; keyframe requests passed to the producer; sender reports
(RFC 3550 §6.4.1) derived from the publisher's so that lip sync holds, with SDES CNAME (§6.5);
loss/jitter/RTT from the subscriber's receiver reports (§6.4.1, A.8).
Must not import anything from zvonok outside ``zvonok.media``. Sees its producer only through
``ConsumedTrack`` (the producer module imports this one, not the other way round).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from struct import unpack_from
from typing import Protocol

from ..packets.rtcp import (
    ReportBlock,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_middle,
)
from ..packets.rtp import ext_id_table, rewrite_rtp, wrap_rtx
from .forwarder import ForwarderLike, make_forwarder
from .history import PacketHistory
from .types import ConsumerParams, PacketSink

SENDER_REPORT_INTERVAL = 1.0
MAX_NACKED_PER_REQUEST = 128
_SENT_SR_KEPT = 8


class ConsumedTrack(Protocol):
    """What a consumer needs from its producer (``Producer`` satisfies it)."""

    @property
    def kind(self) -> str: ...

    @property
    def clock_rate(self) -> int: ...

    @property
    def history(self) -> PacketHistory | None:
        """The producer's recent packets, for NACK answers (video only)."""
        ...

    @property
    def last_sr(self) -> tuple[int, int, float] | None:
        """The publisher's last sender report: (NTP timestamp, RTP timestamp, arrival time)."""
        ...

    def request_keyframe(self) -> None: ...

    def remove_consumer(self, consumer: Consumer) -> None: ...

    def refresh_fanout(self) -> None:
        """Re-read every consumer's ``core`` (one was rebuilt by ``Consumer.retarget``)."""
        ...


class Consumer:
    """Forwards one producer's packets to one subscriber. Created by ``Router.consume``."""

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
        #: The per-copy state of the hot path (compiled when the transport is).
        self.core: ForwarderLike = make_forwarder(
            sink,
            ssrc=ssrc,
            payload_types=self._pts,
            ext_table=self._ext,
            video=self._video,
            ts_offset=secrets.randbits(32),
            last_out_seq=secrets.randbits(16),
        )
        self._rtx_seq = secrets.randbits(16)
        self._last_sr = float("-inf")
        self._sent_srs: dict[int, float] = {}
        self.rtx_sent = 0
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
        return self.core.blocked and not self.core.held

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
        core = make_forwarder(
            self._sink,
            ssrc=self.ssrc,
            payload_types=self._pts,
            ext_table=self._ext,
            video=self._video,
            ts_offset=old.ts_offset,
            last_out_seq=old.last_out_seq,
        )
        core.blocked = old.blocked
        core.held = old.held
        core.seq_offset = old.seq_offset
        core.sync_in_seq = old.sync_in_seq
        core.packets_sent = old.packets_sent
        core.octets_sent = old.octets_sent
        core.dropped = old.dropped
        self.core = core
        self.producer.refresh_fanout()

    def start(self) -> None:
        """Begin forwarding: video waits for a keyframe and asks the producer for one."""
        if not self.paused and not self.closed and self._video:
            self.producer.request_keyframe()

    def pause(self) -> None:
        if self.closed:
            return
        self.paused = True
        self.core.held = True
        self.core.blocked = True

    def resume(self) -> None:
        if self.closed or not self.paused:
            return
        self.paused = False
        self.core.held = False
        self.core.blocked = True
        self.start()

    def receive_nack(self, seqs: Iterable[int]) -> None:
        """Resend the packets the subscriber lost (its seqs) from the producer's history."""
        history = self.producer.history
        self.nacks_received += 1
        if history is None or self.closed or self.paused:
            return
        for count, seq in enumerate(seqs):
            if count >= MAX_NACKED_PER_REQUEST:
                break
            core = self.core
            in_seq = (seq - core.seq_offset) & 0xFFFF
            if core.blocked or (in_seq - core.sync_in_seq) & 0xFFFF >= 0x8000:
                continue
            packet = history.get(in_seq)
            if packet is not None:
                self._resend(packet, seq & 0xFFFF)

    def _resend(self, packet: bytes, seq: int) -> None:
        pt = self._pts.get(packet[1] & 0x7F)
        if pt is None:
            return
        ts = (unpack_from("!I", packet, 4)[0] + self.core.ts_offset) & 0xFFFF_FFFF
        try:
            out = rewrite_rtp(packet, self.ssrc, pt, seq, ts, self._ext)
            rtx_pt = self._rtx_pts.get(pt)
            if rtx_pt is not None and self.rtx_ssrc is not None:
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
                out = wrap_rtx(out, self.rtx_ssrc, rtx_pt, self._rtx_seq)
        except ValueError:
            return
        self.rtx_sent += 1
        self._send(out)

    def receive_keyframe_request(self) -> None:
        """PLI/FIR from the subscriber: a (throttled) request to the producer."""
        self.keyframe_requests_received += 1
        if not self.closed and self._video:
            self.producer.request_keyframe()

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
        """Sender report + SDES about once a second; re-ask for a keyframe while waiting."""
        if self.closed:
            return
        if self._video and not self.paused and self.waiting:
            self.producer.request_keyframe()
        if now - self._last_sr >= SENDER_REPORT_INTERVAL * 0.95:
            report = self.sender_report(now)
            if report is not None:
                self._last_sr = now
                self._sink.send_rtcp(report)

    def sender_report(self, now: float) -> bytes | None:
        """SR + SDES CNAME, or None before the publisher's first SR or our first packet.

        The NTP↔RTP relation is the publisher's, shifted by our timestamp offset and
        extrapolated to ``now`` at the codec clock rate; the counts are our own.
        """
        last = self.producer.last_sr
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
