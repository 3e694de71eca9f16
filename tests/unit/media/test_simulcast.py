"""Simulcast in the media plane: SSRC learning by rid (RFC 8852), the layers' own RTCP, and
consumers switching layers at keyframes with continuous sequence numbers and timestamps — with
the Python forwarder, and with the compiled one on a real socket compared to it byte for byte."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from zvonok.media.fastpath import native
from zvonok.media.forwarding.consumer import SWITCH_TIMEOUT, Consumer
from zvonok.media.forwarding.endpoint import REBIND_INTERVAL, MediaEndpoint
from zvonok.media.forwarding.router import ConsumerParams, ProducerParams, Router
from zvonok.media.forwarding.types import MID_URI, REPAIRED_RID_URI, RID_URI
from zvonok.media.packets.rtcp import Nack, Pli, SenderReport, parse_compound
from zvonok.media.packets.rtp import RtpPacket, rtp_seq, rtp_timestamp, wrap_rtx

from .forwarding_fakes import OPUS, VP8, VP8_DELTA, FakeClock, FakeSink, rtp

RIDS = ("q", "h", "f")
RID_ID, RRID_ID, MID_ID = 10, 11, 4
SSRCS = (0x5100, 0x5200, 0x5300)
RTX_SSRCS = (0x6100, 0x6200, 0x6300)
#: Each layer's RTP timestamp base (browsers pick one per SSRC at random).
TS_BASE = (1_000_000, 50_000_000, 3_000_000_000)
#: A real libvpx 320x180 keyframe's first bytes (see test_frame_size.py), and its twins at
#: 640x360 and 1280x720 (the key frame header's width/height fields patched).
VP8_320 = bytes.fromhex("90808228f04e009d012a4001b400390900031c2216162266")
VP8_SIZES = (
    VP8_320,
    VP8_320[:10] + struct.pack("<HH", 640, 360) + VP8_320[14:],
    VP8_320[:10] + struct.pack("<HH", 1280, 720) + VP8_320[14:],
)
STEP = 22_500  # 0.25 s at 90 kHz: the fake clock steps exactly


def simulcast_params(
    producer_id: str = "cam", mid: str = "1", extensions: dict[str, int] | None = None
) -> ProducerParams:
    return ProducerParams(
        producer_id=producer_id, kind="video", codecs=VP8, ssrc=None, rtx_ssrc=None,
        rtx_payload_types={98: 97}, mid=mid, rids=RIDS,
        extensions=extensions or {RID_URI: RID_ID, REPAIRED_RID_URI: RRID_ID, MID_URI: MID_ID},
    )  # fmt: skip


def layer_packet(
    layer: int,
    seq: int,
    frame: int,
    *,
    key: bool = False,
    ext: list[tuple[int, bytes]] | None = None,
) -> bytes:
    payload = VP8_SIZES[layer] if key else VP8_DELTA
    return rtp(seq, TS_BASE[layer] + frame * STEP, ssrc=SSRCS[layer], payload=payload, ext=ext)


def with_rid(layer: int, seq: int, frame: int, *, key: bool = False, mid: str = "1") -> bytes:
    ext = [(MID_ID, mid.encode()), (RID_ID, RIDS[layer].encode())]
    return layer_packet(layer, seq, frame, key=key, ext=ext)


class Setup:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.router = Router(clock=self.clock)
        self.pub_sink = FakeSink()
        self.producer = self.router.produce(simulcast_params(), sink=self.pub_sink)
        self.endpoint = MediaEndpoint(clock=self.clock)
        self.endpoint.add_producer(self.producer)
        self.seqs = [100, 2000, 30000]
        self.frames = [0, 0, 0]

    def learn_all(self) -> None:
        for layer in range(3):
            self.endpoint.on_rtp(with_rid(layer, self.seqs[layer], self.frames[layer]))
            self.seqs[layer] += 1

    def send(self, layer: int, *, key: bool = False) -> bytes:
        packet = layer_packet(layer, self.seqs[layer], self.frames[layer], key=key)
        self.seqs[layer] += 1
        self.endpoint.on_rtp(packet)
        return packet

    def frame(self, key_layers: tuple[int, ...] = ()) -> None:
        """One frame on every layer (0.25 s later), keyframes on ``key_layers``."""
        self.clock.now += 0.25
        for layer in range(3):
            self.frames[layer] += 1
            self.send(layer, key=layer in key_layers)

    def sender_reports(self, ntp: int = 0xE000_0000_0000_0000) -> None:
        """One SR per layer at the same NTP instant: each layer's RTP clock at frame 0."""
        for layer in range(3):
            sr = SenderReport(SSRCS[layer], ntp, TS_BASE[layer] + self.frames[layer] * STEP, 1, 1)
            self.endpoint.on_rtcp(bytes(sr))

    def consume(self, sink: object | None = None, n: int = 0) -> tuple[Consumer, FakeSink]:
        out = FakeSink() if sink is None else sink
        c = self.router.consume(
            self.producer,
            ConsumerParams(
                consumer_id=f"c{n}",
                ssrc=0x7000 + n,
                rtx_ssrc=0x7100 + n,
                payload_types={97: 96},
                rtx_payload_types={96: 120},
                ext_id_map={},
                cname="sub",
            ),  # fmt: skip
            sink=out,  # type: ignore[arg-type]
        )
        return c, out  # type: ignore[return-value]

    def plis(self) -> list[int]:
        return [p.media_ssrc for p in self.pub_sink.feedback() if isinstance(p, Pli)]


