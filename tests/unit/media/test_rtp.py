"""RTP: captured/hand-written fixtures, raw accessors, rewrite, RTX, sequence arithmetic, fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.packets.rtp import (
    EXT_ONE_BYTE,
    EXT_TWO_BYTE,
    RtpPacket,
    build_extension_block,
    ext_id_table,
    extend_seq,
    is_rtcp,
    rewrite_rtp,
    rtp_header_size,
    rtp_marker,
    rtp_payload_bounds,
    rtp_payload_type,
    rtp_seq,
    rtp_ssrc,
    rtp_timestamp,
    seq_add,
    seq_diff,
    seq_newer,
    unwrap_rtx,
    wrap_rtx,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rtp"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_opus() -> None:
    data = load("aiortc_opus.bin")
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.sequence_number, p.timestamp) == (96, 8101, 1432574448)
    assert p.ssrc == 2223799259 and p.marker
    assert p.extension_profile == EXT_ONE_BYTE
    assert p.extensions == [(1, b"0"), (2, b"\x7f")]  # sdes:mid "0", ssrc-audio-level
    assert p.payload == bytes.fromhex("fcfffe")
    assert bytes(p) == data
    assert "sequence_number=8101" in repr(p)


def test_vp8_keyframe_and_delta() -> None:
    key = RtpPacket.parse(load("aiortc_vp8_keyframe.bin"))
    delta = RtpPacket.parse(load("aiortc_vp8_delta.bin"))
    assert (key.payload_type, key.sequence_number, key.ssrc) == (97, 25993, 3714617811)
    assert delta.sequence_number == 25994 and delta.ssrc == key.ssrc
    assert key.extensions[0] == (1, b"1") and key.extensions[1][0] == 3  # mid, abs-send-time
    assert len(key.payload) == 575 and len(delta.payload) == 56
    assert bytes(key) == load("aiortc_vp8_keyframe.bin")
    assert bytes(delta) == load("aiortc_vp8_delta.bin")


def test_h264() -> None:
    key = RtpPacket.parse(load("aiortc_h264_keyframe.bin"))
    assert (key.payload_type, key.sequence_number, key.marker) == (99, 7795, False)
    assert key.payload[0] & 0x1F == 24  # STAP-A
    assert bytes(key) == load("aiortc_h264_keyframe.bin")
    delta = load("aiortc_h264_delta.bin")
    assert bytes(RtpPacket.parse(delta)) == delta


def test_csrc_two_byte_extension_padding() -> None:
    data = load("rfc_rtp_csrc_twobyte_padding.bin")
    p = RtpPacket.parse(data)
    assert p.csrc == [0x11111111, 0x22222222]
    assert p.extension_profile == EXT_TWO_BYTE
    assert p.extensions == [(20, b"abc"), (1, b"")]
    assert p.payload == bytes.fromhex("deadbeef") and p.padding_size == 4
    assert bytes(p) == data
    assert rtp_payload_bounds(data) == (len(data) - 8, len(data) - 4)


def test_rtx_fixture_unwraps_to_a_nacked_packet() -> None:
    rtx = load("aiortc_vp8_rtx.bin")
    nacked = [26092, 26093, 26095, 26109]  # aiortc_nack.bin asked for these
    original = RtpPacket.parse(unwrap_rtx(rtx, 97, 3714617811))
    assert original.sequence_number in nacked
    assert (original.payload_type, original.ssrc) == (97, 3714617811)
    assert original.payload == RtpPacket.parse(rtx).payload[2:]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("aiortc_opus_truncated.bin", r"^RTP packet is too short \(11 bytes\)$"),
        ("aiortc_vp8_keyframe_invalid.bin", r"^RTP packet has version 1, expected 2$"),
        ("aiortc_vp8_delta_truncated.bin", r"^RTP header extension overruns the packet$"),
        ("aiortc_h264_delta_invalid.bin", r"^RTP padding length overruns the packet$"),
        (
            "rfc_rtp_csrc_twobyte_padding_truncated.bin",
            r"^RTP CSRC list \(2 entries\) overruns the packet$",
        ),
    ],
)
def test_invalid_twins(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpPacket.parse(load(name))


def test_rtx_truncated_twin() -> None:
    with pytest.raises(ValueError, match=r"^RTX packet has no original sequence number$"):
        unwrap_rtx(load("aiortc_vp8_rtx_truncated.bin"), 97, 1)


def test_rtcp_is_not_rtp() -> None:
    with pytest.raises(ValueError, match=r"^packet type 200 is RTCP, not RTP$"):
        RtpPacket.parse(load("aiortc_sr.bin"))


def test_element_overrun() -> None:
    data = bytes.fromhex("90000001 00000002 00000003 bede0001 3f000000")  # id 3, 16 bytes
    with pytest.raises(ValueError, match=r"^RTP header extension element overruns its block$"):
        RtpPacket.parse(data)


def test_raw_accessors() -> None:
    data = load("aiortc_vp8_keyframe.bin")
    p = RtpPacket.parse(data)
    assert rtp_ssrc(data) == p.ssrc and rtp_seq(data) == p.sequence_number
    assert rtp_timestamp(data) == p.timestamp and rtp_payload_type(data) == 97
    assert rtp_marker(data) is True
    assert rtp_header_size(data) == len(data) - len(p.payload)
    assert not is_rtcp(data) and is_rtcp(load("aiortc_sr.bin")) and not is_rtcp(b"\x80")


def test_rewrite_remaps_and_removes_extensions() -> None:
    data = load("aiortc_vp8_keyframe.bin")
    table = ext_id_table({3: 2})  # keep abs-send-time as id 2, drop mid
    out = rewrite_rtp(data, 0xCAFEBABE, 100, 7, 0x01020304, table)
    p, original = RtpPacket.parse(out), RtpPacket.parse(data)
    assert (p.ssrc, p.payload_type, p.sequence_number, p.timestamp) == (
        0xCAFEBABE,
        100,
        7,
        0x01020304,
    )
    assert p.marker is True
    assert p.extensions == [(2, original.extensions[1][1])]
    assert p.payload == original.payload
    assert len(out) % 4 == len(data) % 4  # the block stays 32-bit aligned


def test_rewrite_in_place_when_nothing_removed() -> None:
    data = load("aiortc_opus.bin")
    out = rewrite_rtp(data, 1, 111, 2, 3, ext_id_table({1: 4, 2: 1}))
    assert len(out) == len(data)
    assert RtpPacket.parse(out).extensions == [(4, b"0"), (1, b"\x7f")]


def test_rewrite_removing_every_extension_clears_x() -> None:
    data = load("aiortc_opus.bin")
    out = rewrite_rtp(data, 1, 111, 2, 3, ext_id_table({}))
    assert not out[0] & 0x10 and len(out) == 12 + 3
    p = RtpPacket.parse(out)
    assert p.extension_profile is None and p.payload == bytes.fromhex("fcfffe")


def test_rewrite_to_large_id_switches_to_two_byte_form() -> None:
    data = load("aiortc_opus.bin")
    out = rewrite_rtp(data, 1, 111, 2, 3, ext_id_table({1: 1, 2: 20}))
    p = RtpPacket.parse(out)
    assert p.extension_profile == EXT_TWO_BYTE
    assert p.extensions == [(1, b"0"), (20, b"\x7f")]


def test_rewrite_two_byte_and_csrc() -> None:
    data = load("rfc_rtp_csrc_twobyte_padding.bin")
    p = RtpPacket.parse(rewrite_rtp(data, 5, 96, 9, 10, ext_id_table({20: 21, 1: 2})))
    assert p.extensions == [(21, b"abc"), (2, b"")] and p.csrc == [0x11111111, 0x22222222]
    p = RtpPacket.parse(rewrite_rtp(data, 5, 96, 9, 10, ext_id_table({20: 3})))
    assert p.extension_profile == EXT_ONE_BYTE and p.extensions == [(3, b"abc")]
    assert p.padding_size == 4 and p.payload == bytes.fromhex("deadbeef")


def test_rewrite_keeps_the_original_untouched() -> None:
    data = load("aiortc_vp8_delta.bin")
    copy = bytes(data)
    rewrite_rtp(data, 1, 2, 3, 4, ext_id_table({1: 5}))
    assert data == copy


def test_ext_id_table_rejects_bad_ids() -> None:
    with pytest.raises(ValueError, match=r"^header extension id mapping 0->1 is out of 1\.\.255$"):
        ext_id_table({0: 1})


def test_build_extension_block() -> None:
    assert build_extension_block([]) == b""
    assert build_extension_block([(1, b"ab")]) == bytes.fromhex("bede0001 11616200")


def test_wrap_and_unwrap_rtx() -> None:
    data = load("aiortc_vp8_delta.bin")
    rtx = wrap_rtx(data, 0x0BADF00D, 98, 500)
    p = RtpPacket.parse(rtx)
    assert (p.ssrc, p.payload_type, p.sequence_number) == (0x0BADF00D, 98, 500)
    assert p.payload[:2] == (25994).to_bytes(2, "big") and p.marker
    assert bytes(unwrap_rtx(rtx, 97, 3714617811)) == data


def test_wrap_rtx_drops_padding() -> None:
    data = load("rfc_rtp_csrc_twobyte_padding.bin")
    p = RtpPacket.parse(wrap_rtx(data, 1, 2, 3))
    assert p.padding_size == 0 and p.payload == bytes.fromhex("0102 deadbeef")


def test_sequence_arithmetic() -> None:
    assert seq_add(65535, 1) == 0 and seq_add(0, -1) == 65535
    assert seq_diff(0, 65535) == 1 and seq_diff(65535, 0) == -1 and seq_diff(5, 5) == 0
    assert seq_newer(1, 65535) and not seq_newer(65535, 1) and not seq_newer(7, 7)
    assert extend_seq(2, 65534) == 65538
    assert extend_seq(65534, 65538) == 65534
    assert extend_seq(10, 5) == 10
    assert extend_seq(65535, 3) == 65535  # before the first wrap there are no negative cycles


def _rtp_like() -> st.SearchStrategy[bytes]:
    head = st.sampled_from([0x80, 0x90, 0xA0, 0xB0, 0x91, 0xB3])
    return st.builds(lambda h, rest: bytes((h,)) + rest, head, st.binary(min_size=0, max_size=60))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=80), _rtp_like()))
def test_fuzz_parse(data: bytes) -> None:
    try:
        p = RtpPacket.parse(data)
    except ValueError:
        return
    # what parses re-serialises to a packet that parses back equal (and is then stable)
    again = bytes(p)
    assert RtpPacket.parse(again) == p
    assert bytes(RtpPacket.parse(again)) == again
    # the raw accessors the forwarding path uses agree with the parser
    start, end = rtp_payload_bounds(data)
    assert data[start:end] == p.payload and len(data) - end == p.padding_size
    assert (rtp_seq(data), rtp_timestamp(data), rtp_ssrc(data)) == (
        p.sequence_number,
        p.timestamp,
        p.ssrc,
    )
    assert (rtp_payload_type(data), rtp_marker(data)) == (p.payload_type, p.marker)


@settings(max_examples=300, deadline=None)
@given(_rtp_like(), st.dictionaries(st.integers(1, 255), st.integers(1, 255), max_size=4))
def test_fuzz_rewrite_and_rtx(data: bytes, mapping: dict[int, int]) -> None:
    table = ext_id_table(mapping)
    try:
        p = RtpPacket.parse(data)
    except ValueError:
        p = None
    try:
        out = rewrite_rtp(data, 1, 2, 3, 4, table)
    except ValueError:
        assert p is None, "rewrite refused a packet the parser accepts"
    else:
        if p is not None:
            # new SSRC, payload type, seq and timestamp; marker, CSRCs, payload and padding kept;
            # extensions renumbered, the unmapped ones removed
            q = RtpPacket.parse(out)
            assert (q.ssrc, q.payload_type, q.sequence_number, q.timestamp) == (1, 2, 3, 4)
            assert (q.marker, q.csrc, q.payload) == (p.marker, p.csrc, p.payload)
            assert q.padding_size == p.padding_size
            if p.extension_profile == EXT_ONE_BYTE or (p.extension_profile or 0) >> 4 == 0x100:
                assert q.extensions == [(mapping[e], v) for e, v in p.extensions if e in mapping]
            elif p.extension_profile is not None:  # a profile we do not read passes untouched
                assert q.extension_data == p.extension_data
    try:
        rtx = wrap_rtx(data, 1, 2, 3)
    except ValueError:
        return
    # RFC 4588 §4: the RTX packet carries the original sequence number, and unwrapping it gives
    # back the original packet (its padding dropped) under the original payload type and SSRC
    original = unwrap_rtx(rtx, rtp_payload_type(data), rtp_ssrc(data))
    assert rtp_seq(rtx) == 3 and rtp_ssrc(rtx) == 1 and rtp_payload_type(rtx) == 2
    start, end = rtp_payload_bounds(data)
    header = bytearray(data[:start])
    header[0] &= 0xDF
    assert original == header + data[start:end]


_ELEMENT = st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_ELEMENT, max_size=6),
    st.dictionaries(st.integers(1, 14), st.integers(1, 30), max_size=14),
    st.binary(max_size=20),
)
def test_rewrite_matches_a_reference(
    elements: list[tuple[int, bytes]], mapping: dict[int, int], payload: bytes
) -> None:
    data = bytes(RtpPacket(96, 1, 2, 3, extension_profile=EXT_ONE_BYTE, extensions=elements,
                           payload=payload))  # fmt: skip
    out = rewrite_rtp(data, 7, 100, 8, 9, ext_id_table(mapping))
    expected = [(mapping[e], v) for e, v in elements if e in mapping]
    p = RtpPacket.parse(out)
    assert p.extensions == expected and p.payload == payload
    if elements:  # (an empty block from the publisher passes as it is)
        assert (p.extension_profile is None) == (not expected)
    assert (len(out) - len(payload)) % 4 == 0
