"""VP9 SVC: a consumer of one RTP stream carrying spatial and temporal layers (RFC 9628) that
forwards only the layers up to its caps — SID and TID read from the payload descriptor, the
outgoing sequence numbers continuous, the marker bit on the last packet of the highest forwarded
spatial layer, spatial switches up at keyframes (PLI), down at the next picture — the producer's
per-spatial-layer measurement, and what the rooms layer sees of it (``rooms.mediaview``).

The packets are built in the shape Chromium sends L3T3_KEY (see test_codecs.py for captured
ones): non-flexible mode, a 15-bit PictureID, layer indices with TL0PICIDX, 3 spatial layers per
picture sharing its RTP timestamp and PictureID, the temporal pattern 0, 2, 1, 2, a scalability
structure with the three resolutions on the keyframe's first packet, and the RTP marker only on
the last packet of spatial layer 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.forwarding.consumer import Consumer, _SvcFilter
from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import CodecInfo, Router
from zvonok.media.packets.codecs import (
    Vp9Descriptor,
    Vp9ScalabilityStructure,
    vp9_layer_info,
    vp9_resolutions,
)
from zvonok.media.packets.rtcp import Pli
from zvonok.media.packets.rtp import RtpPacket, rtp_header_size
from zvonok.rooms import mediaview

from .forwarding_fakes import FakeClock, FakeSink, consumer, make_video, rtp

VP9 = {98: CodecInfo("VP9", 90000)}
PATTERN = (0, 2, 1, 2)
TICKS = 3000
SIZES = [(320, 180), (640, 360), (1280, 720)]


def vp9_payload(
    pid: int, tl0: int, sid: int, tid: int, *, key: bool, begin: bool, end: bool, up: bool = False
) -> bytes:
    d = Vp9Descriptor(
        inter_picture=not key,
        flexible=False,
        begin_of_frame=begin,
        end_of_frame=end,
        picture_id=pid,
        long_picture_id=True,
        temporal_id=tid,
        switching_up=up,
        spatial_id=sid,
        inter_layer_dependency=key and sid > 0,
        tl0_pic_idx=tl0,
        has_layer_indices=True,
    )
    if key and sid == 0 and begin:
        d.scalability = Vp9ScalabilityStructure(3, list(SIZES), [], has_group=False)
    return bytes(d) + bytes(30)


class Stream:
    """A publisher sending Chrome-shaped VP9 L3T3_KEY, two packets per spatial layer frame."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.seq = 500
        self.pid = 0x7FFE
        self.tl0 = 10
        self.n = 0

    def picture(self, *, key: bool = False) -> int:
        tid = 0 if key else PATTERN[self.n % 4]
        up = not key and self.n % 4 in (1, 2)  # libwebrtc's: the pictures referencing TID 0
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        for sid in range(3):
            for k in range(2):
                payload = vp9_payload(
                    self.pid, self.tl0, sid, tid, key=key, begin=k == 0, end=k == 1, up=up
                )
                last = sid == 2 and k == 1
                self.producer.receive_rtp(
                    rtp(self.seq, TICKS * self.n, pt=98, payload=payload, marker=last)
                )
                self.seq += 1
        self.pid = (self.pid + 1) & 0x7FFF
        self.n += 1
        return tid


def setup() -> tuple[FakeClock, Producer, Consumer, FakeSink, Stream]:
    clock, pub_sink = FakeClock(), FakeSink()
    router = Router(clock=clock)
    producer = make_video(router, pub_sink, VP9)
    c, sink = consumer(router, producer, pts={98: 98})
    return clock, producer, c, sink, Stream(producer)


def read(sink: FakeSink) -> list[tuple[int, int, bool, int, int, bool]]:
    """(seq, timestamp, marker, SID, TID, E) of every packet sent."""
    out = []
    for data in sink.rtp:
        p = RtpPacket.parse(data)
        d = Vp9Descriptor.parse(p.payload)
        assert d.temporal_id is not None
        out.append(
            (p.sequence_number, p.timestamp, p.marker, d.spatial_id, d.temporal_id, d.end_of_frame)
        )
    return out


def continuous(values: list[int]) -> bool:
    return all((b - a) % 65536 == 1 for a, b in zip(values, values[1:], strict=False))


def plis(producer: Producer) -> int:
    sink = producer.layers[0]._sink
    assert isinstance(sink, FakeSink)
    return sum(isinstance(p, Pli) for p in sink.feedback())


