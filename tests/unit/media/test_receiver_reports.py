"""Receiver reports to publishers (RFC 3550 §6.2, §6.4.2): a publisher's streams are reported
in one compound packet a second (RR with a block per stream, then SDES CNAME), the blocks hold
the same figures the one-stream reports held, streams that started apart fall into step, and
more than 31 blocks take further RR packets."""

from __future__ import annotations

import struct

from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.reports import MAX_BLOCKS, ReceiverReports
from zvonok.media.forwarding.router import Router
from zvonok.media.packets.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    build_compound,
    parse_compound,
)

from .forwarding_fakes import OPUS, PUB_RTX_SSRC, PUB_SSRC, FakeClock, FakeSink, make_video, rtp

AUDIO_SSRC = 0x2222_0000


def publisher(
    router: Router, sink: FakeSink, audio_ssrc: int = AUDIO_SSRC
) -> tuple[Producer | None, Producer]:
    video = make_video(router, sink) if audio_ssrc == AUDIO_SSRC else None
    audio = router.create_producer(
        producer_id=f"audio-{audio_ssrc:x}",
        sink=sink,
        kind="audio",
        codecs=OPUS,
        ssrc=audio_ssrc,
        rtx_ssrc=None,
        rtx_payload_types={},
    )
    return video, audio


def reports(sink: FakeSink) -> list[tuple[list[ReceiverReport], SourceDescription]]:
    """The receiver-report packets ``sink`` was sent (not NACKs, PLIs), each RRs + SDES."""
    out = []
    for data in sink.rtcp:
        packets = parse_compound(data)
        if not isinstance(packets[0], ReceiverReport):
            continue
        *rrs, sdes = packets
        assert all(isinstance(p, ReceiverReport) for p in rrs)
        assert isinstance(sdes, SourceDescription)
        out.append(([p for p in rrs if isinstance(p, ReceiverReport)], sdes))
    return out