def out_seqs(sink: FakeSink) -> list[int]:
    return [rtp_seq(p) for p in sink.rtp]


def out_ts(sink: FakeSink) -> list[int]:
    return [rtp_timestamp(p) for p in sink.rtp]


def ts_deltas(sink: FakeSink) -> list[int]:
    ts = out_ts(sink)
    return [(b - a) & 0xFFFF_FFFF for a, b in zip(ts, ts[1:], strict=False)]


def continuous(values: list[int], mod: int = 1 << 16) -> bool:
    return all((b - a) % mod == 1 for a, b in zip(values, values[1:], strict=False))


# -- SSRC learning -------------------------------------------------------------------------------


def test_ssrcs_learned_by_rid_one_byte_form() -> None:
    s = Setup()
    assert [layer.ssrc for layer in s.producer.layers] == [None, None, None]
    s.learn_all()
    assert [layer.ssrc for layer in s.producer.layers] == list(SSRCS)
    assert [layer.rid for layer in s.producer.layers] == list(RIDS)
    assert [layer.packets_received for layer in s.producer.layers] == [1, 1, 1]
    assert s.endpoint.unknown_ssrc == 3 and s.endpoint.ssrcs_learned == 3
    s.frame()  # later packets carry no rid: routed by SSRC, no longer unknown
    assert [layer.packets_received for layer in s.producer.layers] == [2, 2, 2]
    assert s.endpoint.unknown_ssrc == 3
    assert s.producer.packets_received == 6


def test_ssrcs_learned_by_rid_two_byte_form() -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    params = simulcast_params(extensions={RID_URI: 200, MID_URI: 100})
    producer = router.produce(params, sink=FakeSink())
    endpoint = MediaEndpoint(clock=clock)
    endpoint.add_producer(producer)
    packet = rtp(1, 0, ssrc=0xAB, ext=[(100, b"1"), (200, b"h")])
    assert packet[12:14] == b"\x10\x00"  # the two-byte form (RFC 8285 §4.3)
    endpoint.on_rtp(packet)
    assert producer.layers[1].ssrc == 0xAB and producer.layers[1].packets_received == 1


