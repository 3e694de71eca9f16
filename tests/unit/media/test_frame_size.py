"""Picture size of a keyframe from its first RTP payload: VP8 key frame header, H.264 SPS
(single NAL and STAP-A, baseline and High profile, with cropping), VP9 scalability structure.

Byte strings come from real encoders: the aiortc fixtures (libvpx / OpenH264 at 640x480), and
keyframes of a 320x180 frame encoded with aiortc's VP8 (libvpx) and H.264 (libx264 via PyAV)
encoders, plus a libx264 High-profile 1920x1080 SPS (1088 coded rows cropped to 1080)."""

from __future__ import annotations

from pathlib import Path

from zvonok.media.packets.codecs import (
    frame_size_reader,
    h264_frame_size,
    h264_sps_frame_size,
    vp8_frame_size,
    vp9_frame_size,
)
from zvonok.media.packets.rtp import RtpPacket

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rtp"

#: aiortc VP8 encoder, 320x180 keyframe: descriptor 90 80 82 28, frame tag f0 4e 00, start code.
VP8_320 = bytes.fromhex("90808228f04e009d012a4001b400390900031c2216162266")
#: aiortc H.264 encoder (libx264, constrained baseline), 320x180: STAP-A with SPS, PPS...
H264_320 = bytes.fromhex(
    "7800186742c01fd901419f9e10000003001000000303c8f1832480000468cb8cb2026c0605ffff68dc45"
    "e9bde6d948b7962cd820d923eeef78323634"
)
#: libx264 High profile 1920x1080 SPS (scaling-matrix flag, cropping of 8 rows).
SPS_HIGH_1080 = bytes.fromhex("67640028acb200f0044fcb08000003000800000301e478c1924000")


def payload(name: str) -> bytes:
    return RtpPacket.parse((FIXTURES / name).read_bytes()).payload


def test_vp8_keyframes() -> None:
    assert vp8_frame_size(payload("aiortc_vp8_keyframe.bin")) == (640, 480)
    assert vp8_frame_size(VP8_320) == (320, 180)
    assert vp8_frame_size(payload("aiortc_vp8_delta.bin")) is None


def test_vp8_malformed() -> None:
    assert vp8_frame_size(VP8_320[:12]) is None  # truncated before the height
    assert vp8_frame_size(VP8_320[:7] + b"\x9d\x01\x2b" + VP8_320[10:]) is None  # start code
    assert vp8_frame_size(b"") is None
    zero = VP8_320[:10] + bytes(4) + VP8_320[14:]
    assert vp8_frame_size(zero) is None


def test_h264_stap_a_and_single_sps() -> None:
    assert h264_frame_size(payload("aiortc_h264_keyframe.bin")) == (640, 480)
    assert h264_frame_size(H264_320) == (320, 180)  # 12 macroblock rows cropped to 180
    assert h264_frame_size(SPS_HIGH_1080) == (1920, 1080)
    assert h264_sps_frame_size(SPS_HIGH_1080) == (1920, 1080)
    assert h264_frame_size(payload("aiortc_h264_delta.bin")) is None


def test_h264_malformed() -> None:
    assert h264_frame_size(SPS_HIGH_1080[:6]) is None  # truncated SPS
    assert h264_frame_size(H264_320[:5]) is None  # STAP-A NAL overruns the packet
    assert h264_frame_size(b"") is None
    assert h264_frame_size(b"\x67" + b"\x00" * 8) is None  # exp-Golomb code too long


def test_vp9_scalability_structure() -> None:
    # I=0 P=0 L=0 F=0 B=1 E=1 V=1; SS: N_S=1 (two layers), Y=1, G=0; 320x180 and 640x360
    ss = bytes.fromhex("0e") + bytes.fromhex("30") + bytes.fromhex("014000b4 02800168")
    assert vp9_frame_size(ss) == (640, 360)
    assert vp9_frame_size(bytes.fromhex("0c")) is None  # no scalability structure
    assert vp9_frame_size(ss[:4]) is None


def test_reader_by_mime() -> None:
    assert frame_size_reader("video/VP8") is vp8_frame_size
    assert frame_size_reader("H264") is h264_frame_size
    assert frame_size_reader("opus") is None
