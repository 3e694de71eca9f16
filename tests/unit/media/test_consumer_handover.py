"""A subscriber's SSRC handed from a consumer of one producer to a consumer of another (codec
steering's backup stream, docs/media.md): the new consumer waits for its producer's keyframe,
then continues the old output's sequence numbers and, by the wall clock, its timestamps; it never
starts a new numbering on an SSRC the subscriber already decodes."""

from __future__ import annotations

from zvonok.media.forwarding.router import ConsumerParams, Router
from zvonok.media.forwarding.types import CodecInfo
from zvonok.media.packets.rtcp import Pli
from zvonok.media.packets.rtp import rtp_seq, rtp_timestamp

from .forwarding_fakes import VP8, VP8_DELTA, VP8_KEY, FakeClock, FakeSink, rtp

#: The backup sends on its own payload type (in its m-line), mapped to the same outgoing one.
BACKUP_VP8 = {100: CodecInfo("VP8", 90000)}
STEP = 3000  # 1/30 s at 90 kHz
PARAMS = ConsumerParams(
    consumer_id="sub/t1", ssrc=0x7000, rtx_ssrc=0x7100, payload_types={97: 96, 100: 96},
    rtx_payload_types={}, ext_id_map={}, cname="pub",
)  # fmt: skip


def test_a_consumer_of_another_producer_continues_the_output_of_the_one_it_replaces() -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    camera_sink, backup_sink, out = FakeSink(), FakeSink(), FakeSink()
    camera = router.create_producer(
        producer_id="t1", sink=camera_sink, kind="video", codecs=VP8, ssrc=0x1000,
        rtx_ssrc=None, rtx_payload_types={},
    )  # fmt: skip
    backup = router.create_producer(
        producer_id="b1", sink=backup_sink, kind="video", codecs=BACKUP_VP8, ssrc=0x2000,
        rtx_ssrc=None, rtx_payload_types={},
    )  # fmt: skip
    first = router.consume(camera, PARAMS, sink=out)
    for i in range(5):
        clock.now += 1 / 30
        camera.receive_rtp(rtp(500 + i, 10_000 + i * STEP, ssrc=0x1000,
                               payload=VP8_KEY if i == 0 else VP8_DELTA))  # fmt: skip
    assert len(out.rtp) == 5
    timeline = first.timeline()
    assert timeline is not None and timeline.last_seq == rtp_seq(out.rtp[-1])
    first.close()
    second = router.consume(backup, PARAMS, sink=out)
    second.continue_timeline(timeline)
    assert any(isinstance(p, Pli) for p in backup_sink.feedback())  # asks for its keyframe
    clock.now += 1 / 30
    backup.receive_rtp(rtp(40_000, 7_000_000, pt=100, ssrc=0x2000))  # no keyframe yet
    assert len(out.rtp) == 5
    for i in range(3):
        clock.now += 1 / 30
        backup.receive_rtp(rtp(40_001 + i, 7_000_000 + (i + 1) * STEP, pt=100, ssrc=0x2000,
                               payload=VP8_KEY if i == 0 else VP8_DELTA))  # fmt: skip
    seqs = [rtp_seq(p) for p in out.rtp]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False)), seqs
    ts = [rtp_timestamp(p) for p in out.rtp]
    # The first frame of the backup lands where the wall clock says (two frames on), then on.
    assert [(b - a) & 0xFFFF_FFFF for a, b in zip(ts, ts[1:], strict=False)] == [STEP] * 4 + [
        2 * STEP,
        STEP,
        STEP,
    ]
    assert {p[1] & 0x7F for p in out.rtp} == {96}
    assert second.timeline() is not None


def test_nothing_sent_yet_means_no_timeline() -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    camera = router.create_producer(
        producer_id="t1", sink=FakeSink(), kind="video", codecs=VP8, ssrc=0x1000,
        rtx_ssrc=None, rtx_payload_types={},
    )  # fmt: skip
    fresh = router.consume(camera, PARAMS, sink=FakeSink())
    assert fresh.timeline() is None
