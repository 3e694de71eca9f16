"""Transport-wide CC feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1): hand-
decoded packets field by field, malformed twins, the builder, hypothesis round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zvonok.media.packets.rtcp import TransportFeedback, parse_compound


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def _packet(fci: str, *, sender: int = 1, media: int = 2) -> bytes:
    """An RTPFB FMT 15 packet around ``fci`` (zero-padded to a word, length computed)."""
    body = sender.to_bytes(4, "big") + media.to_bytes(4, "big") + _hex(fci)
    body += bytes(-len(body) % 4)
    return bytes((0x8F, 205)) + (len(body) // 4).to_bytes(2, "big") + body


# One-bit status vector across the 16-bit wrap, zero padding inside the length (no P bit):
#   8f cd 0006           V=2 FMT=15 PT=205, 6 words
#   00000001 00000002    sender SSRC, media SSRC
#   fffe 0005            base seq 65534, 5 packet statuses
#   000001 07            reference time 1 (64 ms), feedback packet count 7
#   ac00                 1|0|1 0 1 1 0 0 0 0 0 0 0 0 0 0: received, lost, received, received,
#                        lost (+ 9 unused slots)
#   04 08 00             small deltas 1 ms, 2 ms, 0 ms
#   000000               zero padding
ONE_BIT = "8f cd 0006 00000001 00000002 fffe 0005 000001 07 ac00 04 08 00 000000"

# Two-bit status vector + run-length chunk, a negative large delta, a negative reference time,
# Chrome's padding (P bit, 1 byte, its count last):
#   af cd 0007           V=2 P=1 FMT=15 PT=205, 7 words
#   0064 000a            base seq 100, 10 statuses
#   ffffff ff            reference time -1 (-64 ms), feedback packet count 255
#   d840                 1|1|01 10 00 01 00 00 00: small, large, lost, small, lost, lost, lost
#   2003                 0|01|0000000000011: 3 × small
#   10 ff38 05 01 02 03  deltas 4 ms, -50 ms (16-bit signed), 1.25 ms, 0.25, 0.5, 0.75 ms
#   01                   padding: 1 byte
TWO_BIT = "af cd 0007 00000001 00000002 0064 000a ffffff ff d840 2003 10 ff38 05 01 02 03 01"


# Captured from Chromium 156 (headless, fake camera, test_adaptive_network's weak-downlink case:
# a 300 kbit/s tbf-shaped namespace link), the feedback it sent the server, SRTCP-decrypted:
# a run-length chunk with Chrome's 1-byte padding (P bit), a two-bit vector with a loss and
# 2 bytes of padding, and a one-bit vector with three losses and no padding.
CHROMIUM = [
    (
        "afcd0005fa17fa17405f2727018800010ae7d61b20016f01",
        TransportFeedback(0xFA17FA17, 0x405F2727, 392, 714710, 27, [111]),
    ),
    (
        "afcd0006fa17fa1723a95ed400eb00050ae7ff27d1501f0917750002",
        TransportFeedback(0xFA17FA17, 0x23A95ED4, 235, 714751, 39, [31, None, 9, 23, 117]),
    ),
    (
        "8fcd0006fa17fa178eb700ae00fa00090ae8022aae60590000261111",
        TransportFeedback(
            0xFA17FA17, 0x8EB700AE, 250, 714754, 42, [89, None, 0, 0, 38, None, None, 17, 17]
        ),
    ),
]


@pytest.mark.parametrize(("hex_data", "expected"), CHROMIUM)
def test_chromium_feedback(hex_data: str, expected: TransportFeedback) -> None:
    assert parse_compound(_hex(hex_data)) == [expected]
    assert parse_compound(bytes(expected)) == [expected]  # ours may chunk differently


def test_one_bit_vector_across_the_wrap() -> None:
    (fb,) = parse_compound(_hex(ONE_BIT))
    assert isinstance(fb, TransportFeedback)
    assert fb == TransportFeedback(1, 2, 0xFFFE, 1, 7, [4, None, 8, 0, None])
    assert fb.arrivals() == [(65534, 65000), (65535, None), (0, 67000), (1, 67000), (2, None)]
    assert bytes(fb) == _hex(ONE_BIT)  # re-encoded the same way


def test_two_bit_vector_run_length_and_chrome_padding() -> None:
    (fb,) = parse_compound(_hex(TWO_BIT))
    assert isinstance(fb, TransportFeedback)
    assert (fb.base_seq, fb.reference_time, fb.fb_count) == (100, -1, 255)
    assert fb.deltas == [16, -200, None, 5, None, None, None, 1, 2, 3]
    times = [t for _, t in fb.arrivals()]
    assert times == [-60000, -110000, None, -108750, None, None, None, -108500, -108000, -107250]
    assert parse_compound(bytes(fb)) == [fb]


def test_run_length_chunk_of_the_existing_fixture() -> None:
    data = _hex("8fcd0005 0000abcd 12345678 0001 0002 000102 00 2002 0a 0b")
    (fb,) = parse_compound(data)
    assert fb == TransportFeedback(0xABCD, 0x12345678, 1, 258, 0, [10, 11])
    assert bytes(fb) == data


@pytest.mark.parametrize(
    ("fci", "message"),
    [
        ("0001 0002", r"^RTCP transport-cc FCI is too short \(4 bytes\)$"),
        ("0001 0000 000000 00 2001 01", r"status count 0"),
        ("0001 001e 000000 00 8000 8000", r"chunks are truncated: 28 of 30 packet statuses"),
        ("0001 0002 000000 00 4002 0001", r"receive deltas overrun the packet \(1 of 2"),
        ("0001 0003 000000 00 2003 01 02", r"receive deltas overrun the packet \(2 of 3"),
        ("0001 0001 000000 00 6001", r"run-length chunk has the reserved symbol"),
        ("0001 0001 000000 00 0000", r"run length 0"),
        ("0001 0002 000000 00 f000 01", r"status vector has the reserved symbol"),
        ("0001 0001 000000 00 0001 00000000 0000", r"has 6 bytes after its deltas"),
    ],
)
def test_malformed_feedback(fci: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_compound(_packet(fci))


def test_truncated_twin_of_a_good_packet() -> None:
    good = _hex(TWO_BIT)
    cut = bytearray(good[:24])  # ends inside the chunks; length field fixed to match
    cut[2:4] = (len(cut) // 4 - 1).to_bytes(2, "big")
    cut[0] &= ~0x20  # no padding
    with pytest.raises(ValueError, match="receive deltas overrun"):
        parse_compound(bytes(cut))


def test_build_rounds_against_the_running_sum() -> None:
    # arrivals (µs): 100.1 ms, lost, 100.4 ms, 99.9 ms (reordered), 9 lost, 200 ms
    times: list[int | None] = [100_100, None, 100_400, 99_900] + [None] * 9 + [200_000]
    fb = TransportFeedback.build(5, 6, 300, 65535, times)
    assert (fb.base_seq, fb.reference_time, fb.fb_count) == (65535, 1, 44)
    assert fb.deltas[:4] == [144, None, 2, -2]  # 64 ms + 36 ms; 100.4 ms rounds to +0.5 ms
    (again,) = parse_compound(bytes(fb))
    assert isinstance(again, TransportFeedback) and again == fb
    for (_seq, at), want in zip(again.arrivals(), times, strict=True):
        assert (at is None) == (want is None)
        if at is not None and want is not None:
            assert abs(at - want) <= 125
    assert again.arrivals()[0][0] == 65535 and again.arrivals()[1][0] == 0


def test_build_refuses_a_delta_beyond_16_bits_and_no_arrival() -> None:
    with pytest.raises(ValueError, match="does not fit 16 bits"):
        TransportFeedback.build(1, 2, 0, 0, [0, 9_000_000])
    with pytest.raises(ValueError, match="at least one received packet"):
        TransportFeedback.build(1, 2, 0, 0, [None, None])


_deltas = st.lists(st.none() | st.integers(-0x8000, 0x7FFF), min_size=1, max_size=600)


@given(
    st.integers(0, 0xFFFF),
    st.integers(-(1 << 23), (1 << 23) - 1),
    st.integers(0, 255),
    _deltas,
)
def test_round_trip(base: int, ref: int, count: int, deltas: list[int | None]) -> None:
    fb = TransportFeedback(0xDEAD, 0xBEEF, base, ref, count, deltas)
    data = bytes(fb)
    assert len(data) % 4 == 0
    assert parse_compound(data) == [fb]


@given(
    st.lists(st.none() | st.integers(0, 2_000_000), min_size=1, max_size=300).filter(
        lambda xs: any(x is not None for x in xs)
    )
)
def test_build_round_trip(times: list[int | None]) -> None:
    # sorted arrivals keep every delta small enough for 16 bits
    ordered = iter(sorted(t for t in times if t is not None))
    times = [None if t is None else next(ordered) for t in times]
    fb = TransportFeedback.build(1, 2, 3, 4, times)
    (again,) = parse_compound(bytes(fb))
    assert isinstance(again, TransportFeedback)
    for (_, at), want in zip(again.arrivals(), times, strict=True):
        assert (at is None) == (want is None)
        if at is not None and want is not None:
            assert abs(at - want) <= 125
