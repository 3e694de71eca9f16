"""Video payload descriptors: keyframe spotting without decoding.

Owns: the VP8 payload descriptor (RFC 7741 §4.2) and payload header (§4.3: P bit), the VP9
payload descriptor with its scalability structure (RFC 9628 §4.2, §4.2.1), and H.264 NAL unit
headers of single NAL, STAP-A and FU-A packets (RFC 6184 §5.3, §5.7.1, §5.8).
Must not import anything from zvonok outside ``zvonok.media``.

``is_keyframe`` is the hot-path entry: it never raises and answers False for anything it cannot
read. The ``*.parse`` classmethods raise ``ValueError`` on truncation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Payload = bytes | bytearray | memoryview
KeyframeDetector = Callable[[Payload], bool]

H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_NAL_PPS = 8
H264_STAP_A = 24
H264_FU_A = 28


@dataclass(slots=True)
class Vp8Descriptor:
    """RFC 7741 payload descriptor; ``size`` is its length, ``keyframe`` reads the §4.3 P bit."""

    non_reference: bool
    start_of_partition: bool
    partition_index: int
    picture_id: int | None = None
    tl0_pic_idx: int | None = None
    temporal_id: int | None = None
    layer_sync: bool = False
    key_index: int | None = None
    size: int = 1
    keyframe: bool = False

    @classmethod
    def parse(cls, payload: Payload) -> Vp8Descriptor:
        n = len(payload)
        if n < 1:
            raise ValueError("VP8 payload is empty")
        b = payload[0]
        d = cls(bool(b & 0x20), bool(b & 0x10), b & 0x07)
        pos = 1
        if b & 0x80:
            if n < 2:
                raise ValueError("VP8 extended control bits are truncated")
            x = payload[1]
            pos = 2
            if x & 0x80:  # I: picture id, 7 or 15 bits (M)
                if pos >= n or (payload[pos] & 0x80 and pos + 1 >= n):
                    raise ValueError("VP8 picture id is truncated")
                if payload[pos] & 0x80:
                    d.picture_id = (payload[pos] & 0x7F) << 8 | payload[pos + 1]
                    pos += 2
                else:
                    d.picture_id = payload[pos]
                    pos += 1
            if x & 0x40:  # L: TL0PICIDX
                if pos >= n:
                    raise ValueError("VP8 TL0PICIDX is truncated")
                d.tl0_pic_idx = payload[pos]
                pos += 1
            if x & 0x30:  # T or K: TID/Y/KEYIDX
                if pos >= n:
                    raise ValueError("VP8 TID/KEYIDX byte is truncated")
                t = payload[pos]
                if x & 0x20:
                    d.temporal_id, d.layer_sync = t >> 6, bool(t & 0x20)
                if x & 0x10:
                    d.key_index = t & 0x1F
                pos += 1
        d.size = pos
        if d.start_of_partition and d.partition_index == 0:
            if pos >= n:
                raise ValueError("VP8 payload header is missing")
            d.keyframe = not payload[pos] & 0x01
        return d


def vp8_is_keyframe(payload: Payload) -> bool:
    """Fast path of ``Vp8Descriptor.parse(payload).keyframe``; False when unreadable."""
    n = len(payload)
    if n < 2 or payload[0] & 0x17 != 0x10:  # S=1 and PID=0
        return False
    pos = 1
    if payload[0] & 0x80:
        x = payload[1]
        pos = 2
        if x & 0x80:
            pos += 2 if n > 2 and payload[2] & 0x80 else 1
        if x & 0x40:
            pos += 1
        if x & 0x30:
            pos += 1
    return pos < n and not payload[pos] & 0x01


@dataclass(slots=True)
class Vp9ScalabilityStructure:
    """RFC 9628 §4.2.1: spatial layer count, resolutions and the picture group description."""

    spatial_layers: int
    resolutions: list[tuple[int, int]] = field(default_factory=list)
    pictures: list[tuple[int, bool, list[int]]] = field(default_factory=list)  # (tid, u, diffs)

    @classmethod
    def parse(cls, payload: Payload, pos: int) -> tuple[Vp9ScalabilityStructure, int]:
        n = len(payload)
        if pos >= n:
            raise ValueError("VP9 scalability structure is truncated")
        b = payload[pos]
        ss = cls((b >> 5) + 1)
        pos += 1
        if b & 0x10:  # Y: resolutions
            if pos + 4 * ss.spatial_layers > n:
                raise ValueError("VP9 scalability structure resolutions are truncated")
            for _ in range(ss.spatial_layers):
                width = payload[pos] << 8 | payload[pos + 1]
                ss.resolutions.append((width, payload[pos + 2] << 8 | payload[pos + 3]))
                pos += 4
        if b & 0x08:  # G: picture group description
            if pos >= n:
                raise ValueError("VP9 scalability structure N_G is truncated")
            groups = payload[pos]
            pos += 1
            for _ in range(groups):
                if pos >= n or pos + 1 + (payload[pos] >> 2 & 3) > n:
                    raise ValueError("VP9 picture group description is truncated")
                g = payload[pos]
                diffs = [payload[pos + 1 + i] for i in range(g >> 2 & 3)]
                ss.pictures.append((g >> 5, bool(g & 0x10), diffs))
                pos += 1 + len(diffs)
        return ss, pos


@dataclass(slots=True)
class Vp9Descriptor:
    """RFC 9628 §4.2 payload descriptor; ``keyframe``: P=0, B=1 on spatial layer 0."""

    inter_picture: bool
    flexible: bool
    begin_of_frame: bool
    end_of_frame: bool
    not_reference: bool = False
    picture_id: int | None = None
    temporal_id: int | None = None
    switching_up: bool = False
    spatial_id: int = 0
    inter_layer_dependency: bool = False
    tl0_pic_idx: int | None = None
    reference_diffs: list[int] = field(default_factory=list)
    scalability: Vp9ScalabilityStructure | None = None
    size: int = 1

    @property
    def keyframe(self) -> bool:
        return not self.inter_picture and self.begin_of_frame and self.spatial_id == 0

    @classmethod
    def parse(cls, payload: Payload) -> Vp9Descriptor:
        n = len(payload)
        if n < 1:
            raise ValueError("VP9 payload is empty")
        b = payload[0]
        d = cls(bool(b & 0x40), bool(b & 0x10), bool(b & 0x08), bool(b & 0x04))
        d.not_reference = bool(b & 0x01)
        pos = 1
        if b & 0x80:  # I: picture id
            if pos >= n or (payload[pos] & 0x80 and pos + 1 >= n):
                raise ValueError("VP9 picture id is truncated")
            if payload[pos] & 0x80:
                d.picture_id = (payload[pos] & 0x7F) << 8 | payload[pos + 1]
                pos += 2
            else:
                d.picture_id = payload[pos]
                pos += 1
        if b & 0x20:  # L: layer indices
            if pos >= n or (not d.flexible and pos + 1 >= n):
                raise ValueError("VP9 layer indices are truncated")
            t = payload[pos]
            d.temporal_id, d.switching_up = t >> 5, bool(t & 0x10)
            d.spatial_id, d.inter_layer_dependency = t >> 1 & 7, bool(t & 1)
            pos += 1
            if not d.flexible:
                d.tl0_pic_idx = payload[pos]
                pos += 1
        if d.flexible and d.inter_picture:  # P_DIFF list, N bit chains up to 3
            while True:
                if pos >= n or len(d.reference_diffs) == 3:
                    raise ValueError("VP9 reference indices are truncated")
                d.reference_diffs.append(payload[pos] >> 1)
                pos += 1
                if not payload[pos - 1] & 1:
                    break
        if b & 0x02:  # V: scalability structure
            d.scalability, pos = Vp9ScalabilityStructure.parse(payload, pos)
        d.size = pos
        return d


def vp9_is_keyframe(payload: Payload) -> bool:
    """P=0 and B=1, on spatial layer 0 when layer indices are present; False when unreadable."""
    n = len(payload)
    if not n or payload[0] & 0x48 != 0x08:
        return False
    b, pos = payload[0], 1
    if b & 0x80:  # I: a picture id of one or two bytes, which must be there
        if n < 2 or (payload[1] & 0x80 and n < 3):
            return False
        pos += 2 if payload[1] & 0x80 else 1
    if not b & 0x20:
        return True
    # L: the layer indices, and TL0PICIDX after them in non-flexible mode
    if pos >= n or (not b & 0x10 and pos + 1 >= n):
        return False
    return payload[pos] >> 1 & 7 == 0


@dataclass(slots=True)
class H264Payload:
    """RFC 6184 packet: its packet NAL type and the NAL unit types it (starts to) carry."""

    packet_type: int
    nal_types: list[int] = field(default_factory=list)
    fragment_start: bool = False
    fragment_end: bool = False

    @property
    def keyframe(self) -> bool:
        return any(t in (H264_NAL_IDR, H264_NAL_SPS) for t in self.nal_types)

    @classmethod
    def parse(cls, payload: Payload) -> H264Payload:
        n = len(payload)
        if n < 1:
            raise ValueError("H.264 payload is empty")
        packet_type = payload[0] & 0x1F
        p = cls(packet_type)
        if packet_type == H264_STAP_A:
            pos = 1
            while pos < n:
                if pos + 2 > n:
                    raise ValueError("H.264 STAP-A NAL size is truncated")
                size = payload[pos] << 8 | payload[pos + 1]
                if size == 0 or pos + 2 + size > n:
                    raise ValueError("H.264 STAP-A NAL unit overruns the packet")
                p.nal_types.append(payload[pos + 2] & 0x1F)
                pos += 2 + size
        elif packet_type == H264_FU_A:
            if n < 2:
                raise ValueError("H.264 FU-A header is truncated")
            p.fragment_start, p.fragment_end = bool(payload[1] & 0x80), bool(payload[1] & 0x40)
            if p.fragment_start:
                p.nal_types.append(payload[1] & 0x1F)
        elif 1 <= packet_type <= 23:
            p.nal_types.append(packet_type)
        return p


def h264_is_keyframe(payload: Payload) -> bool:
    """An IDR slice or an SPS (single NAL, inside STAP-A, or at an FU-A start)."""
    try:
        return H264Payload.parse(payload).keyframe
    except ValueError:
        return False


def is_keyframe(mime: str, payload: Payload) -> bool:
    """Whether this RTP payload starts a keyframe of codec ``mime`` ("VP8", "video/H264"...)."""
    name = mime.rpartition("/")[2].lower()
    if name == "vp8":
        return vp8_is_keyframe(payload)
    if name == "vp9":
        return vp9_is_keyframe(payload)
    if name == "h264":
        return h264_is_keyframe(payload)
    return False


def keyframe_detector(mime: str) -> KeyframeDetector | None:
    """The fast per-codec keyframe function for ``mime``, or None (audio, unknown codecs)."""
    name = mime.rpartition("/")[2].lower()
    return _DETECTORS.get(name)


_DETECTORS: dict[str, KeyframeDetector] = {
    "vp8": vp8_is_keyframe,
    "vp9": vp9_is_keyframe,
    "h264": h264_is_keyframe,
}
