"""VP8 temporal layers: the RFC 7741 §4.2 descriptor (TID, Y, TL0PICIDX, 7/15-bit PictureID)
read, written and rewritten, and a consumer capping the temporal layer it forwards — frames
above the cap dropped, outgoing sequence numbers and PictureIDs continuous, NACKs mapped back,
switches up at layer-sync frames only, the compiled path back once nothing is capped.

The packets are constructed per RFC 7741 §4.2 in the shape libwebrtc (Chrome) sends VP8
simulcast with three temporal layers (no Chrome capture is stored in tests/fixtures): X=1, I=1
with a 15-bit PictureID (M=1), L=1, T=1, K=0 — six descriptor bytes in every packet of a frame —
the temporal pattern 0, 2, 1, 2 (TID 0 at 7.5 fps, TIDs 0-1 at 15 fps, all at 30 fps) and the
layer-sync bit (Y) on the first TID 1 and TID 2 frames of each 8-frame cycle: the frames that
reference only the base layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.fastpath import native
from zvonok.media.forwarding.consumer import MAX_TID, Consumer, _TemporalFilter
from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import CodecInfo, Router
from zvonok.media.packets.codecs import (
    Vp8Descriptor,
    shift_vp8_picture_id,
    vp8_is_keyframe,
    vp8_temporal_info,
)
from zvonok.media.packets.rtcp import Pli
from zvonok.media.packets.rtp import RtpPacket, rtp_header_size, rtp_seq, unwrap_rtx

from .forwarding_fakes import FakeClock, FakeSink, consumer, make_video, rtp

#: A Chrome-shaped delta packet's descriptor: X S PID=0 | I L T | M=1 PictureID 0x1234 |
#: TL0PICIDX 0x2a | TID 2, Y=1, KEYIDX 0 — then the VP8 payload header (P=1: inter frame).
CHROME_DELTA = bytes.fromhex("90 e0 92 34 2a a0") + bytes.fromhex("01 02 03")
#: A keyframe's first packet: TID 0, P=0 and the RFC 6386 §9.1 start code of a 320x180 frame.
CHROME_KEY = bytes.fromhex("90 e0 92 35 2b 00") + bytes.fromhex("50 42 00 9d 01 2a 40 01 b4 00")
TEMPORAL_PATTERN = (0, 2, 1, 2)
FRAME_TICKS = 3000  # 30 fps at 90 kHz


def vp8_payload(
    pid: int, tl0: int, tid: int, *, sync: bool = False, key: bool = False, start: bool = True
) -> bytes:
    first = 0x90 if start else 0x80  # X, and S on the first packet of the frame
    desc = bytes((first, 0xE0, 0x80 | pid >> 8 & 0x7F, pid & 0xFF, tl0 & 0xFF, tid << 6))
    if sync:
        desc = desc[:5] + bytes((desc[5] | 0x20,))
    if key and start:
        return desc + CHROME_KEY[6:]
    return desc + bytes.fromhex("01 02 03") + bytes(8)


# -- the descriptor ----------------------------------------------------------------------------


def test_chrome_shaped_descriptor_reads_every_field() -> None:
    d = Vp8Descriptor.parse(CHROME_DELTA)
    assert (d.picture_id, d.long_picture_id, d.tl0_pic_idx) == (0x1234, True, 0x2A)
    assert (d.temporal_id, d.layer_sync, d.key_index, d.size, d.keyframe) == (
        2,
        True,
        None,
        6,
        False,
    )
    assert bytes(d) == CHROME_DELTA[:6]
    key = Vp8Descriptor.parse(CHROME_KEY)
    assert key.keyframe and key.temporal_id == 0 and not key.layer_sync
    assert vp8_is_keyframe(CHROME_KEY) and not vp8_is_keyframe(CHROME_DELTA)
    assert vp8_temporal_info(CHROME_DELTA) == (2, True, 2)
    assert vp8_temporal_info(b"\x10\x00") == (-1, False, -1)  # no X: no temporal layers


def test_descriptor_round_trips_with_short_picture_id_and_key_index() -> None:
    # X N S PID=1 | I T K | M=0 PictureID 0x15 | TID 1, Y=0, KEYIDX 7 (RFC 7741 §4.2, no L)
    data = bytes.fromhex("b1 b0 15 47")
    d = Vp8Descriptor.parse(data)
    assert (d.non_reference, d.partition_index, d.picture_id, d.long_picture_id) == (
        True, 1, 0x15, False,
    )  # fmt: skip
    assert (d.tl0_pic_idx, d.temporal_id, d.key_index) == (None, 1, 7)
    assert bytes(d) == data
    assert bytes(Vp8Descriptor(False, True, 0)) == b"\x10"


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        # the Chrome-shaped descriptor cut short at each of its fields
        ("90", r"^VP8 extended control bits are truncated$"),
        ("90 e0 92", r"^VP8 picture id is truncated$"),
        ("90 e0 92 34", r"^VP8 TL0PICIDX is truncated$"),
        ("90 e0 92 34 2a", r"^VP8 TID/KEYIDX byte is truncated$"),
        ("90 e0 92 34 2a a0", r"^VP8 payload header is missing$"),
    ],
)
def test_malformed_twins_raise_clearly(hex_data: str, message: str) -> None:
    data = bytes.fromhex(hex_data)
    with pytest.raises(ValueError, match=message):
        Vp8Descriptor.parse(data)
    if len(data) < 6:
        assert vp8_temporal_info(data) is None  # the per-packet reader never raises


def test_shift_the_picture_id_in_its_own_width() -> None:
    packet = rtp(7, 1234, payload=CHROME_DELTA)
    start = rtp_header_size(packet)
    info = vp8_temporal_info(packet, start)
    assert info is not None
    out = shift_vp8_picture_id(packet, info[2], 0x1235)  # 0x1234 - 0x1235: wraps in 15 bits
    assert out[: start + 2] == packet[: start + 2] and out[start + 4 :] == packet[start + 4 :]
    d = Vp8Descriptor.parse(out[start:])
    assert (d.picture_id, d.tl0_pic_idx, d.temporal_id, d.layer_sync) == (0x7FFF, 0x2A, 2, True)
    assert d.long_picture_id
    short = bytes.fromhex("b1 b0 15 47")
    info = vp8_temporal_info(short)
    assert info is not None
    assert Vp8Descriptor.parse(shift_vp8_picture_id(short, info[2], -109)).picture_id == 2
    assert not Vp8Descriptor.parse(short).long_picture_id  # 7 bits: 21 + 109 = 130, modulo 128


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=12))
def test_temporal_reader_agrees_with_the_parser(data: bytes) -> None:
    try:
        d = Vp8Descriptor.parse(data)
    except ValueError:
        return
    info = vp8_temporal_info(data)
    assert info is not None
    tid, sync, pid_pos = info
    assert tid == (d.temporal_id if d.temporal_id is not None else -1)
    assert sync == (d.layer_sync and d.temporal_id is not None)
    assert (pid_pos >= 0) == (d.picture_id is not None)
    # what it writes reads back the same (reserved bits, and bits of absent fields, are not kept)
    again = Vp8Descriptor.parse(bytes(d) + data[d.size :])
    again.size = d.size
    assert again == d
    if d.picture_id is not None:
        mask = 0x7FFF if d.long_picture_id else 0x7F
        again = Vp8Descriptor.parse(shift_vp8_picture_id(data, pid_pos, -1))
        assert again.picture_id == (d.picture_id + 1) & mask


# -- a consumer capping temporal layers ---------------------------------------------------------


class Stream:
    """A publisher sending Chrome-shaped VP8 with three temporal layers, two packets a frame."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.seq = 100
        self.pid = 0x7FF0  # wraps past 32767 during the tests
        self.tl0 = 250
        self.frame_no = 0
        self.sent: dict[int, bytes] = {}

    def frame(self, *, key: bool = False, packets: int = 2) -> int:
        i = self.frame_no
        tid = 0 if key else TEMPORAL_PATTERN[i % 4]
        if tid == 0:
            self.tl0 += 1
        sync = not key and i % 8 in (1, 2)
        for k in range(packets):
            payload = vp8_payload(self.pid, self.tl0, tid, sync=sync, key=key, start=k == 0)
            packet = rtp(self.seq, FRAME_TICKS * i, payload=payload, marker=k == packets - 1)
            self.sent[self.seq & 0xFFFF] = packet
            self.producer.receive_rtp(packet)
            self.seq += 1
        self.pid = (self.pid + 1) & 0x7FFF
        self.frame_no += 1
        return tid

    def frames(self, n: int) -> list[int]:
        return [self.frame() for _ in range(n)]