def test_a_publishers_audio_and_video_are_reported_in_one_packet() -> None:
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    video, audio = publisher(router, sink)
    assert video is not None
    for seq in (100, 101, 102, 105, 106):  # 103, 104 lost
        video.receive_rtp(rtp(seq, seq * 3000))
        audio.receive_rtp(rtp(seq, seq * 960, pt=111, ssrc=AUDIO_SSRC))
        clock.now += 0.02
    video.receive_sender_report(SenderReport(PUB_SSRC, 0x1234_5678_9ABC_DEF0, 0, 1, 1), clock())
    clock.now += 0.25
    router.tick(clock())
    ((rrs, sdes),) = reports(sink)
    (rr,) = rrs
    assert rr.ssrc == router.rtcp_ssrc and sdes.chunks[0].cname == router.cname
    assert sdes.chunks[0].ssrc == router.rtcp_ssrc
    by_ssrc = {block.ssrc: block for block in rr.reports}
    assert set(by_ssrc) == {PUB_SSRC, AUDIO_SSRC}
    v = by_ssrc[PUB_SSRC]
    assert (v.fraction_lost, v.packets_lost, v.highest_sequence) == ((2 << 8) // 7, 2, 106)
    assert v.lsr == 0x5678_9ABC and v.dlsr == 0x4000  # 0.25 s in 1/65536 s
    a = by_ssrc[AUDIO_SSRC]
    assert (a.fraction_lost, a.packets_lost, a.highest_sequence) == ((2 << 8) // 7, 2, 106)
    assert a.lsr == 0  # no sender report on the audio stream
    # nothing more within the interval; the next one a second later, one packet again
    for _ in range(3):
        clock.now += 0.25
        router.tick(clock())
    assert len(reports(sink)) == 1
    clock.now += 0.25
    router.tick(clock())
    assert len(reports(sink)) == 2 and len(reports(sink)[-1][0][0].reports) == 2


def test_the_block_bytes_are_what_a_report_of_one_stream_carried() -> None:
    """The block packed directly equals ``ReportBlock``'s bytes for the same figures, also for
    a negative cumulative loss (duplicates) and a loss beyond 24 bits (clamped)."""
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    video = make_video(router, sink)
    for seq in (7, 9, 8, 8):  # a late packet twice: received > expected
        video.receive_rtp(rtp(seq, seq * 3000))
    layer = video.layers[0]
    stats = layer.stats
    expected = ReportBlock(PUB_SSRC, 0, stats.lost, stats.extended_max, int(stats.jitter), 0, 0)
    assert stats.lost < 0
    assert layer.report_block(clock()) == bytes(expected)
    alone = layer.receiver_report(clock())
    rr = ReceiverReport(router.rtcp_ssrc, [ReportBlock(PUB_SSRC, 0, stats.lost,
                        stats.extended_max, int(stats.jitter), 0, 0)])  # fmt: skip
    assert alone == build_compound([rr, SourceDescription.cname_of(router.rtcp_ssrc, router.cname)])
    huge = ReportBlock(1, 255, -(1 << 23), 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF)
    packed = struct.pack("!IIIIII", 1, 255 << 24 | (-(1 << 23) & 0xFF_FFFF), *(0xFFFF_FFFF,) * 4)
    assert bytes(huge) == packed


def test_streams_that_started_apart_fall_into_step() -> None:
    """Video starts 0.6 s after audio: its first report goes alone; from the next second on the
    two go together, and no stream waits more than 1.25 s or less than 0.5 s between reports."""
    clock, sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    video, audio = publisher(router, sink)
    assert video is not None
    sent: dict[int, list[float]] = {PUB_SSRC: [], AUDIO_SSRC: []}
    seq = 0
    for step in range(200):  # 10 s in 50 ms steps, a tick every 0.25 s
        clock.now += 0.05
        seq += 1
        audio.receive_rtp(rtp(seq, seq * 960, pt=111, ssrc=AUDIO_SSRC))
        if step >= 12:
            video.receive_rtp(rtp(seq, seq * 3000))
        if step % 5 == 4:
            before = len(sink.rtcp)
            router.tick(clock())
            for rrs, _ in reports(sink)[before:]:
                for block in rrs[0].reports:
                    sent[block.ssrc].append(clock())
    packets = reports(sink)
    assert [len(rrs[0].reports) for rrs, _ in packets[-8:]] == [2] * 8
    assert len(packets) <= 11  # one a second, and one of video alone at most
    for times in sent.values():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert gaps and 0.5 - 1e-9 <= min(gaps) and max(gaps) <= 1.25 + 1e-9


def test_each_publisher_gets_only_its_own_streams() -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    first, second = FakeSink(), FakeSink()
    _, a1 = publisher(router, first)
    _, a2 = publisher(router, second, audio_ssrc=0x3333_0000)
    for seq in range(5):
        a1.receive_rtp(rtp(seq, seq * 960, pt=111, ssrc=AUDIO_SSRC))
        a2.receive_rtp(rtp(seq, seq * 960, pt=111, ssrc=0x3333_0000))
    clock.now += 0.25
    router.tick(clock())
    assert [[b.ssrc for b in rrs[0].reports] for rrs, _ in reports(first)] == [[AUDIO_SSRC]]
    assert [[b.ssrc for b in rrs[0].reports] for rrs, _ in reports(second)] == [[0x3333_0000]]
    # the video producer of the first publisher never received anything: not reported
    assert PUB_RTX_SSRC not in {b.ssrc for rrs, _ in reports(first) for b in rrs[0].reports}


def test_more_than_31_blocks_take_further_rr_packets() -> None:
    blocks = [bytes(ReportBlock(i, i, i, i, i, i, i)) for i in range(1, 41)]
    sdes = bytes(SourceDescription.cname_of(9, "x"))
    packets = parse_compound(ReceiverReports.build(9, sdes, blocks))
    rrs = [p for p in packets if isinstance(p, ReceiverReport)]
    assert [len(rr.reports) for rr in rrs] == [MAX_BLOCKS, 40 - MAX_BLOCKS]
    assert all(rr.ssrc == 9 for rr in rrs) and isinstance(packets[-1], SourceDescription)
    assert [b.ssrc for rr in rrs for b in rr.reports] == list(range(1, 41))
    one = ReceiverReports.build(9, sdes, blocks[:1])
    assert one == build_compound(
        [ReceiverReport(9, [ReportBlock(1, 1, 1, 1, 1, 1, 1)]), SourceDescription.cname_of(9, "x")]
    )
