"""MediaEndpoint: RTP by SSRC (media and RTX), RTCP routed by type and media SSRC, counters."""

from __future__ import annotations

from zvonok.media.forwarding.endpoint import MediaEndpoint
from zvonok.media.forwarding.router import Router
from zvonok.media.packets.rtcp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    SenderReport,
    build_compound,
)
from zvonok.media.packets.rtp import rtp_seq, wrap_rtx

from .forwarding_fakes import (
    PUB_RTX_SSRC,
    PUB_SSRC,
    VP8_KEY,
    FakeClock,
    FakeSink,
    consumer,
    make_video,
    rtp,
)


def setup() -> tuple[FakeClock, Router, MediaEndpoint, MediaEndpoint]:
    clock = FakeClock()
    router = Router(clock=clock)
    return clock, router, MediaEndpoint(clock=clock), MediaEndpoint(clock=clock)


def test_rtp_routing_and_unknown_ssrc_hook() -> None:
    clock, router, publisher, _ = setup()
    producer = make_video(router, FakeSink())
    publisher.add_producer(producer)
    seen: list[int] = []
    publisher.on_unknown_ssrc = lambda ssrc, packet: seen.append(ssrc)
    publisher.on_rtp(rtp(1))
    publisher.on_rtp(bytes(wrap_rtx(rtp(0), PUB_RTX_SSRC, 98, 5)))
    publisher.on_rtp(rtp(1, ssrc=0xDEAD))
    publisher.on_rtp(b"\x80\x60")
    assert producer.packets_received == 2 and producer.rtx_received == 1
    assert seen == [0xDEAD] and publisher.unknown_ssrc == 1 and publisher.dropped == 1
    assert publisher.packets_in == 4
    publisher.remove_producer(producer)
    publisher.on_rtp(rtp(2))
    assert producer.packets_received == 2 and seen == [0xDEAD, PUB_SSRC]


def test_rtcp_routing() -> None:
    clock, router, publisher, subscriber = setup()
    producer = make_video(router, FakeSink())
    publisher.add_producer(producer)
    c, sink = consumer(router, producer)
    subscriber.add_consumer(c)
    producer.receive_rtp(rtp(1, payload=VP8_KEY))
    producer.receive_rtp(rtp(2))
    # publisher side: its SR reaches the producer
    publisher.on_rtcp(bytes(SenderReport(PUB_SSRC, 1 << 40, 1234, 2, 20)))
    assert producer.last_sr == (1 << 40, 1234, clock())
    # subscriber side: RR block, NACK, PLI, FIR, REMB in one compound
    compound = build_compound([
        ReceiverReport(77, [ReportBlock(c.ssrc, 5, 1, 9, 3, 0, 0)]),
        Nack(77, c.ssrc, [rtp_seq(sink.rtp[0])]),
        Pli(77, c.ssrc),
        Fir(77, 0, [(c.ssrc, 1)]),
        Remb(77, 100_000, [c.ssrc]),
    ])  # fmt: skip
    subscriber.on_rtcp(compound)
    assert c.fraction_lost == 5 and c.rtx_sent == 1 and c.keyframe_requests_received == 2
    assert (subscriber.nacks, subscriber.plis, subscriber.firs) == (1, 1, 1)
    assert subscriber.packets_out == 3 and subscriber.bytes_out > 0
    # NACK addressed to the rtx ssrc, or to nobody, does nothing
    subscriber.on_rtcp(bytes(Nack(77, c.rtx_ssrc or 0, [1])) + bytes(Pli(77, 999)))
    assert c.rtx_sent == 1
    subscriber.remove_consumer(c)
    subscriber.on_rtcp(bytes(Pli(77, c.ssrc)))
    assert c.keyframe_requests_received == 2


def test_malformed_rtcp_is_counted_and_dropped() -> None:
    clock, router, publisher, _ = setup()
    publisher.on_rtcp(b"\x80\xc9\x00\x05\x00")
    publisher.on_rtcp(b"")
    assert publisher.rtcp_malformed == 2 and publisher.dropped == 2 and publisher.rtcp_in == 2