def read(sink: FakeSink) -> list[tuple[int, int, int, int, int]]:
    """(seq, timestamp, PictureID, TL0PICIDX, TID) of every packet sent."""
    out = []
    for data in sink.rtp:
        p = RtpPacket.parse(data)
        d = Vp8Descriptor.parse(p.payload)
        assert d.picture_id is not None and d.tl0_pic_idx is not None
        assert d.temporal_id is not None
        out.append((p.sequence_number, p.timestamp, d.picture_id, d.tl0_pic_idx, d.temporal_id))
    return out


def continuous(values: list[int], mod: int) -> bool:
    return all((b - a) % mod == 1 for a, b in zip(values, values[1:], strict=False))


def frame_pids(rows: list[tuple[int, int, int, int, int]]) -> list[int]:
    return list(dict.fromkeys(row[2] for row in rows))


def setup() -> tuple[FakeClock, Producer, Consumer, FakeSink, Stream]:
    clock, pub_sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, pub_sink)
    c, sink = consumer(router, producer)
    return clock, producer, c, sink, Stream(producer)


def test_uncapped_consumer_keeps_the_compiled_forwarder_in_the_fan_out() -> None:
    _, producer, c, sink, stream = setup()
    stream.frame(key=True)
    stream.frames(7)
    assert producer.layers[0].items == (c.core,)
    assert c.temporal_target is None and c.current_temporal is None
    rows = read(sink)
    assert len(rows) == 16 and continuous([r[0] for r in rows], 1 << 16)