def test_rtx_ssrc_learned_by_repaired_rid() -> None:
    s = Setup()
    s.learn_all()
    s.send(1)
    s.send(1)
    original = layer_packet(1, s.seqs[1], 9)
    s.seqs[1] += 2
    s.send(1)  # a gap: the original went missing
    rtx = bytes(wrap_rtx(original, RTX_SSRCS[1], 98, 500))
    with_rrid = RtpPacket.parse(rtx)
    with_rrid.extension_profile = 0xBEDE
    with_rrid.extensions = [(MID_ID, b"1"), (RRID_ID, b"h")]
    s.endpoint.on_rtp(bytes(with_rrid))
    layer = s.producer.layers[1]
    assert layer.rtx_ssrc == RTX_SSRCS[1] and layer.rtx_received == 1
    assert layer.history is not None and layer.history.get(rtp_seq(original)) is not None
    s.endpoint.on_rtp(bytes(wrap_rtx(original, RTX_SSRCS[1], 98, 501)))  # no rrid: by SSRC
    assert layer.rtx_received == 2


def test_mid_picks_the_track_among_several() -> None:
    s = Setup()
    other = s.router.produce(simulcast_params("screen", mid="2"), sink=s.pub_sink)
    s.endpoint.add_producer(other)
    s.endpoint.on_rtp(rtp(1, ssrc=0xA1, ext=[(MID_ID, b"2"), (RID_ID, b"f")]))
    s.endpoint.on_rtp(rtp(1, ssrc=0xB1, ext=[(MID_ID, b"1"), (RID_ID, b"f")]))
    assert other.layers[2].ssrc == 0xA1 and s.producer.layers[2].ssrc == 0xB1
    seen: list[int] = []
    s.endpoint.on_unknown_ssrc = lambda ssrc, packet: seen.append(ssrc)
    s.endpoint.on_rtp(rtp(1, ssrc=0xC1, ext=[(RID_ID, b"q")]))  # no mid: ambiguous
    s.endpoint.on_rtp(rtp(1, ssrc=0xC2, ext=[(MID_ID, b"9"), (RID_ID, b"q")]))  # no such mid
    assert seen == [0xC1, 0xC2]


def test_unknown_rid_and_missing_rid_are_ignored() -> None:
    s = Setup()
    seen: list[int] = []
    s.endpoint.on_unknown_ssrc = lambda ssrc, packet: seen.append(ssrc)
    s.endpoint.on_rtp(rtp(1, ssrc=0xD1, ext=[(MID_ID, b"1"), (RID_ID, b"zz")]))
    s.endpoint.on_rtp(rtp(1, ssrc=0xD2, ext=[(MID_ID, b"1")]))
    s.endpoint.on_rtp(rtp(1, ssrc=0xD3))
    s.endpoint.on_rtp(rtp(1, ssrc=0xD4, ext=[(MID_ID, b"0"), (RID_ID, b"q")]))  # another m-line
    assert seen == [0xD1, 0xD2, 0xD3, 0xD4]
    s.endpoint.on_rtp(rtp(1, ssrc=0xD5, ext=[(RID_ID, b"q")]))  # no mid: the only track's
    assert s.producer.layers[0].ssrc == 0xD5


def test_a_new_ssrc_for_a_rid_replaces_the_old_binding() -> None:
    s = Setup()
    s.learn_all()
    c, sink = s.consume()
    c.target_layer = 0
    s.frame(key_layers=(0,))
    before = len(sink.rtp)
    # within REBIND_INTERVAL a second SSRC for the same rid is refused (bounded churn)
    s.endpoint.on_rtp(rtp(7, ssrc=0xE1, ext=[(MID_ID, b"1"), (RID_ID, b"q")]))
    assert s.producer.layers[0].ssrc == SSRCS[0]
    s.clock.now += REBIND_INTERVAL
    restarted = rtp(7, 777, ssrc=0xE1, payload=VP8_DELTA, ext=[(MID_ID, b"1"), (RID_ID, b"q")])
    s.endpoint.on_rtp(restarted)
    layer = s.producer.layers[0]
    assert layer.ssrc == 0xE1 and layer.stats.max_seq == 7
    s.endpoint.on_rtp(layer_packet(0, 500, 5))  # the old SSRC is no longer routed
    assert layer.stats.max_seq == 7
    # the consumer re-syncs on the restarted stream's keyframe, numbering continuous
    assert c.current_layer is None and c.target_layer == 0 and c.switch_pending
    s.endpoint.on_rtp(rtp(8, 1000, ssrc=0xE1, payload=VP8_SIZES[0]))
    s.endpoint.on_rtp(rtp(9, 4000, ssrc=0xE1))
    assert c.current_layer == 0 and len(sink.rtp) == before + 2
    assert continuous(out_seqs(sink))
    assert ts_deltas(sink) == [90000, 3000]  # 1 s of wall clock since the last frame, then on
    assert s.plis()[-1] == 0xE1


