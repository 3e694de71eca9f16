"""One session's demultiplexer of decrypted RTP/RTCP to its producers and consumers.

Owns: ``MediaEndpoint``, the transport's listener: RTP by SSRC to the producer (media or RTX
stream, RFC 4588 §4), compound RTCP (RFC 3550 §6.1) by type — SR to the producer, report blocks
(§6.4) to consumers, NACK (RFC 4585 §6.2.1), PLI (§6.3.1) and FIR (RFC 5104 §4.3.1) to the
consumer of the media SSRC; REMB, transport-cc and unknown packets are ignored.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..packets.rtcp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    parse_compound,
)
from .consumer import Consumer
from .dispatch import make_dispatcher
from .producer import Producer


def _drop_unknown(ssrc: int, packet: bytes) -> None:
    """Default ``on_unknown_ssrc``: drop."""


class MediaEndpoint:
    """Routes one session's inbound packets. Counters are plain ints."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rtp: dict[int, Callable[[bytes], None]] = {}
        self._dispatcher = make_dispatcher(self._rtp, self._unknown)
        #: Hot path: hand a decrypted RTP packet to the producer owning its SSRC (compiled when
        #: built; short packets are dropped and counted, unknown SSRCs go to on_unknown_ssrc).
        self.on_rtp: Callable[[bytes], None] = self._dispatcher.dispatch
        self._producers: dict[int, Producer] = {}  # media ssrc -> producer (for SR)
        self._consumers: dict[int, Consumer] = {}  # media and rtx ssrc -> consumer
        #: Called with (ssrc, packet) for RTP of an SSRC no producer claims; default drops.
        self.on_unknown_ssrc: Callable[[int, bytes], None] = _drop_unknown
        self.rtcp_in = 0
        self.nacks = 0
        self.plis = 0
        self.firs = 0
        self.rtcp_malformed = 0

    # -- routing tables --------------------------------------------------------------------

    def add_producer(self, producer: Producer) -> None:
        self._rtp[producer.ssrc] = producer.receive_rtp
        self._producers[producer.ssrc] = producer
        if producer.rtx_ssrc is not None:
            self._rtp[producer.rtx_ssrc] = producer.receive_rtx

    def remove_producer(self, producer: Producer) -> None:
        if self._producers.get(producer.ssrc) is producer:
            del self._producers[producer.ssrc]
            self._rtp.pop(producer.ssrc, None)
            if producer.rtx_ssrc is not None:
                self._rtp.pop(producer.rtx_ssrc, None)

    def add_consumer(self, consumer: Consumer) -> None:
        self._consumers[consumer.ssrc] = consumer
        if consumer.rtx_ssrc is not None:
            self._consumers[consumer.rtx_ssrc] = consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        for ssrc in (consumer.ssrc, consumer.rtx_ssrc):
            if ssrc is not None and self._consumers.get(ssrc) is consumer:
                del self._consumers[ssrc]

    def retarget(self) -> None:
        """The transport's send target was replaced (UDP <-> ICE-TCP): every consumer rebuilds
        its forwarder on the new one (the transport's ``on_target_change``)."""
        for consumer in set(self._consumers.values()):
            consumer.retarget()

    @property
    def packets_out(self) -> int:
        return sum(c.packets_sent + c.rtx_sent for c in set(self._consumers.values()))

    @property
    def bytes_out(self) -> int:
        return sum(c.octets_sent for c in set(self._consumers.values()))

    # -- inbound ---------------------------------------------------------------------------

    def _unknown(self, ssrc: int, packet: bytes) -> None:
        self.on_unknown_ssrc(ssrc, packet)

    @property
    def packets_in(self) -> int:
        """RTP packets received (decrypted)."""
        return self._dispatcher.packets_in

    @property
    def bytes_in(self) -> int:
        return self._dispatcher.bytes_in

    @property
    def unknown_ssrc(self) -> int:
        return self._dispatcher.unknown_ssrc

    @property
    def dropped(self) -> int:
        """Packets dropped here: RTP too short for a header, malformed RTCP."""
        return self._dispatcher.dropped + self.rtcp_malformed

    def on_rtcp(self, packet: bytes) -> None:
        """A decrypted compound RTCP packet; malformed ones are dropped and counted."""
        self.rtcp_in += 1
        try:
            packets = parse_compound(packet)
        except ValueError:
            self.rtcp_malformed += 1
            return
        now = self._clock()
        for p in packets:
            if isinstance(p, SenderReport):
                producer = self._producers.get(p.ssrc)
                if producer is not None:
                    producer.receive_sender_report(p, now)
                self._report_blocks(p.reports, now)
            elif isinstance(p, ReceiverReport):
                self._report_blocks(p.reports, now)
            elif isinstance(p, Nack):
                self.nacks += 1
                consumer = self._consumers.get(p.media_ssrc)
                if consumer is not None and consumer.ssrc == p.media_ssrc:
                    consumer.receive_nack(p.lost)
            elif isinstance(p, Pli):
                self.plis += 1
                self._keyframe_request(p.media_ssrc)
            elif isinstance(p, Fir):
                self.firs += 1
                for ssrc, _ in p.entries:
                    self._keyframe_request(ssrc)

    def _report_blocks(self, blocks: list[ReportBlock], now: float) -> None:
        for block in blocks:
            consumer = self._consumers.get(block.ssrc)
            if consumer is not None and consumer.ssrc == block.ssrc:
                consumer.receive_receiver_report(block, now)

    def _keyframe_request(self, ssrc: int) -> None:
        consumer = self._consumers.get(ssrc)
        if consumer is not None:
            consumer.receive_keyframe_request()
