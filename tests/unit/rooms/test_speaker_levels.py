"""The active-speaker detector's read of an audio ring: the compiled ``_fastpath.audio_levels``
adds exactly what its pure-Python reference ``speakers.read_levels`` adds (the same counts and
the same float sum, bit for bit), over rings of every layout the detector can meet."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvonok.media.fastpath import native
from zvonok.media.packets.rtp import build_extension_block
from zvonok.rooms.speakers import level_of, read_levels

pytestmark = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")

SIZE = 64


@st.composite
def audio_packet(draw: st.DrawFn, seq: int) -> bytes:
    """An Opus packet with ``seq`` in one of the layouts an audio track carries: the level first
    in a one-byte block (browsers), after another element, in a two-byte block, with CSRCs,
    under another id, without extension, or cut short."""
    level = draw(st.integers(0, 127))
    voice = draw(st.booleans())
    value = bytes([level | (0x80 if voice else 0)])
    layout = draw(
        st.sampled_from(["first", "second", "two-byte", "csrc", "other-id", "none", "short"])
    )
    ext_id = 1
    csrc = b""
    if layout == "first":
        block = build_extension_block([(ext_id, value), (3, b"\x01\x02")])
    elif layout == "second":
        block = build_extension_block([(3, b"\x01\x02"), (ext_id, value)])
    elif layout == "two-byte":
        block = build_extension_block([(ext_id, value), (20, b"\x00")])
    elif layout == "csrc":
        csrc = struct.pack("!I", 0xABCDEF)
        block = build_extension_block([(ext_id, value)])
    elif layout == "other-id":
        block = build_extension_block([(5, value)])
    else:
        block = b""
    first = 0x80 | (0x10 if block else 0) | (1 if csrc else 0)
    packet = struct.pack("!BBHII", first, 111, seq & 0xFFFF, seq * 960, 0x1234) + csrc + block
    packet += bytes(draw(st.integers(0, 40)))
    if layout == "short":
        packet = packet[: draw(st.integers(12, 19))]
    return packet


@st.composite
def ring(draw: st.DrawFn) -> tuple[list[bytes | None], int, int, int]:
    """A 64-slot ring after some traffic (gaps, late and overwritten packets, slots holding an
    older sequence number), the newest sequence number, a count to read and the id."""
    newest = draw(st.integers(0, 0xFFFF))
    slots: list[bytes | None] = [None] * SIZE
    for back in range(draw(st.integers(0, 2 * SIZE)), -1, -1):
        seq = (newest - back) & 0xFFFF
        if draw(st.integers(0, 9)) == 0:
            continue  # lost
        if draw(st.integers(0, 19)) == 0:
            seq = (seq - SIZE) & 0xFFFF  # an old packet left in the slot
        slots[seq & (SIZE - 1)] = draw(audio_packet(seq))
    count = draw(st.integers(0, 0x7FFF))
    ext_id = draw(st.sampled_from([1, 1, 1, 5, 14, 15, 0]))
    return slots, newest, count, ext_id


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=ring(),
    start=st.tuples(st.integers(0, 500), st.integers(0, 500), st.floats(0, 300, width=64)),
)
def test_compiled_levels_match_the_reference(
    case: tuple[list[bytes | None], int, int, int], start: tuple[int, int, float]
) -> None:
    assert native is not None
    slots, newest, count, ext_id = case
    packets, loud, loudness = start
    expected = read_levels(slots, newest, count, ext_id, packets, loud, loudness, level_of)
    got = native.audio_levels(slots, newest, count, ext_id, packets, loud, loudness, level_of)
    assert got == expected
    assert got[2].hex() == expected[2].hex()  # bit for bit


def test_a_ring_of_browser_packets_is_read_without_the_slow_path() -> None:
    assert native is not None
    slots: list[bytes | None] = [None] * SIZE
    for seq in range(100, 112):
        block = build_extension_block([(1, bytes([0x80 | (seq % 60)]))])
        slots[seq & (SIZE - 1)] = struct.pack("!BBHII", 0x90, 111, seq, seq, 1) + block + bytes(9)

    def slow(packet: bytes, ext_id: int) -> int | None:
        raise AssertionError("the common layout is read directly")

    got = native.audio_levels(slots, 111, 12, 1, 0, 0, 0.0, slow)
    expected = read_levels(slots, 111, 12, 1, 0, 0, 0.0, slow)
    assert got == expected
    assert got[0] == 12 and got[1] == sum(1 for s in range(100, 112) if s % 60 <= 50)


def test_what_the_slow_path_raises_propagates() -> None:
    assert native is not None
    slots: list[bytes | None] = [None] * SIZE
    slots[5] = struct.pack("!BBHII", 0x80, 111, 5, 0, 1) + bytes(10)

    def slow(packet: bytes, ext_id: int) -> int | None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        native.audio_levels(slots, 5, 1, 1, 0, 0, 0.0, slow)
    with pytest.raises(ValueError):
        native.audio_levels([None] * 3, 5, 1, 1, 0, 0, 0.0, slow)