def test_reader_agrees_with_the_descriptor() -> None:
    key = vp9_payload(0x1234, 7, 0, 0, key=True, begin=True, end=False)
    d = Vp9Descriptor.parse(key)
    assert d.keyframe and d.scalability is not None and d.scalability.resolutions == SIZES
    assert vp9_layer_info(key) == (0, 0, False, True, False)
    assert vp9_resolutions(key) == tuple(SIZES)
    assert vp9_layer_info(vp9_payload(1, 7, 2, 1, key=False, begin=False, end=True, up=True)) == (
        2, 1, True, False, True,
    )  # fmt: skip
    assert vp9_layer_info(b"\x0c") == (0, -1, False, True, True)  # no layer indices
    assert vp9_layer_info(b"\xa0\x80") is None  # truncated


def test_uncapped_consumer_stays_on_the_compiled_path() -> None:
    _, producer, c, sink, stream = setup()
    stream.picture(key=True)
    for _ in range(4):
        stream.picture()
    assert producer.layers[0].items == (c.core,)
    rows = read(sink)
    assert len(rows) == 30 and continuous([r[0] for r in rows])
    assert [r[2] for r in rows].count(True) == 5  # Chrome's marker: spatial layer 2 only


def test_spatial_cap_forwards_the_lower_layers_with_their_own_marker() -> None:
    _, producer, c, sink, stream = setup()
    stream.picture(key=True)
    c.spatial_target = 0
    assert isinstance(producer.layers[0].items[0], _SvcFilter)
    for _ in range(8):
        stream.picture()
    rows = read(sink)[6:]  # after the keyframe picture, which went out whole
    assert {r[3] for r in rows} == {0} and len(rows) == 16
    assert continuous([r[0] for r in read(sink)])  # nothing for the subscriber to NACK
    assert all(r[2] == r[5] for r in rows)  # the marker on each picture's last packet
    assert c.current_spatial == 0 and c.spatial_target == 0
    c.spatial_target = 1
    for _ in range(2):
        stream.picture()
    assert {r[3] for r in read(sink)[22:]} == {0}  # up waits for a keyframe


def test_spatial_up_at_a_keyframe_asked_for_then_the_compiled_path_again() -> None:
    clock, producer, c, sink, stream = setup()
    stream.picture(key=True)
    c.spatial_target = 0
    stream.picture()
    clock.now += 2
    before = plis(producer)
    c.spatial_target = None
    assert plis(producer) == before + 1  # the publisher is asked for a keyframe
    stream.picture()
    assert {r[3] for r in read(sink)[-2:]} == {0}
    stream.picture(key=True)
    rows = read(sink)
    assert [r[3] for r in rows[-6:]] == [0, 0, 1, 1, 2, 2]
    assert [r[2] for r in rows[-6:]] == [False] * 5 + [True]
    assert continuous([r[0] for r in rows])
    assert producer.layers[0].items == (c.core,)  # uncapped: the filter left


def test_temporal_cap_on_vp9_and_up_at_a_switching_point() -> None:
    _, producer, c, sink, stream = setup()
    stream.picture(key=True)
    c.spatial_target = 1
    c.temporal_target = 0
    tids = [stream.picture() for _ in range(8)]
    rows = read(sink)[6:]
    assert {r[4] for r in rows} == {0} and {r[3] for r in rows} == {0, 1}
    assert len(rows) == 4 * tids.count(0)
    assert continuous([r[0] for r in read(sink)])
    assert c.current_temporal == 0
    c.temporal_target = None
    assert stream.picture() == 2  # U=1: TID 2 referencing TID 0 only, one layer up at a time
    assert {r[4] for r in read(sink)[-4:]} == {2}
    assert stream.picture() == 1  # TID 1 above nothing dropped now
    assert {r[4] for r in read(sink)[-4:]} == {1}
    assert continuous([r[0] for r in read(sink)])
    c.spatial_target = None
    stream.picture(key=True)
    stream.picture()
    assert producer.layers[0].items == (c.core,)  # every layer again: the compiled path


def test_nack_of_a_marked_packet_resends_it_marked() -> None:
    _, _, c, sink, stream = setup()
    stream.picture(key=True)
    c.spatial_target = 0
    stream.picture()
    marked = [RtpPacket.parse(d) for d in sink.rtp if RtpPacket.parse(d).marker][-1]
    count = len(sink.rtp)
    c.receive_nack([marked.sequence_number])
    assert len(sink.rtp) == count + 1
    resent = RtpPacket.parse(sink.rtp[-1])
    assert resent.marker  # RTX-wrapped: the original header's marker is kept


