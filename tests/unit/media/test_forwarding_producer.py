"""Producer: loss/jitter/RR, NACK generation and retries, keyframe-request throttling, RTX in,
close cascades. The fakes (sink, clock, packet builder) are in ``forwarding_fakes``."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from zvonok.media.forwarding.history import PacketHistory
from zvonok.media.forwarding.router import CodecInfo, Router
from zvonok.media.packets.rtcp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    SenderReport,
    SourceDescription,
    parse_compound,
)
from zvonok.media.packets.rtp import wrap_rtx

from .forwarding_fakes import (
    OPUS,
    PUB_RTX_SSRC,
    PUB_SSRC,
    VP8_KEY,
    FakeClock,
    FakeSink,
    make_video,
    rtp,
)


def test_receiver_report_after_loss() -> None:
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, sink)
    for seq in (100, 101, 102, 105, 106, 107, 108, 109):  # 103, 104 lost
        producer.receive_rtp(rtp(seq, seq * 3000))
        clock.now += 0.033
    producer.receive_sender_report(SenderReport(PUB_SSRC, 0x1234_5678_9ABC_DEF0, 0, 1, 1), clock())
    clock.now += 0.5
    router.tick(clock())
    rr, sdes = parse_compound(sink.rtcp[-1])
    assert isinstance(rr, ReceiverReport) and isinstance(sdes, SourceDescription)
    assert rr.ssrc == router.rtcp_ssrc and sdes.chunks[0].cname == router.cname
    (block,) = rr.reports
    assert block.ssrc == PUB_SSRC
    assert block.fraction_lost == (2 << 8) // 10 and block.packets_lost == 2
    assert block.highest_sequence == 109
    assert block.lsr == 0x5678_9ABC and block.dlsr == 0x8000  # 0.5 s in 1/65536 s
    # the next interval has no loss; the cumulative count stays
    producer.receive_rtp(rtp(110, 330000))
    clock.now += 1.0
    router.tick(clock())
    (rr2, _) = parse_compound(sink.rtcp[-1])
    assert isinstance(rr2, ReceiverReport)
    assert rr2.reports[0].fraction_lost == 0 and rr2.reports[0].packets_lost == 2


def test_reordered_packet_fills_the_loss() -> None:
    clock, sink = FakeClock(), FakeSink()
    producer = make_video(Router(clock=clock), sink)
    for seq in (65534, 65535, 1, 0):  # wraps, 0 arrives late
        producer.receive_rtp(rtp(seq))
    assert producer.stats.lost == 0 and producer.stats.extended_max == 65536 + 1
    assert producer.missing.entries == {}


def test_jitter_grows_with_irregular_arrival() -> None:
    clock, sink = FakeClock(), FakeSink()
    producer = make_video(Router(clock=clock), sink)
    for i in range(20):
        producer.receive_rtp(rtp(i, i * 3000))
        clock.now += 0.033 if i % 2 else 0.010
    assert producer.stats.jitter > 100  # RTP units (90 kHz)


def test_nack_at_gap_and_bounded_retries() -> None:
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, sink)
    producer.receive_rtp(rtp(10))
    producer.receive_rtp(rtp(13))
    assert sink.feedback() == [Nack(router.rtcp_ssrc, PUB_SSRC, [11, 12])]
    sink.rtcp.clear()
    clock.now += 0.15
    producer.receive_rtp(rtp(11))  # one retransmission arrived
    router.tick(clock())
    assert [p for p in sink.feedback() if isinstance(p, Nack)] == [
        Nack(router.rtcp_ssrc, PUB_SSRC, [12])
    ]
    for _ in range(10):
        clock.now += 0.15
        router.tick(clock())
    nacks = [p for p in sink.feedback() if isinstance(p, Nack)]
    assert len(nacks) == 3  # 4 sends in all (1 at the gap), then given up
    assert producer.missing.entries == {}


def test_no_nack_for_audio_or_huge_gaps() -> None:
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    audio = router.create_producer(
        producer_id="a", sink=sink, kind="audio", codecs=OPUS, ssrc=5, rtx_ssrc=None,
        rtx_payload_types={},
    )  # fmt: skip
    audio.receive_rtp(rtp(1, pt=111, ssrc=5))
    audio.receive_rtp(rtp(5, pt=111, ssrc=5))
    assert sink.rtcp == [] and audio.history is None
    video = make_video(router, sink)
    video.receive_rtp(rtp(1))
    video.receive_rtp(rtp(1000))
    assert sink.rtcp == []


def test_keyframe_request_throttled() -> None:
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, sink)
    producer.request_keyframe()
    clock.now += 0.3
    producer.request_keyframe()
    assert sink.feedback() == [Pli(router.rtcp_ssrc, PUB_SSRC)]
    clock.now += 0.3
    router.tick(clock())  # still inside the second: nothing
    assert len(sink.feedback()) == 1
    clock.now += 0.5
    router.tick(clock())  # the pending request goes out once the second is over
    assert [p for p in sink.feedback() if isinstance(p, Pli)] == [
        Pli(router.rtcp_ssrc, PUB_SSRC)
    ] * 2


def test_keyframe_clears_a_pending_request() -> None:
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, sink)
    producer.request_keyframe()
    producer.request_keyframe()
    producer.receive_rtp(rtp(1, payload=VP8_KEY))
    clock.now += 2
    router.tick(clock())
    assert len([p for p in sink.feedback() if isinstance(p, Pli)]) == 1
    assert producer.keyframes == 1


def test_fir_when_pli_not_negotiated() -> None:
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, sink, {97: CodecInfo("VP8", 90000, pli=False)})
    producer.request_keyframe()
    clock.now += 1.5
    producer.request_keyframe()
    assert sink.feedback() == [
        Fir(router.rtcp_ssrc, 0, [(PUB_SSRC, 1)]),
        Fir(router.rtcp_ssrc, 0, [(PUB_SSRC, 2)]),
    ]


def test_rtx_is_unwrapped() -> None:
    clock, sink = FakeClock(), FakeSink()
    producer = make_video(Router(clock=clock), sink)
    producer.receive_rtp(rtp(1))
    producer.receive_rtp(rtp(3))
    original = rtp(2, 6000)
    producer.receive_rtx(bytes(wrap_rtx(original, PUB_RTX_SSRC, 98, 77)))
    assert producer.rtx_received == 1 and producer.stats.lost == 0
    assert producer.history is not None and producer.history.get(2) == original
    padding_only = struct.pack("!BBHII", 0xA0, 98, 78, 0, PUB_RTX_SSRC) + bytes(3) + b"\x04"
    producer.receive_rtx(padding_only)
    producer.receive_rtx(rtp(9, pt=100, ssrc=PUB_RTX_SSRC))  # unknown rtx pt
    assert producer.dropped == 2 and producer.rtx_received == 1


def test_close_cascades_and_is_idempotent() -> None:
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, sink)
    consumers = [
        router.create_consumer(
            producer,
            consumer_id=f"c{i}",
            sink=FakeSink(),
            ssrc=100 + i,
            rtx_ssrc=None,
            payload_types={97: 96},
            rtx_payload_types={},
            ext_id_map={},
            cname="x",
        )  # fmt: skip
        for i in range(3)
    ]
    consumers[0].close()
    assert set(router.consumers) == {"c1", "c2"} and len(producer.consumers) == 2
    producer.close()
    producer.close()
    assert all(c.closed for c in consumers) and producer.closed
    assert router.producers == {} and router.consumers == {}
    producer.receive_rtp(rtp(1))
    assert producer.packets_received == 0
    other = make_video(router, sink)
    router.close()
    router.close()
    assert other.closed and router.producers == {}


def test_router_refuses_bad_requests() -> None:
    router = Router(clock=FakeClock())
    producer = make_video(router, FakeSink())
    with pytest.raises(ValueError, match=r"^producer 'video' already exists$"):
        make_video(router, FakeSink())
    kwargs: dict[str, Any] = dict(
        sink=FakeSink(), ssrc=1, rtx_ssrc=None, payload_types={97: 96}, rtx_payload_types={},
        ext_id_map={}, cname="x",
    )  # fmt: skip
    router.create_consumer(producer, consumer_id="c", **kwargs)
    with pytest.raises(ValueError, match=r"^consumer 'c' already exists$"):
        router.create_consumer(producer, consumer_id="c", **kwargs)
    stranger = make_video(Router(clock=FakeClock()), FakeSink())
    with pytest.raises(ValueError, match=r"^producer 'video' does not belong to this router$"):
        router.create_consumer(stranger, consumer_id="d", **kwargs)
    router.close()
    with pytest.raises(ValueError, match=r"^router is closed$"):
        make_video(router, FakeSink())
    with pytest.raises(ValueError, match=r"^router or producer is closed$"):
        router.create_consumer(producer, consumer_id="e", **kwargs)
    with pytest.raises(ValueError, match=r"^producer x has no codecs$"):
        Router().create_producer(
            producer_id="x", sink=FakeSink(), kind="audio", codecs={}, ssrc=1, rtx_ssrc=None,
            rtx_payload_types={},
        )  # fmt: skip


def test_history() -> None:
    with pytest.raises(ValueError, match=r"^history size 1000 is not a power of two$"):
        PacketHistory(1000)
    history = PacketHistory(4)
    history.put(1, rtp(1))
    history.put(5, rtp(5))  # same slot
    assert history.get(1) is None and history.get(5) == rtp(5) and history.get(2) is None


def test_sequence_restart_after_two_far_packets() -> None:
    clock, sink = FakeClock(), FakeSink()
    producer = make_video(Router(clock=clock), sink)
    producer.receive_rtp(rtp(1))
    producer.receive_rtp(rtp(30000))  # a big jump: ignored once
    assert producer.stats.max_seq == 1
    producer.receive_rtp(rtp(30001))  # the next in line confirms the restart
    assert producer.stats.max_seq == 30001 and producer.stats.received == 1