def test_plain_track_without_ssrc_is_learned_by_mid() -> None:
    s = Setup()
    params = ProducerParams("mic", "audio", OPUS, None, None, {}, mid="0",
                            extensions={MID_URI: MID_ID})  # fmt: skip
    audio = s.router.produce(params, sink=s.pub_sink)
    s.endpoint.add_producer(audio)
    s.endpoint.on_rtp(rtp(5, pt=111, ssrc=0xF1, ext=[(MID_ID, b"0")]))
    s.endpoint.on_rtp(rtp(6, pt=111, ssrc=0xF1))
    assert audio.ssrc == 0xF1 and audio.packets_received == 2
    s.endpoint.on_rtp(rtp(1, pt=111, ssrc=0xF2, ext=[(MID_ID, b"0")]))  # learned once only
    assert audio.ssrc == 0xF1 and audio.packets_received == 2
    s.endpoint.remove_producer(audio)
    s.endpoint.on_rtp(rtp(7, pt=111, ssrc=0xF1))
    assert audio.packets_received == 2


# -- layer state ---------------------------------------------------------------------------------


def test_layers_measure_bitrate_activity_and_picture_size() -> None:
    s = Setup()
    s.learn_all()
    for _ in range(8):  # 2 s of frames (the first one a keyframe on every layer)
        s.frame(key_layers=(0, 1, 2) if s.frames[0] == 0 else ())
        s.router.tick(s.clock())
    layers = s.producer.layers
    assert [(x.width, x.height) for x in layers] == [(320, 180), (640, 360), (1280, 720)]
    assert all(x.active for x in layers)
    assert layers[0].bitrate == pytest.approx(4 * len(VP8_DELTA + bytes(12)) * 8, rel=0.01)
    s.clock.now += 1.5
    s.router.tick(s.clock())
    assert not any(x.active for x in layers)
    assert s.producer.default_layer() == 0


def test_a_layer_that_stops_reads_inactive_within_its_packet_rate_window() -> None:
    """A layer sending 28 packets a second that stops is inactive after 0.35 s (its window is
    four packet intervals, at least 0.35 s), while a layer sending 4 a second keeps 1 s."""
    s = Setup()
    s.learn_all()
    for _ in range(5):  # 7 packets a frame on the top layer, 1 on the others, 4 frames a second
        s.frame(key_layers=(0, 1, 2) if s.frames[0] == 0 else ())
        for _ in range(6):
            s.send(2)
        s.router.tick(s.clock())
    top, low = s.producer.layers[2], s.producer.layers[0]
    assert top.active_window == pytest.approx(0.35)
    assert low.active_window == pytest.approx(1.0)
    s.clock.now += 0.4  # nothing from any layer for 0.4 s
    s.router.tick(s.clock())
    assert not top.active and low.active
    s.clock.now += 0.7
    assert not low.active


