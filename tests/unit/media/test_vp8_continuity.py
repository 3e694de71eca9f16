"""VP8 PictureID / TL0PICIDX / KEYIDX continuity across layer switches (RFC 7741 §4.2).

Each simulcast layer is its own RTP stream with its own picture numbering; a subscriber moved
between layers must see one numbering, or libwebrtc's VP8 reference finder holds frames back
(a TL0PICIDX that goes backwards makes it drop the new layer's base frames until its next
keyframe request). The forwarder sets offsets at the keyframe it restarts on so that the
indices continue from the last ones it sent. Checked here with synthetic Chrome-shaped layers
whose numberings differ (and wrap), 7- and 15-bit PictureIDs, packets without PictureID, a
temporal cap during the switch, NACK answers before and after a switch, and the compiled
forwarder against the Python one (the same scenario byte for byte, and random descriptors).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvonok.media.fastpath import native
from zvonok.media.forwarding.consumer import Consumer
from zvonok.media.forwarding.forwarder import Forwarder
from zvonok.media.packets.codecs import Vp8Descriptor, vp8_is_keyframe
from zvonok.media.packets.rtp import RtpPacket, ext_id_table, rtp_seq, unwrap_rtx

from .forwarding_fakes import FakeSink, rtp
from .test_simulcast import SSRCS, TS_BASE, Setup

TEMPORAL_PATTERN = (0, 2, 1, 2)
FRAME_TICKS = 3000
KEY_BODY = bytes.fromhex("50 42 00 9d 01 2a 40 01 b4 00")  # P=0: a keyframe
DELTA_BODY = bytes.fromhex("01 02 03") + bytes(8)  # P=1


def payload(
    pid: int | None,
    tl0: int | None,
    tid: int | None,
    *,
    key: bool = False,
    start: bool = True,
    long: bool = True,
    keyidx: int | None = None,
) -> bytes:
    d = Vp8Descriptor(
        non_reference=False, start_of_partition=start, partition_index=0,
        picture_id=None if pid is None else pid & (0x7FFF if long else 0x7F),
        tl0_pic_idx=tl0, temporal_id=tid, layer_sync=False, key_index=keyidx,
        long_picture_id=long,
    )  # fmt: skip
    return bytes(d) + (KEY_BODY if key and start else DELTA_BODY)


class Layers:
    """Three simulcast layers on ``Setup``'s endpoint, each with its own PictureID, TL0PICIDX
    and KEYIDX; two packets per frame, libwebrtc's 0, 2, 1, 2 temporal pattern."""

    def __init__(
        self,
        s: Setup,
        pids: tuple[int, int, int],
        tl0s: tuple[int, int, int],
        *,
        long: tuple[bool, bool, bool] = (True, True, True),
        with_pid: tuple[bool, bool, bool] = (True, True, True),
        keyidx: tuple[int | None, int | None, int | None] = (None, None, None),
    ) -> None:
        self.s = s
        self.pids = list(pids)
        self.tl0s = list(tl0s)
        self.long = long
        self.with_pid = with_pid
        self.keyidx = list(keyidx)
        self.i = 0
        self.sent: list[dict[int, bytes]] = [{}, {}, {}]  # input seq -> packet, per layer

    def frame(self, key_layers: tuple[int, ...] = ()) -> None:
        s = self.s
        i = self.i = self.i + 1
        s.clock.now += 1 / 30
        for layer in range(3):
            key = layer in key_layers
            tid = 0 if key else TEMPORAL_PATTERN[i % 4]
            if tid == 0:
                self.tl0s[layer] = (self.tl0s[layer] + 1) & 0xFF
            if key and self.keyidx[layer] is not None:
                self.keyidx[layer] = (self.keyidx[layer] + 1) & 0x1F  # type: ignore[operator]
            for k in range(2):
                data = payload(
                    self.pids[layer] if self.with_pid[layer] else None, self.tl0s[layer], tid,
                    key=key, start=k == 0, long=self.long[layer], keyidx=self.keyidx[layer],
                )  # fmt: skip
                ts = TS_BASE[layer] + FRAME_TICKS * i
                packet = rtp(s.seqs[layer], ts, ssrc=SSRCS[layer], payload=data)
                self.sent[layer][s.seqs[layer]] = packet
                s.endpoint.on_rtp(packet)
                s.seqs[layer] = (s.seqs[layer] + 1) & 0xFFFF
            self.pids[layer] = (self.pids[layer] + 1) & (0x7FFF if self.long[layer] else 0x7F)

    def frames(self, n: int) -> None:
        for _ in range(n):
            self.frame()


Row = tuple[int, int | None, int | None, int | None, bool]