def test_cap_drops_frames_above_it_with_continuous_seqs_and_picture_ids() -> None:
    _, producer, c, sink, stream = setup()
    stream.frame(key=True)
    c.temporal_target = 0
    assert isinstance(producer.layers[0].items[0], _TemporalFilter)
    tids = stream.frames(15)
    rows = read(sink)
    assert {r[4] for r in rows} == {0}
    assert len(rows) == 2 * (1 + tids.count(0))
    assert continuous([r[0] for r in rows], 1 << 16)  # nothing for the subscriber to NACK
    assert continuous(frame_pids(rows), 1 << 15)  # and no missing picture (wraps 32767 -> 0)
    assert continuous(list(dict.fromkeys(r[3] for r in rows)), 1 << 8)  # TL0PICIDX untouched
    assert c.dropped == 2 * (15 - tids.count(0))
    assert c.current_temporal == 0


def test_cap_one_keeps_half_the_frames() -> None:
    _, _, c, sink, stream = setup()
    stream.frame(key=True)
    c.temporal_target = 1
    tids = stream.frames(16)
    rows = read(sink)
    assert {r[4] for r in rows} == {0, 1} and len(rows) == 2 * (1 + tids.count(0) + tids.count(1))
    assert continuous([r[0] for r in rows], 1 << 16)
    assert continuous(frame_pids(rows), 1 << 15)


def test_lower_cap_applies_from_the_next_frame_not_mid_frame() -> None:
    _, producer, c, sink, stream = setup()
    c.temporal_target = 2  # a filter that drops nothing yet
    stream.frame(key=True)
    assert stream.frame(packets=1) == 2  # frame 1 (TID 2), first packet
    # the second packet of frame 1 arrives after the cap went down: the frame stays whole
    c.temporal_target = 0
    packet = rtp(stream.seq, FRAME_TICKS * 1, payload=vp8_payload(stream.pid - 1, stream.tl0, 2))
    stream.seq += 1
    producer.receive_rtp(packet)
    stream.frames(4)  # TIDs 1, 2, 0, 2
    tids = [r[4] for r in read(sink)]
    assert tids == [0, 0, 2, 2, 0, 0]
    assert continuous([r[0] for r in read(sink)], 1 << 16)
    assert continuous(frame_pids(read(sink)), 1 << 15)


def test_higher_cap_waits_for_a_layer_sync_frame() -> None:
    _, _, c, sink, stream = setup()
    stream.frame(key=True)
    c.temporal_target = 0
    stream.frames(10)  # frames 1-10: the cycle's sync frames 1, 2 go by while capped
    c.temporal_target = 2
    before = len(sink.rtp)
    # frames 11-15 (TIDs 2, 0, 2, 1, 2) have no Y: TID 0 only; frame 17 (TID 2, Y) lifts the
    # cap to 2 (frame 18, TID 1 Y, is then within it)
    tids = stream.frames(8)  # frames 11-18
    got = [r[4] for r in read(sink)[before:]]
    assert tids == [2, 0, 2, 1, 2, 0, 2, 1]
    assert got == [0, 0, 0, 0, 2, 2, 1, 1]
    assert c.current_temporal is None or c.current_temporal == 2
    rows = read(sink)
    assert continuous([r[0] for r in rows], 1 << 16)
    assert continuous(frame_pids(rows), 1 << 15)