def test_each_layer_reports_and_nacks_on_its_own_ssrc() -> None:
    s = Setup()
    s.learn_all()
    s.seqs[2] += 2  # two packets of layer 2 lost
    s.send(2)
    nacks = [p for p in s.pub_sink.feedback() if isinstance(p, Nack)]
    assert [(n.media_ssrc, n.lost) for n in nacks] == [(SSRCS[2], [30001, 30002])]
    s.clock.now += 1
    s.router.tick(s.clock())
    blocks = [b.ssrc for p in s.pub_sink.feedback() for b in getattr(p, "reports", [])]
    assert sorted(blocks) == sorted(SSRCS)


def test_a_track_keyframe_request_asks_every_layer() -> None:
    s = Setup()
    s.learn_all()
    s.producer.request_keyframe()  # (the codec changed: every layer restarts)
    assert sorted(s.plis()) == sorted(SSRCS)


def test_audio_keeps_recent_packets() -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    audio = router.produce(
        ProducerParams("mic", "audio", OPUS, 9, None, {}), sink=FakeSink()
    )  # fmt: skip
    packets = [rtp(seq, pt=111, ssrc=9, ext=[(1, bytes((seq & 0x7F,)))]) for seq in range(100)]
    for packet in packets:
        audio.receive_rtp(packet)
    assert audio.recent_packets(3) == packets[-3:]
    assert audio.recent_packets() == packets[-64:] and audio.recent_packets(500) == packets[-64:]
    assert audio.history is None  # no NACK answers for audio


# -- switching -----------------------------------------------------------------------------------


def test_new_consumer_starts_on_the_highest_active_layer() -> None:
    s = Setup()
    c0, _ = s.consume(n=0)
    assert c0.current_layer == 0 and c0.target_layer == 0  # nothing known yet: the lowest
    s.learn_all()
    c1, _ = s.consume(n=1)
    assert c1.current_layer == 2
    assert s.plis()[-1] == SSRCS[2]


def test_switch_up_waits_for_a_keyframe_and_keeps_the_old_layer_flowing() -> None:
    s = Setup()
    s.learn_all()
    s.sender_reports()
    c, sink = s.consume()
    c.target_layer = 0
    s.frame(key_layers=(0,))
    s.frame()
    assert c.current_layer == 0 and len(sink.rtp) == 2
    c.target_layer = 2
    assert c.switch_pending and c.current_layer == 0
    assert s.producer.layers[2].want_keyframe  # asked (throttled: it asked at the start)
    s.frame()  # no keyframe on layer 2 yet: layer 0 keeps flowing
    assert len(sink.rtp) == 3 and c.current_layer == 0
    s.frame(key_layers=(2,))
    s.frame()
    assert c.current_layer == 2 and not c.switch_pending and c.layer_switches == 1
    assert len(sink.rtp) == 6  # layer 0's frame 4 went out before layer 2's keyframe 4
    assert continuous(out_seqs(sink))
    # the sender reports put both layers on one timeline; the keyframe shows the instant
    # already sent from layer 0, so it (and the layer's timeline) goes one 30 fps frame later
    assert ts_deltas(sink) == [STEP, STEP, STEP, 3000, STEP]
    # the keyframe (and what follows) is layer 2's payload under the consumer's SSRC, its
    # PictureID continuing layer 0's last one (0x228, as layer 2's own) by one
    parsed = [RtpPacket.parse(p) for p in sink.rtp]
    continued = VP8_SIZES[2][:2] + bytes.fromhex("8229") + VP8_SIZES[2][4:]
    assert parsed[4].payload == continued and {p.ssrc for p in parsed} == {c.ssrc}
    assert c.producer.layers[0].items == () and len(c.producer.layers[2].items) == 1


def test_switch_down_without_sender_reports_follows_the_wall_clock() -> None:
    s = Setup()
    s.learn_all()
    c, sink = s.consume()
    assert c.current_layer == 2
    s.frame(key_layers=(2,))
    s.frame()
    c.target_layer = 1
    s.frame(key_layers=(1,))
    s.frame()
    assert c.current_layer == 1 and continuous(out_seqs(sink))
    assert ts_deltas(sink) == [STEP] * 3