def rows(packets: list[bytes]) -> list[Row]:
    """(seq, PictureID, TL0PICIDX, KEYIDX, keyframe) of every packet sent."""
    out = []
    for data in packets:
        p = RtpPacket.parse(data)
        d = Vp8Descriptor.parse(p.payload)
        out.append((p.sequence_number, d.picture_id, d.tl0_pic_idx, d.key_index, d.keyframe))
    return out


def distinct(values: list[int | None]) -> list[int]:
    return [v for v in dict.fromkeys(values) if v is not None]


def continuous(values: list[int], mod: int) -> bool:
    return all((b - a) % mod == 1 for a, b in zip(values, values[1:], strict=False))


def on_layer_0(sink: object, **layer_args: Any) -> tuple[Setup, Layers, Consumer]:
    """A consumer of the three layers (``Layers(**layer_args)``) forwarding layer 0 from its
    first keyframe."""
    s = Setup()
    s.learn_all()
    c, _ = s.consume(sink)
    c.target_layer = 0
    layers = Layers(s, **layer_args)
    layers.frame(key_layers=(0,))
    return s, layers, c


def scenario(sink: object, **layer_args: Any) -> tuple[Setup, Layers, Consumer]:
    """Layer 0, then layer 2 (switch up), a pause for bandwidth, then layer 1."""
    s, layers, c = on_layer_0(sink, **layer_args)
    layers.frames(5)
    c.target_layer = 2
    layers.frames(2)
    layers.frame(key_layers=(2,))
    layers.frames(6)
    c.target_layer = None
    layers.frames(3)
    c.target_layer = 1
    layers.frames(1)
    layers.frame(key_layers=(1,))
    layers.frames(6)
    assert c.layer_switches == 2 and c.current_layer == 1
    return s, layers, c


#: Layer 0 wraps its PictureID and TL0PICIDX during the call; layer 2 is far behind layer 0
#: (a layer that was off: what froze Chromium), layer 1 far ahead.
SPACES: dict[str, Any] = dict(pids=(32_760, 11_402, 20_000), tl0s=(250, 128, 3))


def test_switches_continue_picture_id_and_tl0picidx_across_wrap() -> None:
    sink = FakeSink()
    scenario(sink, **SPACES)
    out = rows(sink.rtp)
    assert sum(r[4] for r in out) == 3  # layer 0's keyframe, then layer 2's, then layer 1's
    assert continuous([r[0] for r in out], 1 << 16)
    pids = distinct([r[1] for r in out])
    assert pids[0] == 32_760 and continuous(pids, 1 << 15) and 0 in pids  # wrapped
    assert continuous(distinct([r[2] for r in out]), 1 << 8)
    # each switch's keyframe is the last picture + 1, the first forwarded one keeps its index
    keys = [n for n, r in enumerate(out) if r[4]]
    for n in keys[1:]:
        assert out[n][1] == (out[n - 1][1] + 1) & 0x7FFF  # type: ignore[operator]
        assert out[n][2] == (out[n - 1][2] + 1) & 0xFF  # type: ignore[operator]


def test_seven_bit_picture_ids_continue_in_their_own_width() -> None:
    """A layer with 7-bit PictureIDs between 15-bit ones: its field keeps 7 bits and continues
    the numbering modulo 2^7; the 15-bit layer after it continues from there (the forwarder
    carries the 15-bit count the 7-bit ids extend)."""
    sink = FakeSink()
    scenario(sink, pids=(1_000, 120, 30_000), tl0s=(7, 200, 90), long=(True, True, False))
    out = rows(sink.rtp)
    keys = [n for n, r in enumerate(out) if r[4]]
    layer2 = out[keys[1] : keys[2]]
    assert all(r[1] is not None and r[1] < 0x80 for r in layer2)
    assert continuous(distinct([r[1] % 0x80 for r in out]), 1 << 7)  # type: ignore[operator]
    before, after = out[keys[2] - 1][1], out[keys[2]][1]
    assert before is not None and after is not None and after >= 0x80  # 15 bits again
    assert after == 1_000 + 9 + 7  # 9 pictures of layer 0, 7 of layer 2 before it
    assert (after - before) % 0x80 == 1
    assert continuous(distinct([r[2] for r in out]), 1 << 8)


def test_key_index_continues_across_switches() -> None:
    sink = FakeSink()
    scenario(sink, **SPACES, keyidx=(30, 3, 17))
    out = rows(sink.rtp)
    keyidx = [r[3] for r in out if r[4]]
    assert keyidx == [31, 0, 1]  # layer 0's own (30 + 1), then one more per keyframe, wrapped