def test_producer_measures_spatial_layers_and_the_rooms_layer_sees_them() -> None:
    clock, producer, c, _, stream = setup()
    layer = producer.layers[0]
    layer.tick(clock.now)
    stream.picture(key=True)
    for _ in range(29):
        stream.picture()
        clock.now += 1 / 30
        if stream.n % 6 == 0:
            layer.tick(clock.now)
    clock.now += 0.1
    layer.tick(clock.now)
    assert len(layer.spatial_bitrates) == 3
    assert layer.spatial_bitrates[0] < layer.spatial_bitrates[1] < layer.spatial_bitrates[2]
    assert layer.spatial_sizes == tuple(SIZES)
    assert len(layer.spatial_temporal_bitrates[0]) == 3
    assert mediaview.svc_layers(producer) == 3
    views = mediaview.producer_layers(producer)
    assert [(v.width, v.height) for v in views] == SIZES
    assert all(v.rid is None and v.active for v in views)
    assert 0.2 < views[0].temporal_shares[0] < 0.4  # TID 0: a quarter of the pictures
    mediaview.set_target_layer(c, 0)
    assert (c.target_layer, c.spatial_target) == (0, 0)
    stream.picture()
    assert mediaview.current_rid(c) == "s0" and mediaview.forwarded_layer(c) == 0
    mediaview.set_target_layer(c, 2)
    assert (c.target_layer, c.spatial_target) == (0, None)
    mediaview.set_target_layer(c, None)
    assert c.target_layer is None


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=40))
def test_parser_reader_and_writer_agree_on_any_bytes(data: bytes) -> None:
    """Any bytes: the parser reads them or raises ValueError; the per-packet reader never raises
    and agrees with it; what the parser read is written back to bytes that read the same."""
    info = vp9_layer_info(data)
    try:
        d = Vp9Descriptor.parse(data)
    except ValueError:
        return
    assert info is not None
    sid, tid, up, begin, end = info
    assert (begin, end) == (d.begin_of_frame, d.end_of_frame)
    if d.has_layer_indices:
        assert (sid, tid, up) == (d.spatial_id, d.temporal_id, d.switching_up)
    else:
        assert (sid, tid) == (0, -1)
    written = bytes(d)
    again = Vp9Descriptor.parse(written)
    again.size = d.size
    assert again == d
    assert len(written) == d.size or d.scalability is not None


# -- packets Chromium 156 sent (VP9 L3T3_KEY through zvonok, tests/fixtures/rtp/README.md) -----

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rtp"


def captured(name: str) -> bytes:
    packet = RtpPacket.parse((FIXTURES / name).read_bytes())
    return packet.payload


def test_chromium_keyframe_carries_the_three_layer_scalability_structure() -> None:
    d = Vp9Descriptor.parse(captured("chromium_vp9_keyframe.bin"))
    assert d.keyframe and d.flexible and d.long_picture_id and d.picture_id == 11369
    assert (d.spatial_id, d.temporal_id, d.switching_up, d.begin_of_frame) == (0, 0, True, True)
    assert d.scalability is not None and d.scalability.spatial_layers == 3
    assert d.scalability.resolutions == [(320, 180), (640, 360), (1280, 720)]
    assert vp9_resolutions(captured("chromium_vp9_keyframe.bin"))[-1] == (1280, 720)
    end = Vp9Descriptor.parse(captured("chromium_vp9_keyframe_end.bin"))
    assert (end.spatial_id, end.inter_layer_dependency, end.end_of_frame) == (2, True, True)
    assert not end.inter_picture and not end.keyframe  # intra, but not the picture's start


def test_chromium_delta_names_its_reference() -> None:
    payload = captured("chromium_vp9_delta.bin")
    d = Vp9Descriptor.parse(payload)
    assert d.inter_picture and d.flexible and d.reference_diffs == [3]
    assert (d.spatial_id, d.temporal_id, d.picture_id) == (1, 2, 11372)
    assert vp9_layer_info(payload) == (1, 2, True, True, True)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("chromium_vp9_keyframe_truncated.bin", r"^VP9 scalability structure resolutions are "),
        ("chromium_vp9_delta_truncated.bin", r"^VP9 reference indices are truncated$"),
    ],
)
def test_chromium_truncated_twins_raise_clearly(name: str, message: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    with pytest.raises(ValueError, match=message):
        Vp9Descriptor.parse(raw[rtp_header_size(raw) :])