def test_switch_back_before_the_keyframe_cancels_it() -> None:
    s = Setup()
    s.learn_all()
    c, sink = s.consume()
    c.target_layer = 0
    s.frame(key_layers=(0,))
    c.target_layer = 1
    c.target_layer = 0
    assert not c.switch_pending and s.producer.layers[1].items == ()
    s.frame(key_layers=(1,))
    assert c.current_layer == 0 and c.layer_switches == 0 and len(sink.rtp) == 2


def test_switch_timeout_gives_up_and_asks_again() -> None:
    s = Setup()
    s.learn_all()
    c, sink = s.consume()
    c.target_layer = 0
    s.frame(key_layers=(0,))
    c.target_layer = 1
    plis = s.plis().count(SSRCS[1])
    for _ in range(int(SWITCH_TIMEOUT / 0.25)):
        s.frame()
        s.router.tick(s.clock())
    assert c.switch_timeouts == 1 and s.plis().count(SSRCS[1]) == plis + 1
    assert c.switch_pending and c.current_layer == 0
    assert len(sink.rtp) == 1 + int(SWITCH_TIMEOUT / 0.25)  # layer 0 flowed all along
    s.frame(key_layers=(1,))
    assert c.current_layer == 1 and continuous(out_seqs(sink))


def test_pause_for_bandwidth_and_resume() -> None:
    s = Setup()
    s.learn_all()
    c, sink = s.consume()
    c.target_layer = 1
    s.frame(key_layers=(1,))
    assert c.current_layer == 1
    c.target_layer = None
    assert c.current_layer is None and not c.waiting
    for _ in range(4):  # 1 s paused: nothing sent, no keyframe asked for
        s.frame(key_layers=(0, 1, 2))
        s.router.tick(s.clock())
    assert len(sink.rtp) == 1 and c.sender_report(s.clock()) is None
    plis = len(s.plis())
    c.target_layer = 0
    assert s.plis()[plis:] == [SSRCS[0]]
    s.frame()
    s.frame(key_layers=(0,))
    s.frame()
    assert c.current_layer == 0 and len(sink.rtp) == 3 and continuous(out_seqs(sink))
    ts = out_ts(sink)
    # resumed on the wall clock: 6 frames (1.5 s) after the last one sent
    assert [(ts[1] - ts[0]) & 0xFFFF_FFFF, (ts[2] - ts[1]) & 0xFFFF_FFFF] == [6 * STEP, STEP]


def test_subscriber_pause_defers_a_switch_to_resume() -> None:
    s = Setup()
    s.learn_all()
    c, sink = s.consume()
    c.target_layer = 0
    s.frame(key_layers=(0,))
    c.pause()
    c.target_layer = 2
    assert not c.switch_pending
    s.frame(key_layers=(2,))
    assert len(sink.rtp) == 1
    c.resume()
    assert c.switch_pending
    s.frame(key_layers=(2,))
    assert c.current_layer == 2 and len(sink.rtp) == 2 and continuous(out_seqs(sink))


def test_nack_and_keyframe_requests_follow_the_current_layer() -> None:
    s = Setup()
    s.learn_all()
    c, sink = s.consume()
    c.target_layer = 0
    s.frame(key_layers=(0,))
    c.target_layer = 2
    s.frame(key_layers=(2,))
    s.frame()
    s.frame()
    before_switch, _, key, lost, _ = (RtpPacket.parse(p) for p in sink.rtp)
    c.receive_nack([lost.sequence_number, before_switch.sequence_number])
    assert c.rtx_sent == 1
    rtx = RtpPacket.parse(sink.rtp[-1])
    assert rtx.ssrc == c.rtx_ssrc and rtx.payload[2:] == lost.payload
    assert rtx.timestamp == lost.timestamp
    plis = len(s.plis())
    s.clock.now += 1.1
    c.receive_keyframe_request()
    assert s.plis()[plis:] == [SSRCS[2]]


