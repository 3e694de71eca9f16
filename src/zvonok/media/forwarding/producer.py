"""A published track: receives the publisher's RTP and fans it out to its consumers.

Owns: ``Producer`` — sequence/loss/jitter tracking (RFC 3550 A.1/A.3/A.8), receiver reports
(§6.4.2) and generic NACKs (RFC 4585 §6.2.1) to the publisher, keyframe requests (PLI RFC 4585
§6.3.1, FIR RFC 5104 §4.3.1) throttled to about one a second, RTX unwrapping (RFC 4588 §4),
the publisher's last sender report, and the shared packet history.
Must not import anything from zvonok outside ``zvonok.media``.

``receive_rtp`` is the hot path: a few reads on the raw bytes, then one call per consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct

from ..packets.codecs import KeyframeDetector, keyframe_detector
from ..packets.rtcp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_middle,
)
from ..packets.rtp import rtp_header_size, unwrap_rtx
from .consumer import Consumer
from .forwarder import make_fanout, make_producer_core
from .history import PacketHistory
from .stats import MissingPackets, ReceiveStats
from .types import PacketSink, ProducerParams

KEYFRAME_REQUEST_INTERVAL = 1.0
RECEIVER_REPORT_INTERVAL = 1.0
#: Packets kept for NACK answers: 2-5 s of video (NACKs older than NACK_MAX_AGE are moot).
HISTORY_SIZE = 512

#: Read a 32-bit field (SSRC, timestamp) on the hot path.
_unpack_u32 = Struct("!I").unpack_from


class Producer:
    """One published track. Created by ``Router.produce``."""

    def __init__(
        self,
        params: ProducerParams,
        *,
        sink: PacketSink,
        rtcp_ssrc: int,
        cname: str,
        clock: Callable[[], float],
        on_close: Callable[[Producer], None],
    ) -> None:
        codecs = params.codecs
        if not codecs:
            raise ValueError(f"producer {params.producer_id} has no codecs")
        self.id = params.producer_id
        self.mid = params.mid
        self.kind = kind = params.kind
        self.ssrc = params.ssrc
        self.rtx_ssrc = params.rtx_ssrc
        self.codecs = dict(codecs)
        self._sink = sink
        self._rtx_pts = dict(params.rtx_payload_types)
        self._rtcp_ssrc = rtcp_ssrc
        self._cname = cname
        self._clock = clock
        self._on_close = on_close
        self.consumers: list[Consumer] = []
        #: Every consumer's forwarder, called in order for each packet (compiled when built).
        self._fanout = make_fanout()
        video = kind == "video"
        self.history: PacketHistory | None = PacketHistory(HISTORY_SIZE) if video else None
        self._detectors: dict[int, KeyframeDetector] = {}
        if video:
            for pt, codec in codecs.items():
                detector = keyframe_detector(codec.mime)
                if detector is not None:
                    self._detectors[pt] = detector
        first = next(iter(self.codecs.values()))
        self.clock_rate = first.clock_rate
        self.stats = ReceiveStats(first.clock_rate)
        self.missing = MissingPackets()
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
        #: The per-packet work (compiled when built); ``receive_rtp`` is its bound method.
        self.core = make_producer_core(
            stats=self.stats,
            missing=self.missing.entries,
            history=self.history.slots if self.history is not None else None,
            fanout=self._fanout,
            on_gap=self._on_gap,
            spot_keyframe=self._spot_keyframe,
            clock=clock,
        )
        self.receive_rtp: Callable[[bytes], None] = self.core.receive
        self.nacks_sent = 0
        self.keyframe_requests_sent = 0

    # -- hot path --------------------------------------------------------------------------

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

    def _spot_keyframe(self, packet: bytes) -> bool:
        """True if the packet starts a keyframe (waiting consumers start there)."""
        detector = self._detectors.get(packet[1] & 0x7F)
        if detector is None:
            return False
        try:
            start = rtp_header_size(packet)
        except ValueError:
            return False
        if not detector(memoryview(packet)[start:]):
            return False
        self.keyframes += 1
        self._keyframe_pending = self.want_keyframe = False
        return True

    def _on_gap(self, seq: int, gap: int, now: float) -> None:
        if not self._nack:
            return
        seqs = self.missing.add_gap((seq - gap) & 0xFFFF, gap, now)
        if seqs:
            self._send_nack(seqs)

    def receive_rtx(self, packet: bytes) -> None:
        """An RFC 4588 retransmission: unwrap and handle like the original (padding-only: drop)."""
        if self.closed or len(packet) < 12:
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

    # -- consumers -------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self._fanout.set([c.core for c in self.consumers])

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            self._fanout.set([c.core for c in self.consumers])

    def refresh_fanout(self) -> None:
        """Re-read the consumers' forwarders (one was rebuilt on another send target)."""
        self._fanout.set([c.core for c in self.consumers])

    # -- RTCP ------------------------------------------------------------------------------

    def receive_sender_report(self, sr: SenderReport, now: float) -> None:
        self.last_sr = (sr.ntp_timestamp, sr.rtp_timestamp, now)

    def request_keyframe(self) -> None:
        """PLI (or FIR when PLI was not negotiated) to the publisher, at most one a second."""
        if self.closed or self.kind != "video":
            return
        self.want_keyframe = bool(self._detectors)
        now = self._clock()
        if now - self._last_keyframe_request < KEYFRAME_REQUEST_INTERVAL:
            self._keyframe_pending = True
            return
        self._send_keyframe_request(now)

    def _send_keyframe_request(self, now: float) -> None:
        self._last_keyframe_request = now
        self._keyframe_pending = False
        if self._pli:
            packet = bytes(Pli(self._rtcp_ssrc, self.ssrc))
        elif self._fir:
            self._fir_seq = (self._fir_seq + 1) & 0xFF
            packet = bytes(Fir(self._rtcp_ssrc, 0, [(self.ssrc, self._fir_seq)]))
        else:
            return
        self.keyframe_requests_sent += 1
        self._sink.send_rtcp(packet)

    def _send_nack(self, seqs: list[int]) -> None:
        self.nacks_sent += 1
        self._sink.send_rtcp(bytes(Nack(self._rtcp_ssrc, self.ssrc, seqs)))

    def tick(self, now: float) -> None:
        """Receiver report about once a second, NACK retries, a throttled keyframe request."""
        if self.closed:
            return
        if self._keyframe_pending and now - self._last_keyframe_request >= (
            KEYFRAME_REQUEST_INTERVAL
        ):
            self._send_keyframe_request(now)
        if self.missing.entries:
            seqs = self.missing.due(now)
            if seqs:
                self._send_nack(seqs)
        if self.stats.started and now - self._last_rr >= RECEIVER_REPORT_INTERVAL * 0.95:
            self._last_rr = now
            self._sink.send_rtcp(self.receiver_report(now))

    def receiver_report(self, now: float) -> bytes:
        """RR (+ SDES CNAME) about this stream, for the interval since the previous one."""
        lsr = dlsr = 0
        if self.last_sr is not None:
            ntp, _, at = self.last_sr
            lsr = ntp_middle(ntp)
            dlsr = min(0xFFFF_FFFF, max(0, int((now - at) * 65536)))
        block = self.stats.report_block(self.ssrc, lsr, dlsr)
        rr = ReceiverReport(self._rtcp_ssrc, [block])
        return build_compound([rr, SourceDescription.cname_of(self._rtcp_ssrc, self._cname)])

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every consumer of this track, then tell the router. Idempotent."""
        if self.closed:
            return
        self.core.closed = True
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        self._fanout.set(())
        if self.history is not None:
            self.history.clear()
        self._on_close(self)