def test_nacks_resend_the_packet_each_number_carried_with_its_picture_id() -> None:
    _, producer, c, sink, stream = setup()
    stream.frame(key=True)
    c.temporal_target = 0
    stream.frames(9)
    rows = read(sink)
    sent = {r[0]: r for r in rows}
    asked = [rows[-1][0], rows[-4][0], rows[1][0]]  # after drops, across them, before them
    sink.rtp.clear()
    c.receive_nack(asked)
    assert len(sink.rtp) == 3
    for data, seq in zip(sink.rtp, asked, strict=True):
        original = unwrap_rtx(data, 96, c.ssrc)  # the consumer's RTX: its own payload type
        p = RtpPacket.parse(original)
        d = Vp8Descriptor.parse(p.payload)
        assert p.sequence_number == seq
        assert (p.timestamp, d.picture_id, d.tl0_pic_idx, d.temporal_id) == sent[seq][1:]
    # a number never sent (past the last) finds nothing
    sink.rtp.clear()
    c.receive_nack([(rows[-1][0] + 1) & 0xFFFF])
    assert sink.rtp == []
    assert producer.layers[0].history is not None


def test_uncapping_keeps_the_filter_until_a_keyframe_resets_picture_ids() -> None:
    clock, producer, c, sink, stream = setup()
    stream.frame(key=True)
    c.temporal_target = 0
    stream.frames(8)
    clock.now += 1.5  # past the keyframe request throttle
    plis_before = sum(isinstance(p, Pli) for p in producer_feedback(producer))
    c.temporal_target = None
    assert isinstance(producer.layers[0].items[0], _TemporalFilter)  # PictureIDs are shifted
    assert sum(isinstance(p, Pli) for p in producer_feedback(producer)) == plis_before + 1
    stream.frames(8)  # frames 9-16: the cap climbs at the sync frames, still shifted
    stream.frame(key=True)
    assert producer.layers[0].items == (c.core,)  # the compiled path again
    stream.frames(3)
    rows = read(sink)
    assert continuous([r[0] for r in rows], 1 << 16)
    pids = frame_pids(rows)
    key_at = pids.index(stream.pid - 4)
    assert continuous(pids[:key_at], 1 << 15) and continuous(pids[key_at:], 1 << 15)
    # the jump is at the keyframe, which references nothing before it
    assert c.temporal_target is None and c.current_temporal is None
    # NACKs across the whole history still find their packets
    sink.rtp.clear()
    c.receive_nack([rows[2][0], rows[-1][0]])
    assert [rtp_seq(unwrap_rtx(p, 96, c.ssrc)) for p in sink.rtp] == [rows[2][0], rows[-1][0]]


def test_uncapping_before_any_drop_leaves_at_once() -> None:
    _, producer, c, sink, stream = setup()
    stream.frame(key=True)
    c.temporal_target = 2
    stream.frames(4)
    c.temporal_target = None
    assert producer.layers[0].items == (c.core,)
    stream.frames(4)
    assert len(read(sink)) == 18 and continuous([r[0] for r in read(sink)], 1 << 16)


def test_pause_and_resume_under_a_cap() -> None:
    _, _, c, sink, stream = setup()
    stream.frame(key=True)
    c.temporal_target = 0
    stream.frames(5)
    c.pause()
    stream.frames(4)
    c.resume()
    stream.frames(2)  # no keyframe yet: nothing
    n = len(sink.rtp)
    stream.frame(key=True)
    stream.frames(4)
    rows = read(sink)
    assert len(rows) > n and {r[4] for r in rows} == {0}
    assert continuous([r[0] for r in rows], 1 << 16)


def test_other_codecs_are_not_filtered() -> None:
    clock, pub_sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, pub_sink, {99: CodecInfo("H264", 90000)})
    c, _ = consumer(router, producer, pts={99: 102})
    c.temporal_target = 0
    assert c.temporal_target == 0 and producer.layers[0].items == (c.core,)
    with pytest.raises(ValueError):
        c.temporal_target = MAX_TID + 1


def producer_feedback(producer: Producer) -> Iterator[object]:
    sink = producer.layers[0]._sink
    assert isinstance(sink, FakeSink)
    return iter(sink.feedback())


# -- the compiled forwarder behind the filter ---------------------------------------------------


