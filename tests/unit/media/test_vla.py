"""The video layers allocation extension as a value (``packets.vla``): Chromium's own bytes,
the layout by hand, malformed twins, and a round trip / fuzz over what the layout allows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.packets.vla import LayersAllocation, SpatialLayer

# Captured from Chromium 156 publishing the SDK's 3 simulcast layers (VP8, 3 temporal layers
# each, fake camera 1280x720 at 30 fps) to zvonok, as the server read them from the packets:
#: a keyframe's: the 3 streams with sizes (33 bytes: the two-byte header form)
CHROMIUM_KEY = bytes.fromhex("21a83c5a9601c801ac02f403d8048407dc0b013f00b31e027f01671e04ff02cf1e")
#: a change of bitrates only: no sizes
CHROMIUM_RATES = bytes.fromhex("21a83c5a9601c801ac02f403d8048407dc0b")
#: dynacast turned "h" off: streams 0 and 2, per-stream bitmasks
CHROMIUM_NO_MIDDLE = bytes.fromhex("201010a03c5a9601d8048407dc0b013f00b31e04ff02cf1e")
#: behind a 600 kbit/s uplink the encoder stopped "f": only stream 0 is left
CHROMIUM_LOW_ONLY = bytes.fromhex("01803c5a9601013f00b31e")
CHROMIUM = (CHROMIUM_KEY, CHROMIUM_RATES, CHROMIUM_NO_MIDDLE, CHROMIUM_LOW_ONLY)


def test_chromium_bytes() -> None:
    key = LayersAllocation.parse(CHROMIUM_KEY)
    assert key.stream == 0 and key.active_streams == {0, 1, 2} and key.has_resolution
    assert [(x.width, x.height, x.fps) for x in key.layers] == [
        (320, 180, 30),
        (640, 360, 30),
        (1280, 720, 30),
    ]
    assert [x.kbps for x in key.layers] == [(60, 90, 150), (200, 300, 500), (600, 900, 1500)]
    rates = LayersAllocation.parse(CHROMIUM_RATES)
    assert not rates.has_resolution and [x.kbps for x in rates.layers] == [
        x.kbps for x in key.layers
    ]
    no_middle = LayersAllocation.parse(CHROMIUM_NO_MIDDLE)
    assert no_middle.active_streams == {0, 2}
    assert [x.width for x in no_middle.layers] == [320, 1280]
    low = LayersAllocation.parse(CHROMIUM_LOW_ONLY)
    assert low.active_streams == {0}
    assert low.layers == (SpatialLayer(0, 0, (60, 90, 150), 320, 180, 30),)
    for real in CHROMIUM:  # written back the way Chromium writes it
        assert bytes(LayersAllocation.parse(real)) == real


def test_layout_by_hand() -> None:
    # stream 1 of 3, all with spatial layer 0 (shared bitmask 0b0001), 3/3/3 temporal layers,
    # kbit/s 60,90,120 | 200,300,400 | 700,1000,1500 (LEB128), no resolutions
    rates = [60, 90, 120, 200, 300, 400, 700, 1000, 1500]
    data = bytes([0b01_10_0001, 0b10_10_10_00]) + b"".join(_leb(v) for v in rates)
    value = LayersAllocation.parse(data)
    assert value.stream == 1
    assert value.layers == (
        SpatialLayer(0, 0, (60, 90, 120)),
        SpatialLayer(1, 0, (200, 300, 400)),
        SpatialLayer(2, 0, (700, 1000, 1500)),
    )
    assert bytes(value) == data
    # streams 0 and 2 only (per-stream bitmasks, two bytes for 3 streams), one temporal layer
    data = bytes([0b00_10_0000, 0x10, 0x10, 0b00_00_0000, 100, 120])
    value = LayersAllocation.parse(data)
    assert value.active_streams == {0, 2}
    assert [layer.kbps for layer in value.layers] == [(100,), (120,)]
    assert bytes(value) == data
    # with resolutions: 320x180 at 30 fps
    data = bytes([0b00_00_0001, 0, 0x96, 0x01]) + bytes([1, 63, 0, 179, 30])
    value = LayersAllocation.parse(data)
    assert value.layers == (SpatialLayer(0, 0, (150,), 320, 180, 30),)
    assert bytes(value) == data


def test_empty_allocation() -> None:
    value = LayersAllocation.parse(b"\x00")
    assert value.layers == () and value.active_streams == frozenset()
    assert bytes(value) == b"\x00"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (bytes([0b00_10_0000]), "short spatial layer bitmasks"),
        (bytes([0b00_10_0000, 0x10]), "short spatial layer bitmasks"),
        (bytes([0b00_01_0000, 0x00, 0x00, 10]), "no active layer"),
        (bytes([0b11_01_0001, 0x00, 10, 10]), "stream 3 of 2"),
        (bytes([0b00_00_0001]), "short temporal layer counts"),
        (bytes([0b00_00_0001, 0b11_000000, 1, 2, 3]), "short bitrate"),
        (bytes([0b00_00_0001, 0, 0x80]), "short bitrate"),
        (bytes([0b00_00_0001, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), "longer than 5 bytes"),
        (bytes([0b00_00_0001, 0, 0xC1, 0x84, 0x3D]), "kbit/s"),  # 1,000,001
        (bytes([0b00_00_0001, 0, 100, 1, 63, 0, 179]), "trailing bytes"),
        (bytes([0b00_00_0001, 0, 100, 1, 63, 0, 179, 30, 0]), "trailing bytes"),
    ],
)
def test_malformed(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        LayersAllocation.parse(data)


def test_malformed_twins() -> None:
    for real in (*CHROMIUM, bytes(_THREE), bytes(_THREE_SIZED)):
        for cut in range(1, len(real)):
            try:
                value = LayersAllocation.parse(real[:cut])
            except ValueError:
                continue
            assert value != LayersAllocation.parse(real)  # a prefix is never the same value
        with pytest.raises(ValueError):
            LayersAllocation.parse(real + b"\x00")


_THREE = LayersAllocation(
    1, tuple(SpatialLayer(s, 0, (60 * (s + 1), 90 * (s + 1), 200 * (s + 1))) for s in range(3))
)
_THREE_SIZED = LayersAllocation(
    0,
    tuple(SpatialLayer(s, 0, (100 << s,), 320 << s, 180 << s, 30) for s in range(3)),
)


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        b, value = value & 0x7F, value >> 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def allocations(draw: st.DrawFn) -> LayersAllocation:
    streams = draw(st.integers(1, 4))
    masks = [draw(st.integers(0, 15)) for _ in range(streams)]
    if not masks[-1]:
        masks[-1] = draw(st.integers(1, 15))  # NS is the highest stream that sends
    sized = draw(st.booleans())
    layers = []
    for s in range(streams):
        for sid in range(4):
            if masks[s] >> sid & 1:
                kbps = tuple(draw(st.lists(st.integers(0, 1_000_000), min_size=1, max_size=4)))
                size = (draw(st.integers(1, 65536)), draw(st.integers(1, 65536)))
                fps = draw(st.integers(0, 255))
                layers.append(
                    SpatialLayer(s, sid, kbps, *size, fps) if sized else SpatialLayer(s, sid, kbps)
                )
    return LayersAllocation(draw(st.integers(0, streams - 1)), tuple(layers))


@settings(max_examples=300, deadline=None)
@given(allocations())
def test_round_trip(value: LayersAllocation) -> None:
    assert LayersAllocation.parse(bytes(value)) == value


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_fuzz_parse_only_raises_value_error(data: bytes) -> None:
    try:
        value = LayersAllocation.parse(data)
    except ValueError:
        return
    assert LayersAllocation.parse(bytes(value)) == value
