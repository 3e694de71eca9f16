"""Consumer: fan-out rewriting, keyframe gating with continuous seqs, pause/resume, NACK → RTX,
sender reports derived from the publisher's, RTT from receiver reports."""

from __future__ import annotations

from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import CodecInfo, Router
from zvonok.media.forwarding.types import ConsumerParams
from zvonok.media.packets.rtcp import (
    Pli,
    ReportBlock,
    SenderReport,
    SourceDescription,
    ntp_middle,
    parse_compound,
)
from zvonok.media.packets.rtp import RtpPacket, rtp_seq

from .forwarding_fakes import (
    OPUS,
    PUB_SSRC,
    VP8_DELTA,
    VP8_KEY,
    FakeClock,
    FakeSink,
    consumer,
    make_video,
    rtp,
)

EXT = [(1, b"1"), (3, b"\x01\x02\x03"), (5, b"\x00\x07")]  # mid, abs-send-time, twcc


def setup() -> tuple[FakeClock, Router, Producer, FakeSink]:
    clock, pub_sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    return clock, router, make_video(router, pub_sink), pub_sink


def test_fan_out_rewrites_for_each_subscriber() -> None:
    clock, router, producer, _ = setup()
    subs = [consumer(router, producer, n) for n in range(5)]
    packets = [rtp(500, 9000, payload=VP8_KEY, ext=EXT)]
    packets += [rtp(501 + i, 9000 + 3000 * i, ext=EXT, marker=True) for i in range(3)]
    for packet in packets:
        producer.receive_rtp(packet)
    for n, (c, sink) in enumerate(subs):
        assert len(sink.rtp) == 4
        parsed = [RtpPacket.parse(p) for p in sink.rtp]
        first = parsed[0]
        for i, p in enumerate(parsed):
            original = RtpPacket.parse(packets[i])
            assert (p.ssrc, p.payload_type) == (0x2000 + n, 96 + n)
            assert p.sequence_number == (first.sequence_number + i) & 0xFFFF
            assert (p.timestamp - original.timestamp) & 0xFFFF_FFFF == c.core.ts_offset
            assert p.extensions == [(10 + n, b"\x01\x02\x03")]  # mid and twcc removed
            assert p.payload == original.payload and p.marker == original.marker
        assert c.packets_sent == 4 and c.octets_sent == sum(len(p.payload) for p in parsed)


def test_waits_for_keyframe_with_continuous_seqs() -> None:
    clock, router, producer, pub_sink = setup()
    c, sink = consumer(router, producer)
    assert [p for p in pub_sink.feedback() if isinstance(p, Pli)]  # asked at start
    start = c.core.last_out_seq
    for seq in range(10, 15):
        producer.receive_rtp(rtp(seq))  # deltas before the keyframe: dropped
    assert sink.rtp == [] and c.dropped == 5
    producer.receive_rtp(rtp(15, payload=VP8_KEY))
    producer.receive_rtp(rtp(16))
    producer.receive_rtp(rtp(14))  # older than the sync point: never forwarded
    assert [rtp_seq(p) for p in sink.rtp] == [(start + 1) & 0xFFFF, (start + 2) & 0xFFFF]


def test_re_requests_keyframe_on_tick_while_waiting() -> None:
    clock, router, producer, pub_sink = setup()
    consumer(router, producer)
    clock.now += 1.2
    router.tick(clock())
    assert len([p for p in pub_sink.feedback() if isinstance(p, Pli)]) == 2


def test_pause_resume_keeps_numbering() -> None:
    clock, router, producer, _ = setup()
    c, sink = consumer(router, producer)
    producer.receive_rtp(rtp(1, payload=VP8_KEY))
    producer.receive_rtp(rtp(2))
    c.pause()
    producer.receive_rtp(rtp(3))
    c.resume()
    producer.receive_rtp(rtp(4))  # not a keyframe: still waiting
    producer.receive_rtp(rtp(5, payload=VP8_KEY))
    producer.receive_rtp(rtp(6))
    seqs = [rtp_seq(p) for p in sink.rtp]
    assert len(seqs) == 4 and all(
        (b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False)
    )


def test_audio_needs_no_keyframe_and_unmapped_pt_leaves_no_hole() -> None:
    clock, pub_sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = router.create_producer(
        producer_id="a", sink=pub_sink, kind="audio", codecs={**OPUS, 9: CodecInfo("G722", 8000)},
        ssrc=PUB_SSRC, rtx_ssrc=None, rtx_payload_types={},
    )  # fmt: skip
    c, sink = consumer(router, producer, rtx=False, pts={111: 109})
    producer.receive_rtp(rtp(1, pt=111, payload=b"\x01"))
    producer.receive_rtp(rtp(2, pt=9, payload=b"\x02"))  # not accepted by this subscriber
    producer.receive_rtp(rtp(3, pt=111, payload=b"\x03"))
    parsed = [RtpPacket.parse(p) for p in sink.rtp]
    assert [p.payload for p in parsed] == [b"\x01", b"\x03"]
    assert (parsed[1].sequence_number - parsed[0].sequence_number) & 0xFFFF == 1
    assert pub_sink.rtcp == []  # no keyframe request for audio
    c.receive_nack([parsed[0].sequence_number])  # no history for audio: ignored
    assert len(sink.rtp) == 2