@pytest.fixture
def fixed_random(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("secrets.randbits", lambda bits: (1 << bits) - 7)
    yield


def _capped_scenario(sink: object) -> Consumer:
    clock, pub_sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, pub_sink)
    c = router.create_consumer(
        producer, consumer_id="c", sink=sink, ssrc=0x2000, rtx_ssrc=0x3000,  # type: ignore[arg-type]
        payload_types={97: 96}, rtx_payload_types={96: 120}, ext_id_map={}, cname="x",
    )  # fmt: skip
    stream = Stream(producer)
    stream.frame(key=True)
    c.temporal_target = 0
    stream.frames(9)
    c.temporal_target = 1
    stream.frames(9)
    c.temporal_target = None
    stream.frame(key=True)
    stream.frames(3)
    return c


@pytest.mark.skipif(native is None, reason="compiled fast path not built")
def test_compiled_forwarder_behind_the_filter_sends_what_the_python_one_does(
    fixed_random: None,
) -> None:
    from .test_fastpath import wire

    reference = FakeSink()
    _capped_scenario(reference)
    rows = read(reference)
    assert continuous([r[0] for r in rows], 1 << 16) and continuous(frame_pids(rows[:-8]), 1 << 15)
    with wire() as w:

        class WireSink(FakeSink):
            rtp_target = w.target()

        compiled = WireSink()
        c = _capped_scenario(compiled)
        assert type(c.core).__module__.endswith("_fastpath")
        assert w.received(len(reference.rtp)) == w.protect(reference.rtp)


# -- what a layer measures of its temporal layers -----------------------------------------------


def test_a_layer_measures_each_temporal_layers_rate_from_its_history() -> None:
    clock, producer, _, _, stream = setup()
    layer = producer.layers[0]
    stream.frame(key=True)
    layer.tick(clock.now)  # opens the first window
    assert not layer.temporal_bitrates and not layer.temporal_fps
    for _ in range(2):  # two 1 s windows at 32 fps (a whole number of 0, 2, 1, 2 patterns)
        for _ in range(4):  # ticked 4 times a second
            clock.now += 0.25
            stream.frames(8)
            layer.tick(clock.now)
    # 29-byte packets, two a frame: 464 bit a frame
    assert layer.temporal_fps == (8.0, 16.0, 32.0)
    assert layer.temporal_bitrates == (3712, 7424, 14848)
    assert layer.bitrate == 14848


def test_a_stream_without_temporal_layers_measures_none() -> None:
    clock, producer, _, _, _ = setup()
    layer = producer.layers[0]
    for n in range(40):
        producer.receive_rtp(rtp(500 + n, 3000 * n, payload=bytes.fromhex("90 80 05") + bytes(8)))
        if n % 10 == 9:
            clock.now += 0.5
            layer.tick(clock.now)
    assert layer.bitrate > 0 and layer.temporal_bitrates == () and layer.temporal_fps == ()


# -- with simulcast layers ----------------------------------------------------------------------


