"""``read_extension``: one header-extension value read from raw RTP (RFC 8285 one-byte and
two-byte forms), on captured packets, their malformed twins, and against the full parser."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.packets.rtp import RtpPacket, build_extension_block, read_extension

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rtp"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_one_byte_form_on_a_captured_packet() -> None:
    data = load("aiortc_opus.bin")  # sdes:mid "0" (id 1), ssrc-audio-level (id 2)
    assert read_extension(data, 1) == b"0"
    assert read_extension(data, 2) == b"\x7f"
    assert read_extension(data, 3) is None
    assert read_extension(data, 15) is None and read_extension(data, 0) is None


def test_two_byte_form_with_csrcs_and_padding() -> None:
    data = load("rfc_rtp_csrc_twobyte_padding.bin")  # id 20 "abc", id 1 empty
    assert read_extension(data, 20) == b"abc"
    assert read_extension(data, 1) == b""
    assert read_extension(data, 2) is None


def test_no_extension_block() -> None:
    data = load("aiortc_h264_delta.bin")
    assert not data[0] & 0x10 or read_extension(data, 9) is None
    assert read_extension(b"\x80\x60" + bytes(10), 1) is None


def test_malformed_twins_answer_none() -> None:
    assert read_extension(load("aiortc_vp8_delta_truncated.bin"), 1) is None
    assert read_extension(load("aiortc_opus_truncated.bin"), 1) is None
    assert read_extension(load("rfc_rtp_csrc_twobyte_padding_truncated.bin"), 20) is None
    element_overrun = bytes.fromhex("90000001 00000002 00000003 bede0001 3f000000")
    assert read_extension(element_overrun, 3) is None
    two_byte_overrun = bytes.fromhex("90000001 00000002 00000003 10000001 0a09aabb")
    assert read_extension(two_byte_overrun, 10) is None
    # id 15 stops the one-byte block (RFC 8285 §4.2): nothing after it is read
    stop = bytes.fromhex("90000001 00000002 00000003 bede0001 f0 10 61 00")
    assert read_extension(stop, 1) is None


def test_rid_values_as_chrome_sends_them() -> None:
    block = build_extension_block([(4, b"0"), (10, b"h"), (3, b"\x00\x01")])
    packet = bytes.fromhex("90600001 00000002 11223344") + block + b"\x10\x00"
    assert read_extension(packet, 10) == b"h" and read_extension(packet, 4) == b"0"
    long_rid = build_extension_block([(200, b"layer-one")])  # two-byte form
    packet = bytes.fromhex("90600001 00000002 11223344") + long_rid
    assert read_extension(packet, 200) == b"layer-one"


_ELEMENT = st.tuples(st.integers(1, 255), st.binary(min_size=1, max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.lists(_ELEMENT, max_size=5, unique_by=lambda e: e[0]), st.integers(1, 255))
def test_agrees_with_the_parser(elements: list[tuple[int, bytes]], wanted: int) -> None:
    block = build_extension_block(elements)
    data = bytes.fromhex("90600001 00000002 00000003") + block + b"payload"
    if not block:
        data = bytes((0x80,)) + data[1:]
    parsed = dict(RtpPacket.parse(data).extensions)
    assert read_extension(data, wanted) == parsed.get(wanted)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.integers(1, 255))
def test_never_raises(data: bytes, wanted: int) -> None:
    value = read_extension(bytes((0x90,)) + data, wanted)
    assert value is None or isinstance(value, bytes)
