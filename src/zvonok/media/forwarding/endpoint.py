"""One session's demultiplexer of decrypted RTP/RTCP to its producers and consumers.

Owns: ``MediaEndpoint``, the transport's listener: RTP by SSRC to the producer (media or RTX
stream, RFC 4588 §4), compound RTCP (RFC 3550 §6.1) by type — SR to the producer, report blocks
(§6.4) to consumers, NACK (RFC 4585 §6.2.1), PLI (§6.3.1) and FIR (RFC 5104 §4.3.1) to the
consumer of the media SSRC, transport-cc feedback to ``on_transport_feedback``; REMB and unknown
packets are ignored. SSRC learning
(RFC 8852 §3-4): RTP of an unknown SSRC that carries the rid (repaired-rid: RTX) header
extension of a simulcast track — found by the mid extension (RFC 8843 §15) when the session
publishes several — binds that SSRC to the layer in the routing table, so later packets take the
compiled dispatch path; a plain track published without an SSRC in its SDP is learned by mid.
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
    TransportFeedback,
    parse_compound,
)
from ..packets.rtp import read_extension
from .consumer import Consumer
from .dispatch import make_dispatcher
from .layers import ProducerLayer
from .producer import Producer

#: A layer's SSRC is re-learned (its encoder restarted) at most this often.
REBIND_INTERVAL = 1.0


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
        self._senders: dict[int, ProducerLayer] = {}  # media ssrc -> layer (for SR)
        #: Producers with an SSRC still to learn (simulcast, or no a=ssrc), in publish order.
        self._learning: list[Producer] = []
        self._consumers: dict[int, Consumer] = {}  # media and rtx ssrc -> consumer
        #: Called with (ssrc, packet) for RTP of an SSRC no producer claims; default drops.
        self.on_unknown_ssrc: Callable[[int, bytes], None] = _drop_unknown
        #: transport-cc feedback from the peer (twcc.Downlink sets it); default drops.
        self.on_transport_feedback: Callable[[TransportFeedback], None] = lambda _feedback: None
        self.rtcp_in = 0
        self.nacks = 0
        self.plis = 0
        self.firs = 0
        self.rtcp_malformed = 0
        self.ssrcs_learned = 0

    # -- routing tables --------------------------------------------------------------------

    def add_producer(self, producer: Producer) -> None:
        for layer in producer.layers:
            if layer.ssrc is not None:
                self._rtp[layer.ssrc] = layer.receive_rtp
                self._senders[layer.ssrc] = layer
            if layer.rtx_ssrc is not None:
                self._rtp[layer.rtx_ssrc] = layer.receive_rtx
        if producer.simulcast or producer.ssrc is None:
            self._learning.append(producer)

    def remove_producer(self, producer: Producer) -> None:
        if producer in self._learning:
            self._learning.remove(producer)
        for layer in producer.layers:
            if layer.ssrc is not None and self._senders.get(layer.ssrc) is layer:
                del self._senders[layer.ssrc]
                self._rtp.pop(layer.ssrc, None)
            if layer.rtx_ssrc is not None and self._rtp.get(layer.rtx_ssrc) == layer.receive_rtx:
                del self._rtp[layer.rtx_ssrc]

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
        if not (self._learning and self._learn(ssrc, packet)):
            self.on_unknown_ssrc(ssrc, packet)

    def _learn(self, ssrc: int, packet: bytes) -> bool:
        """Bind ``ssrc`` to the layer its rid (or, for a plain track, its mid) names, and
        deliver the packet; False when it names none of ours."""
        producer = self._learning_producer(packet)
        if producer is None:
            return False
        rtx = False
        if producer.simulcast:
            raw = read_extension(packet, producer.rid_ext) if producer.rid_ext else None
            if raw is None and producer.repaired_rid_ext:
                raw = read_extension(packet, producer.repaired_rid_ext)
                rtx = raw is not None
            if raw is None:
                return False
            index = producer.layer_index(raw.decode("ascii", "replace"))
            if index is None:
                return False  # a rid the answer did not keep
        elif producer.ssrc is None:
            index = 0
        else:
            return False
        layer = producer.layers[index]
        now = self._clock()
        if rtx:
            if layer.rtx_ssrc is not None and layer.rtx_ssrc in self._rtp:
                if now - layer.bound_at < REBIND_INTERVAL:
                    return False
            old = producer.bind(index, ssrc, rtx=True, now=now)
            if old is not None:
                self._rtp.pop(old, None)
            self._rtp[ssrc] = layer.receive_rtx
            self.ssrcs_learned += 1
            layer.receive_rtx(packet)
            return True
        if layer.ssrc is not None and now - layer.bound_at < REBIND_INTERVAL:
            return False  # bounded churn: one new SSRC per layer a second
        old = producer.bind(index, ssrc, rtx=False, now=now)
        if old is not None and self._senders.get(old) is layer:
            del self._senders[old]
            self._rtp.pop(old, None)
        self._rtp[ssrc] = layer.receive_rtp
        self._senders[ssrc] = layer
        self.ssrcs_learned += 1
        if not producer.simulcast:
            self._learning.remove(producer)  # a plain track has its one SSRC now
        layer.receive_rtp(packet)
        return True

    def _learning_producer(self, packet: bytes) -> Producer | None:
        """The producer an unknown SSRC's packet belongs to: the only one learning, else the
        one its mid extension names."""
        learning = self._learning
        named = False
        for producer in learning:
            if producer.mid_ext is None or producer.mid is None:
                continue
            mid = read_extension(packet, producer.mid_ext)
            if mid is not None:
                named = True
                if mid.decode("ascii", "replace") == producer.mid:
                    return producer
        # a packet naming another m-line is not ours; one without a mid is the only track's
        return learning[0] if len(learning) == 1 and not named else None

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
                layer = self._senders.get(p.ssrc)
                if layer is not None:
                    layer.receive_sender_report(p, now)
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
            elif isinstance(p, TransportFeedback):
                self.on_transport_feedback(p)

    def _report_blocks(self, blocks: list[ReportBlock], now: float) -> None:
        for block in blocks:
            consumer = self._consumers.get(block.ssrc)
            if consumer is not None and consumer.ssrc == block.ssrc:
                consumer.receive_receiver_report(block, now)

    def _keyframe_request(self, ssrc: int) -> None:
        consumer = self._consumers.get(ssrc)
        if consumer is not None:
            consumer.receive_keyframe_request()