def test_a_capped_consumer_switches_spatial_layers_with_continuous_numbering() -> None:
    from .test_simulcast import SSRCS, TS_BASE, Setup

    s = Setup()
    s.learn_all()
    c, sink = s.consume()
    c.target_layer = 0
    pids = [100, 20_000, 32_000]

    def frame(i: int, *, key_layers: tuple[int, ...] = ()) -> None:
        s.clock.now += 1 / 30
        for layer in range(3):
            key = layer in key_layers
            tid = 0 if key else TEMPORAL_PATTERN[i % 4]
            for k in range(2):
                payload = vp8_payload(pids[layer], i // 4, tid, key=key, start=k == 0)
                ts = TS_BASE[layer] + FRAME_TICKS * i
                s.endpoint.on_rtp(rtp(s.seqs[layer], ts, ssrc=SSRCS[layer], payload=payload))
                s.seqs[layer] += 1
            pids[layer] = (pids[layer] + 1) & 0x7FFF

    frame(0, key_layers=(0,))
    c.temporal_target = 0
    for i in range(1, 9):
        frame(i)
    before = len(sink.rtp)
    c.target_layer = 1
    frame(9)
    frame(10, key_layers=(1,))
    assert c.current_layer == 1 and c.layer_switches == 1
    for i in range(11, 19):
        frame(i)
    rows = read(sink)
    assert {r[4] for r in rows} == {0}  # the cap holds on the new layer
    assert continuous([r[0] for r in rows], 1 << 16)
    keys = [n for n, p in enumerate(sink.rtp) if vp8_is_keyframe(RtpPacket.parse(p).payload)]
    switch_at = keys[1]  # layer 1's keyframe
    assert switch_at >= before
    # layer 1's own PictureIDs (20 010...) and TL0PICIDX continue layer 0's output (the
    # filter's shift for dropped frames, then the forwarder's offset from the switch)
    assert continuous(frame_pids(rows), 1 << 15)
    assert continuous(list(dict.fromkeys(r[3] for r in rows)), 1 << 8)
    # a NACK from before the switch names the old layer's packets: nothing is resent; one
    # after it is resent with the PictureID and TL0PICIDX it was sent with
    sink.rtp.clear()
    c.receive_nack([rows[switch_at - 1][0], rows[-1][0]])
    assert [rtp_seq(unwrap_rtx(p, 96, c.ssrc)) for p in sink.rtp] == [rows[-1][0]]
    sink.rtp[:] = [bytes(unwrap_rtx(p, 96, c.ssrc)) for p in sink.rtp]
    assert read(sink) == [rows[-1]]


def test_nacks_map_back_across_two_capped_periods_and_a_long_one() -> None:
    clock, producer, c, sink, stream = setup()
    stream.frame(key=True)
    c.temporal_target = 0
    stream.frames(8)
    clock.now += 1.5
    c.temporal_target = None
    stream.frames(8)  # the cap climbs at the sync frames, the filter waits for a keyframe
    stream.frame(key=True)
    assert producer.layers[0].items == (c.core,)
    stream.frames(4)  # compiled, one offset
    c.temporal_target = 1  # a second period: the first one's numbers are still known
    stream.frames(8)
    rows = read(sink)
    assert continuous([r[0] for r in rows], 1 << 16)
    by_seq = {r[0]: r for r in rows}

    def resent(seqs: list[int]) -> list[tuple[int, int, int, int, int]]:
        sink.rtp.clear()
        c.receive_nack(seqs)
        out = []
        for data in sink.rtp:
            p = RtpPacket.parse(unwrap_rtx(data, 96, c.ssrc))
            d = Vp8Descriptor.parse(p.payload)
            assert d.picture_id is not None and d.tl0_pic_idx is not None
            assert d.temporal_id is not None
            out.append((p.sequence_number, p.timestamp, d.picture_id, d.tl0_pic_idx, d.temporal_id))
        return out

    asked = [rows[n][0] for n in (1, 5, len(rows) // 2, len(rows) - 12, len(rows) - 1)]
    assert resent(asked) == [by_seq[s] for s in asked]
    # a long capped period: numbers older than the map holds are forgotten, never misread
    sink.rtp.clear()
    for _ in range(80):  # 1,280 packets kept: more than the map holds
        stream.frames(16)
    rows = rows[-1:] + read(sink)
    assert continuous([r[0] for r in rows], 1 << 16)
    newest = rows[-1][0]
    assert resent([newest]) == [rows[-1]]
    seq_map = c._seq_map
    assert seq_map is not None and seq_map.trimmed
    assert seq_map.input_of((newest - 1500) & 0xFFFF) is None
    assert resent([(newest - 1500) & 0xFFFF]) == []


def test_reordered_packets_around_a_dropped_frame_leave_no_hole() -> None:
    _, producer, c, sink, stream = setup()
    stream.frame(key=True)
    c.temporal_target = 0
    stream.frames(3)  # frames 1-3: TIDs 2, 1, 2
    # frames 4 (TID 0) and 5 (TID 2), two packets each, arrive as 4a, 5a, 4b, 5b: frame 5's
    # first packet is dropped before frame 4's last one was forwarded
    base, ts4, ts5 = stream.seq, FRAME_TICKS * 4, FRAME_TICKS * 5
    pid4, tl0 = stream.pid, stream.tl0 + 1
    order = [
        (base, ts4, vp8_payload(pid4, tl0, 0)),
        (base + 2, ts5, vp8_payload(pid4 + 1, tl0, 2)),
        (base + 1, ts4, vp8_payload(pid4, tl0, 0, start=False)),
        (base + 3, ts5, vp8_payload(pid4 + 1, tl0, 2, start=False)),
    ]
    for seq, ts, payload in order:
        producer.receive_rtp(rtp(seq, ts, payload=payload))
    stream.seq, stream.pid, stream.tl0, stream.frame_no = base + 4, pid4 + 2, tl0, 6
    stream.frames(4)  # frames 6-9: TIDs 1, 2, 0, 2
    rows = read(sink)
    assert continuous([r[0] for r in rows], 1 << 16)
    assert continuous(frame_pids(rows), 1 << 15)
    assert {r[4] for r in rows} == {0}