def test_a_consumer_never_switched_forwards_the_descriptors_unchanged() -> None:
    sink = FakeSink()
    _, layers, c = on_layer_0(sink, **SPACES)
    layers.frames(12)
    sent = [RtpPacket.parse(p).payload for p in sink.rtp]
    source = [RtpPacket.parse(p).payload for p in layers.sent[0].values()]
    assert sent == source and len(sent) == 26
    assert (c.core.pid_offset, c.core.tl0_offset, c.core.keyidx_offset) == (0, 0, 0)


def test_packets_without_picture_id_pass_and_their_tl0picidx_continues() -> None:
    """Layer 2 sends no PictureID (I=0) but TL0PICIDX: its packets keep no PictureID, its
    TL0PICIDX is offset; layer 1 after it continues the PictureIDs from layer 0's last."""
    sink = FakeSink()
    scenario(sink, **SPACES, with_pid=(True, True, False))
    out = rows(sink.rtp)
    keys = [n for n, r in enumerate(out) if r[4]]
    assert all(r[1] is None for r in out[keys[1] : keys[2]])
    assert out[keys[2]][1] == (out[keys[1] - 1][1] + 1) & 0x7FFF  # type: ignore[operator]
    assert continuous(distinct([r[2] for r in out]), 1 << 8)


def test_a_descriptor_without_extension_passes_unchanged() -> None:
    s = Setup()
    s.learn_all()
    sink = FakeSink()
    c, _ = s.consume(sink)
    c.target_layer = 0
    s.frame(key_layers=(0,))  # test_simulcast's packets: a 15-bit then 7-bit PictureID
    c.target_layer = 2
    s.clock.now += 1
    plain = bytes((0x10,)) + KEY_BODY  # X=0: no indices at all
    s.endpoint.on_rtp(rtp(s.seqs[2], TS_BASE[2] + 9000, ssrc=SSRCS[2], payload=plain))
    assert c.current_layer == 2
    assert RtpPacket.parse(sink.rtp[-1]).payload == plain
    assert c.core.pid_offset == 0 and c.core.last_pid == 0x228


@pytest.mark.parametrize("cap", [0, 1])
def test_a_temporal_cap_during_the_switch_keeps_one_numbering(cap: int) -> None:
    sink = FakeSink()
    _, layers, c = on_layer_0(sink, **SPACES)
    c.temporal_target = cap
    layers.frames(9)
    c.target_layer = 2
    layers.frame(key_layers=(2,))
    layers.frames(9)
    assert c.current_layer == 2 and c.current_temporal == cap
    out = rows(sink.rtp)
    assert continuous([r[0] for r in out], 1 << 16)
    assert continuous(distinct([r[1] for r in out]), 1 << 15)
    assert continuous(distinct([r[2] for r in out]), 1 << 8)


def test_nack_answers_carry_the_indices_first_sent() -> None:
    """Before a second switch the forwarder has offsets from the first: a NACKed packet is
    resent with them (and the temporal filter's shift); after the switch a packet of the old
    layer is not resent, one of the new layer is, as sent."""
    sink = FakeSink()
    _, layers, c = on_layer_0(sink, **SPACES)
    layers.frames(3)
    c.target_layer = 2
    layers.frame(key_layers=(2,))
    c.temporal_target = 1
    layers.frames(8)
    assert c.core.pid_offset and c.core.tl0_offset
    sent = list(sink.rtp)
    pre = sent[-3]  # layer 2, offset, the filter's PictureID shift
    sink.rtp.clear()
    c.receive_nack([rtp_seq(pre)])
    assert [bytes(unwrap_rtx(p, 96, c.ssrc)) for p in sink.rtp] == [pre]
    c.target_layer = 1
    layers.frame(key_layers=(1,))
    layers.frames(4)
    assert c.current_layer == 1
    post = sink.rtp[-2]
    sink.rtp.clear()
    c.receive_nack([rtp_seq(pre), rtp_seq(post)])
    assert [bytes(unwrap_rtx(p, 96, c.ssrc)) for p in sink.rtp] == [post]


# -- the compiled forwarder against the Python one -------------------------------------------