def test_sender_report_after_a_switch_uses_the_current_layers() -> None:
    s = Setup()
    s.learn_all()
    s.sender_reports()
    c, sink = s.consume()
    c.target_layer = 0
    s.frame(key_layers=(0,))
    c.target_layer = 2
    s.frame(key_layers=(2,))
    key = RtpPacket.parse(sink.rtp[-1])
    report = c.sender_report(s.clock())
    assert report is not None
    sr = parse_compound(report)[0]
    assert isinstance(sr, SenderReport) and sr.ssrc == c.ssrc
    # the SR's RTP time at its NTP time continues the forwarded keyframe's timestamp
    elapsed = (sr.ntp_timestamp - 0xE000_0000_0000_0000) / (1 << 32)
    assert sr.rtp_timestamp == (key.timestamp - 2 * STEP + round(elapsed * 90000)) & 0xFFFF_FFFF


def test_plain_track_target_layer_none_pauses() -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    producer = router.produce(
        ProducerParams("v", "video", VP8, 0x42, None, {}), sink=FakeSink()
    )  # fmt: skip
    assert len(producer.layers) == 1 and producer.layers[0].rid is None
    assert producer.receive_rtp == producer.layers[0].core.receive  # the compiled path as before
    sink = FakeSink()
    c = router.consume(
        producer,
        ConsumerParams("c", 0x99, None, {97: 96}, {}, {}, "x"),
        sink=sink,
    )
    producer.receive_rtp(rtp(1, 0, ssrc=0x42, payload=VP8_SIZES[0]))
    c.target_layer = None
    producer.receive_rtp(rtp(2, 3000, ssrc=0x42))
    c.target_layer = 0
    producer.receive_rtp(rtp(3, 6000, ssrc=0x42))
    producer.receive_rtp(rtp(4, 9000, ssrc=0x42, payload=VP8_SIZES[0]))
    assert out_seqs(sink)[1] == (out_seqs(sink)[0] + 1) & 0xFFFF and len(sink.rtp) == 2
    with pytest.raises(ValueError, match="layer 1 is not one of 1"):
        c.target_layer = 1
    assert producer.layers[0].width == 320


def test_closing_removes_pending_switches() -> None:
    s = Setup()
    s.learn_all()
    c, _ = s.consume()
    c.target_layer = 0
    c.target_layer = 1
    c.close()
    assert all(layer.items == () for layer in s.producer.layers)
    s.producer.close()
    assert s.producer.closed


# -- the compiled forwarder against the Python one -------------------------------------------


@pytest.fixture
def fixed_random(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The consumer's random SSRC-space offsets, fixed so that two runs are comparable."""
    monkeypatch.setattr("secrets.randbits", lambda bits: (1 << bits) - 7)
    yield


def _switch_scenario(sink: object) -> Setup:
    s = Setup()
    s.learn_all()
    c, _ = s.consume(sink)
    c.target_layer = 0
    s.frame(key_layers=(0,))
    s.frame()
    c.target_layer = 2
    s.frame()
    s.frame(key_layers=(2,))
    s.frame()
    c.target_layer = None
    s.frame()
    c.target_layer = 1
    s.frame(key_layers=(1,))
    s.frame()
    assert c.layer_switches == 2
    return s


@pytest.mark.skipif(native is None, reason="compiled fast path not built")
def test_compiled_forwarder_switches_like_the_python_one(fixed_random: None) -> None:
    from .test_fastpath import wire

    reference = FakeSink()
    _switch_scenario(reference)
    assert len(reference.rtp) == 8 and continuous(out_seqs(reference))
    with wire() as w:

        class WireSink(FakeSink):
            rtp_target = w.target()

        compiled = WireSink()
        s = _switch_scenario(compiled)
        consumer = next(iter(s.router.consumers.values()))
        assert type(consumer.core).__module__.endswith("_fastpath")
        assert w.received(len(reference.rtp)) == w.protect(reference.rtp)