def test_nack_answered_with_rtx_from_shared_history() -> None:
    clock, router, producer, _ = setup()
    (c1, sink1), (_, sink2) = consumer(router, producer, 1), consumer(router, producer, 2)
    for seq in range(40, 46):
        producer.receive_rtp(rtp(seq, seq * 100, payload=VP8_KEY if seq == 40 else VP8_DELTA))
    lost = RtpPacket.parse(sink1.rtp[2])
    c1.receive_nack([lost.sequence_number, (lost.sequence_number + 1000) & 0xFFFF])
    rtx = RtpPacket.parse(sink1.rtp[-1])
    assert len(sink1.rtp) == 7 and c1.rtx_sent == 1
    assert (rtx.ssrc, rtx.payload_type) == (0x3001, 121)
    assert rtx.payload[:2] == lost.sequence_number.to_bytes(2, "big")  # the OSN
    assert rtx.payload[2:] == lost.payload and rtx.timestamp == lost.timestamp
    assert rtx.extensions == lost.extensions
    c1.receive_nack([lost.sequence_number])
    assert (RtpPacket.parse(sink1.rtp[-1]).sequence_number - rtx.sequence_number) & 0xFFFF == 1
    assert len(sink2.rtp) == 6  # the other subscriber is unaffected


def test_nack_without_rtx_resends_the_packet() -> None:
    clock, router, producer, _ = setup()
    c, sink = consumer(router, producer, rtx=False)
    for seq in range(7):
        producer.receive_rtp(rtp(seq, payload=VP8_KEY if seq == 0 else VP8_DELTA))
    c.receive_nack([rtp_seq(sink.rtp[3])])
    assert sink.rtp[-1] == sink.rtp[3]


def test_nack_before_the_sync_point_is_ignored() -> None:
    clock, router, producer, _ = setup()
    c, sink = consumer(router, producer, rtx=False)
    producer.receive_rtp(rtp(1))  # in history, never sent to c
    producer.receive_rtp(rtp(2, payload=VP8_KEY))
    c.receive_nack([(rtp_seq(sink.rtp[0]) - 1) & 0xFFFF])
    assert len(sink.rtp) == 1


def test_sender_report_derived_from_the_publishers() -> None:
    clock, router, producer, _ = setup()
    c, sink = consumer(router, producer)
    producer.receive_rtp(rtp(1, 1000, payload=VP8_KEY))
    router.tick(clock())
    assert sink.rtcp == []  # no publisher SR yet
    ntp = 0xE000_0000_8000_0000
    producer.receive_sender_report(SenderReport(PUB_SSRC, ntp, 90_000, 50, 5000), clock())
    clock.now += 0.5
    router.tick(clock())
    sr, sdes = parse_compound(sink.rtcp[-1])
    assert isinstance(sr, SenderReport) and isinstance(sdes, SourceDescription)
    assert sr.ssrc == c.ssrc and sdes.chunks[0].cname == "pub-0"
    assert sr.ntp_timestamp == ntp + (1 << 31)  # + 0.5 s
    assert sr.rtp_timestamp == (90_000 + c.core.ts_offset + 45_000) & 0xFFFF_FFFF
    assert (sr.packet_count, sr.octet_count) == (1, len(VP8_KEY))
    clock.now += 0.3
    router.tick(clock())
    assert len(sink.rtcp) == 1  # about one a second
    # the subscriber's RR echoes our SR: RTT = now - sent - DLSR
    clock.now += 0.2
    c.receive_receiver_report(ReportBlock(c.ssrc, 12, 3, 1, 40, ntp_middle(sr.ntp_timestamp),
                                          int(0.15 * 65536)), clock())  # fmt: skip
    assert c.rtt is not None and abs(c.rtt - 0.35) < 1e-3
    assert (c.fraction_lost, c.packets_lost, c.jitter) == (12, 3, 40)


def test_keyframe_request_from_subscriber_is_throttled() -> None:
    clock, router, producer, pub_sink = setup()
    c, _ = consumer(router, producer)  # asks once at start
    c.receive_keyframe_request()
    c.receive_keyframe_request()
    assert len([p for p in pub_sink.feedback() if isinstance(p, Pli)]) == 1
    assert c.keyframe_requests_received == 2


def test_consumer_close_stops_forwarding() -> None:
    clock, router, producer, _ = setup()
    c, sink = consumer(router, producer)
    producer.receive_rtp(rtp(1, payload=VP8_KEY))
    c.close()
    c.close()
    producer.receive_rtp(rtp(2))
    assert len(sink.rtp) == 1 and "c0" not in router.consumers and producer.consumers == []


def test_update_renumbers_payload_types_and_extension_ids_mid_stream() -> None:
    """aiortc renumbers every m-line in each offer it makes (its defaults: mid 1, audio level 2,
    abs-send-time 3); a consumer keeping the old ids sent abs-send-time under the id the
    subscriber now reads as audio level, and aiortc's transport died parsing it."""
    _, router, producer, _ = setup()
    c, sink = consumer(router, producer)
    producer.receive_rtp(rtp(100, 9000, payload=VP8_KEY, ext=EXT))
    c.update(
        ConsumerParams(
            consumer_id="c0", ssrc=0x2000, rtx_ssrc=0x3000, payload_types={97: 98},
            rtx_payload_types={98: 99}, ext_id_map={3: 3, 5: 2}, cname="pub-0",
        )
    )  # fmt: skip
    producer.receive_rtp(rtp(101, 12000, ext=EXT))
    before, after = (RtpPacket.parse(p) for p in sink.rtp)
    assert before.extensions == [(10, b"\x01\x02\x03")] and before.payload_type == 96
    assert after.extensions == [(3, b"\x01\x02\x03"), (2, b"\x00\x07")]
    assert after.payload_type == 98 and after.ssrc == before.ssrc == 0x2000
    assert after.sequence_number == (before.sequence_number + 1) & 0xFFFF
    assert (after.timestamp - before.timestamp) & 0xFFFF_FFFF == 3000
    assert c.packets_sent == 2 and not c.waiting  # no new keyframe needed
