"""Payload descriptors: VP8/H.264 from aiortc captures, VP9 from RFC 9628 layouts, fuzz."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.packets.codecs import (
    H264Payload,
    Vp8Descriptor,
    Vp9Descriptor,
    h264_is_keyframe,
    is_keyframe,
    keyframe_detector,
    vp8_is_keyframe,
    vp9_is_keyframe,
)
from zvonok.media.packets.rtp import RtpPacket

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rtp"


def payload(name: str) -> bytes:
    return RtpPacket.parse((FIXTURES / name).read_bytes()).payload


def test_vp8_keyframe() -> None:
    d = Vp8Descriptor.parse(payload("aiortc_vp8_keyframe.bin"))
    assert d.start_of_partition and d.partition_index == 0 and not d.non_reference
    assert d.picture_id == 30138 and d.size == 4 and d.keyframe
    assert d.tl0_pic_idx is None and d.temporal_id is None and d.key_index is None
    assert is_keyframe("VP8", payload("aiortc_vp8_keyframe.bin"))
    assert is_keyframe("video/vp8", memoryview(payload("aiortc_vp8_keyframe.bin")))


def test_vp8_delta() -> None:
    d = Vp8Descriptor.parse(payload("aiortc_vp8_delta.bin"))
    assert d.picture_id == 30139 and not d.keyframe
    assert not is_keyframe("VP8", payload("aiortc_vp8_delta.bin"))


def test_vp8_all_extension_fields() -> None:
    # X=1 S=1 PID=0 | I L T K | M=0 picture id 0x15 | TL0PICIDX 9 | TID 2 Y 1 KEYIDX 3 | P=0
    data = bytes.fromhex("90 f0 15 09 a3 10")
    d = Vp8Descriptor.parse(data)
    assert (d.picture_id, d.tl0_pic_idx, d.temporal_id, d.layer_sync, d.key_index) == (
        0x15, 9, 2, True, 3,
    )  # fmt: skip
    assert d.size == 5 and d.keyframe and vp8_is_keyframe(data)
    assert not vp8_is_keyframe(bytes.fromhex("11 10"))  # partition 1
    assert not Vp8Descriptor.parse(bytes.fromhex("00 00")).keyframe  # not a partition start


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("", r"^VP8 payload is empty$"),
        ("90", r"^VP8 extended control bits are truncated$"),
        ("90 80 80", r"^VP8 picture id is truncated$"),
        ("90 40", r"^VP8 TL0PICIDX is truncated$"),
        ("90 20", r"^VP8 TID/KEYIDX byte is truncated$"),
        ("10", r"^VP8 payload header is missing$"),
    ],
)
def test_vp8_truncated(hex_data: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Vp8Descriptor.parse(bytes.fromhex(hex_data))


def test_vp9_keyframe_with_scalability_structure() -> None:
    d = Vp9Descriptor.parse(payload("rfc_vp9_keyframe.bin"))
    assert d.keyframe and not d.flexible and d.begin_of_frame and not d.end_of_frame
    assert (d.picture_id, d.temporal_id, d.spatial_id, d.tl0_pic_idx) == (0x0123, 0, 0, 5)
    assert d.scalability is not None
    assert d.scalability.spatial_layers == 1 and d.scalability.resolutions == [(640, 360)]
    assert d.scalability.pictures == [(0, False, [1])]
    assert d.size == 13
    assert is_keyframe("VP9", payload("rfc_vp9_keyframe.bin"))


def test_vp9_delta_flexible() -> None:
    d = Vp9Descriptor.parse(payload("rfc_vp9_delta.bin"))
    assert d.inter_picture and d.flexible and d.end_of_frame and not d.keyframe
    assert d.reference_diffs == [1] and d.tl0_pic_idx is None and d.size == 5
    assert not is_keyframe("VP9", payload("rfc_vp9_delta.bin"))


def test_vp9_upper_spatial_layer_is_not_a_keyframe() -> None:
    data = bytes.fromhex("a8 81 23 02 05")  # I L B, SID 1
    assert not Vp9Descriptor.parse(data).keyframe and not vp9_is_keyframe(data)
    assert vp9_is_keyframe(bytes.fromhex("08"))  # B only: one layer, no indices


def test_vp9_truncated_twins() -> None:
    raw = (FIXTURES / "rfc_vp9_keyframe_truncated.bin").read_bytes()
    with pytest.raises(ValueError, match=r"^VP9 scalability structure resolutions are truncated$"):
        Vp9Descriptor.parse(raw[12:])
    raw = (FIXTURES / "rfc_vp9_delta_truncated.bin").read_bytes()
    with pytest.raises(ValueError, match=r"^VP9 reference indices are truncated$"):
        Vp9Descriptor.parse(raw[12:])


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("", r"^VP9 payload is empty$"),
        ("80", r"^VP9 picture id is truncated$"),
        ("20", r"^VP9 layer indices are truncated$"),
        ("02", r"^VP9 scalability structure is truncated$"),
        ("02 08", r"^VP9 scalability structure N_G is truncated$"),
        ("02 08 01 0c 01", r"^VP9 picture group description is truncated$"),
        ("50 03 03 03", r"^VP9 lists more than 3 reference indices$"),
        ("50 03 03", r"^VP9 reference indices are truncated$"),
    ],
)
def test_vp9_truncated(hex_data: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Vp9Descriptor.parse(bytes.fromhex(hex_data))


def test_h264_stap_a() -> None:
    key = H264Payload.parse(payload("aiortc_h264_keyframe.bin"))
    assert key.packet_type == 24 and key.nal_types == [7, 8, 6, 5] and key.keyframe
    delta = H264Payload.parse(payload("aiortc_h264_delta.bin"))
    assert delta.nal_types == [1, 1] and not delta.keyframe
    assert is_keyframe("H264", payload("aiortc_h264_keyframe.bin"))
    assert not is_keyframe("H264", payload("aiortc_h264_delta.bin"))


def test_h264_fu_a_and_single() -> None:
    start = H264Payload.parse(bytes.fromhex("7c 85 88"))
    assert start.fragment_start and start.nal_types == [5] and start.keyframe
    middle = H264Payload.parse(bytes.fromhex("7c 05 88"))
    assert not middle.fragment_start and middle.nal_types == [] and not middle.keyframe
    assert H264Payload.parse(bytes.fromhex("7c 45")).fragment_end
    assert h264_is_keyframe(bytes.fromhex("67 42")) and not h264_is_keyframe(bytes.fromhex("41"))
    assert H264Payload.parse(bytes.fromhex("19 00")).nal_types == []  # STAP-B: not read


def test_h264_truncated_twin() -> None:
    raw = (FIXTURES / "aiortc_h264_keyframe_truncated.bin").read_bytes()
    with pytest.raises(ValueError, match=r"^H.264 STAP-A NAL unit overruns the packet$"):
        H264Payload.parse(RtpPacket.parse(raw).payload)
    assert not is_keyframe("H264", RtpPacket.parse(raw).payload)


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("", r"^H.264 payload is empty$"),
        ("78 00", r"^H.264 STAP-A NAL size is truncated$"),
        ("7c", r"^H.264 FU-A header is truncated$"),
    ],
)
def test_h264_truncated(hex_data: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        H264Payload.parse(bytes.fromhex(hex_data))


def test_unknown_codecs() -> None:
    assert not is_keyframe("opus", b"\x00\x00")
    assert keyframe_detector("opus") is None
    assert keyframe_detector("video/VP8") is vp8_is_keyframe


def _vp9_head_unreadable(data: bytes) -> bool:
    """The VP9 descriptor is unreadable without its scalability structure (V bit cleared)."""
    try:
        Vp9Descriptor.parse(bytes((data[0] & 0xFD,)) + data[1:] if data else data)
    except ValueError:
        return True
    return False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_fuzz_descriptors(data: bytes) -> None:
    parsers: dict[str, Callable[[bytes], Vp8Descriptor | Vp9Descriptor | H264Payload]] = {
        "VP8": Vp8Descriptor.parse, "VP9": Vp9Descriptor.parse, "H264": H264Payload.parse,
    }  # fmt: skip
    for mime, parse in parsers.items():
        try:
            parsed = parse(data)
        except ValueError:
            # the hot path never raises and calls what it cannot read no keyframe; for VP9 it
            # does not read the scalability structure (RFC 9628 §4.2.1), so only a truncated
            # part before it makes the answer False
            if mime != "VP9" or _vp9_head_unreadable(data):
                assert is_keyframe(mime, data) is False
            continue
        # the hot path agrees with the parser, and a descriptor lies inside the payload
        assert is_keyframe(mime, data) is parsed.keyframe
        assert is_keyframe(f"video/{mime.lower()}", data) is parsed.keyframe
        if not isinstance(parsed, H264Payload):
            assert 1 <= parsed.size <= len(data)
        else:
            assert parsed.packet_type == data[0] & 0x1F


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_fast_paths_agree_with_parsers(data: bytes) -> None:
    try:
        expected = Vp8Descriptor.parse(data).keyframe
    except ValueError:
        expected = None
    if expected is not None:
        assert vp8_is_keyframe(data) == expected
    try:
        expected = Vp9Descriptor.parse(data).keyframe
    except ValueError:
        expected = None
    if expected is not None:
        assert vp9_is_keyframe(data) == expected