@pytest.fixture
def fixed_random(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("secrets.randbits", lambda bits: (1 << bits) - 7)
    yield


@pytest.mark.skipif(native is None, reason="compiled fast path not built")
@pytest.mark.parametrize(
    "args",
    [SPACES, dict(pids=(1_000, 120, 30_000), tl0s=(7, 200, 90), long=(True, True, False),
                  keyidx=(30, 3, 17), with_pid=(True, False, True))],
)  # fmt: skip
def test_compiled_forwarder_continues_like_the_python_one(
    fixed_random: None, args: dict[str, Any]
) -> None:
    from .test_fastpath import wire

    reference = FakeSink()
    _, _, rc = scenario(reference, **args)
    with wire() as w:

        class WireSink(FakeSink):
            rtp_target = w.target()

        compiled = WireSink()
        _, _, cc = scenario(compiled, **args)
        assert type(cc.core).__module__.endswith("_fastpath")
        assert w.received(len(reference.rtp)) == w.protect(reference.rtp)
        for name in ("pid_offset", "tl0_offset", "keyidx_offset", "last_pid", "last_tl0",
                     "last_keyidx", "vp8_resync"):  # fmt: skip
            assert getattr(cc.core, name) == getattr(rc.core, name), name


PTS = {96: 100, 97: 101}
VP8_PTS = (96,)


@st.composite
def vp8_packets(draw: st.DrawFn) -> tuple[bytes, bool, bool]:
    """A VP8-ish packet (any descriptor shape, truncated ones, padding), a keyframe flag, and
    whether the forwarder restarts (``blocked``) before it."""
    pt = draw(st.sampled_from([96, 96, 96, 97]))  # 97: not VP8 to the forwarder
    seq = draw(st.integers(0, 0xFFFF))
    first = draw(st.sampled_from([0x90, 0x80, 0x10, 0x00])) | draw(st.integers(0, 7))
    x = draw(st.integers(0, 255))
    fields = draw(st.binary(min_size=0, max_size=5))
    body = draw(st.binary(min_size=0, max_size=40))
    data = bytes((first,)) + (bytes((x,)) if first & 0x80 else b"") + fields + body
    cut = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        data = data[:cut]
    pad = draw(st.sampled_from([0, 0, 0, 1, 4, 250]))
    header = struct.pack("!BBHII", 0x80 | (0x20 if pad else 0), pt, seq, 90 * seq, 1)
    packet = header + data + (bytes(pad - 1) + bytes((pad,)) if pad else b"")
    return packet, draw(st.booleans()), draw(st.integers(0, 9)) == 0


@pytest.mark.skipif(native is None, reason="compiled fast path not built")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(vp8_packets(), min_size=1, max_size=30))
def test_compiled_vp8_rewrite_equals_the_reference(stream: list[tuple[bytes, bool, bool]]) -> None:
    from .test_fastpath import wire

    assert native is not None
    with wire() as w:
        sent: list[bytes] = []
        reference_target = w.reference_target()

        def send(packet: bytearray) -> None:
            sent.append(bytes(packet))
            reference_target.send(packet)

        args: dict[str, Any] = dict(
            ssrc=0xCAFE, payload_types=PTS, ext_table=ext_id_table({}), video=True,
            ts_offset=5, last_out_seq=0xFFF0, vp8_payload_types=VP8_PTS,
        )  # fmt: skip
        compiled = native.Forwarder(target=w.target(), **args)
        reference = Forwarder(send=send, **args)
        names = ("pid_offset", "tl0_offset", "keyidx_offset", "last_pid", "last_tl0",
                 "last_keyidx", "vp8_resync", "packets_sent", "octets_sent", "dropped",
                 "last_out_seq", "blocked")  # fmt: skip
        for packet, keyframe, restart in stream:
            if restart:
                compiled.blocked = reference.blocked = True
            compiled.forward(packet, keyframe)
            reference.forward(packet, keyframe)
            for name in names:
                assert getattr(compiled, name) == getattr(reference, name), name
        assert w.received(len(w.reference_sent)) == w.reference_sent


def test_the_first_keyframe_is_not_rewritten_and_indices_are_followed() -> None:
    out: list[bytes] = []
    f = Forwarder(
        send=lambda p: out.append(bytes(p)), ssrc=1, payload_types=PTS, ext_table=ext_id_table({}),
        video=True, ts_offset=0, last_out_seq=0, vp8_payload_types=VP8_PTS,
    )  # fmt: skip
    key = struct.pack("!BBHII", 0x80, 96, 10, 0, 1) + payload(500, 9, 0, key=True, keyidx=4)
    f.forward(key, True)
    assert RtpPacket.parse(out[0]).payload == RtpPacket.parse(key).payload
    assert (f.last_pid, f.last_tl0, f.last_keyidx, f.pid_offset) == (500, 9, 4, 0)
    assert vp8_is_keyframe(RtpPacket.parse(out[0]).payload)
    # an older picture (reordered) does not move the newest index back
    late = struct.pack("!BBHII", 0x80, 96, 11, 0, 1) + payload(499, 8, 2)
    f.forward(late)
    assert (f.last_pid, f.last_tl0) == (500, 9)
