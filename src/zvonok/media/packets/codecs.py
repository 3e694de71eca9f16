"""Video payload descriptors: keyframe spotting without decoding.

Owns: the VP8 payload descriptor (RFC 7741 §4.2: parse, serialize, the temporal layer of a
packet, where PictureID/TL0PICIDX/KEYIDX sit and their rewriting) and payload header (§4.3: P
bit), the VP9 payload descriptor with its scalability structure (RFC 9628 §4.2, §4.2.1), and
H.264 NAL unit headers of single NAL, STAP-A and FU-A packets (RFC 6184 §5.3, §5.7.1, §5.8);
the picture size of a keyframe: the VP8 key frame header (RFC 6386 §9.1: frame tag, start code,
14-bit width and height), the H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1, exp-Golomb
fields, frame cropping) and the VP9 scalability structure's resolutions (RFC 9628 §4.2.1).
Must not import anything from zvonok outside ``zvonok.media``.

``is_keyframe`` is the hot-path entry: it never raises and answers False for anything it cannot
read. The ``*.parse`` classmethods raise ``ValueError`` on truncation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Payload = bytes | bytearray | memoryview
KeyframeDetector = Callable[[Payload], bool]
FrameSizeReader = Callable[[Payload], "tuple[int, int] | None"]

H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_NAL_PPS = 8
H264_STAP_A = 24
H264_FU_A = 28


@dataclass(slots=True)
class Vp8Descriptor:
    """RFC 7741 §4.2 payload descriptor; ``size`` is its length, ``keyframe`` reads the §4.3 P
    bit. ``long_picture_id``: the picture id is sent in 15 bits (M=1), else in 7. ``temporal_id``
    (TID) and ``layer_sync`` (Y) are present when the T bit is, ``key_index`` when K is; a
    TL0PICIDX without T (L=1, T=0, which §4.2 forbids a sender) is read, not rejected: the keyframe
    detector of the hot path cannot afford to be stricter than the parser."""

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
    long_picture_id: bool = False

    def __bytes__(self) -> bytes:
        """The descriptor as RFC 7741 §4.2 lays it out (not the payload header after it)."""
        first = (0x20 if self.non_reference else 0) | (0x10 if self.start_of_partition else 0)
        first |= self.partition_index & 0x07
        x = 0
        tail = bytearray()
        if self.picture_id is not None:
            x |= 0x80
            if self.long_picture_id:
                tail += bytes((0x80 | (self.picture_id >> 8) & 0x7F, self.picture_id & 0xFF))
            else:
                tail.append(self.picture_id & 0x7F)
        if self.tl0_pic_idx is not None:
            x |= 0x40
            tail.append(self.tl0_pic_idx & 0xFF)
        if self.temporal_id is not None or self.key_index is not None:
            t = 0
            if self.temporal_id is not None:
                x |= 0x20
                t |= (self.temporal_id & 0x03) << 6 | (0x20 if self.layer_sync else 0)
            if self.key_index is not None:
                x |= 0x10
                t |= self.key_index & 0x1F
            tail.append(t)
        if not x:
            return bytes((first,))
        return bytes((first | 0x80, x)) + bytes(tail)

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
                    d.long_picture_id = True
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


def vp8_temporal_info(data: Payload, start: int = 0) -> tuple[int, bool, int] | None:
    """The temporal layer of the VP8 payload at ``data[start:]`` (an RTP packet and its payload
    offset): ``(tid, layer_sync, picture_id_pos)``; ``tid`` is -1 without a T bit,
    ``picture_id_pos`` the offset in ``data`` of the picture id (-1: none; its first byte's top
    bit is M). None when the descriptor is truncated. The hot path's reading of
    ``Vp8Descriptor.parse``: it never raises."""
    n = len(data)
    if start >= n:
        return None
    if not data[start] & 0x80:
        return (-1, False, -1)
    pos = start + 1
    if pos >= n:
        return None
    x = data[pos]
    pos += 1
    pid_pos = -1
    if x & 0x80:
        if pos >= n or (data[pos] & 0x80 and pos + 1 >= n):
            return None
        pid_pos = pos
        pos += 2 if data[pos] & 0x80 else 1
    if x & 0x40:  # L: TL0PICIDX
        if pos >= n:
            return None
        pos += 1
    if x & 0x30:  # T or K: the TID/Y/KEYIDX byte
        if pos >= n:
            return None
        if x & 0x20:
            t = data[pos]
            return (t >> 6, bool(t & 0x20), pid_pos)
    return (-1, False, pid_pos)


def shift_vp8_picture_id(data: Payload, pid_pos: int, shift: int) -> bytes:
    """A copy of ``data`` with the VP8 PictureID at ``pid_pos`` (as ``vp8_temporal_info`` found
    it) lowered by ``shift`` (raised when negative), in the field's own width (RFC 7741 §4.2):
    a 7-bit picture id modulo 128, a 15-bit one (M=1) modulo 32768."""
    out = bytearray(data)
    if out[pid_pos] & 0x80:
        pid = ((out[pid_pos] & 0x7F) << 8 | out[pid_pos + 1]) - shift
        out[pid_pos] = 0x80 | (pid >> 8) & 0x7F
        out[pid_pos + 1] = pid & 0xFF
    else:
        out[pid_pos] = (out[pid_pos] - shift) & 0x7F
    return bytes(out)


def vp8_picture_fields(data: Payload, start: int, end: int) -> tuple[int, int, int] | None:
    """Where the VP8 descriptor at ``data[start:end]`` (RFC 7741 §4.2) keeps its running
    indices: ``(picture_id_pos, tl0picidx_pos, keyidx_pos)``, each -1 when the field is absent
    (the picture id's first byte's top bit is M: 15 bits, else 7; KEYIDX is the low 5 bits of
    its byte). None when the descriptor is truncated (nothing of it is to be trusted). The
    forwarder's VP8 continuity reads and rewrites these (``forwarder.Forwarder``); the compiled
    forwarder reads the same way. Never raises."""
    if start >= end:
        return None
    if not data[start] & 0x80:
        return (-1, -1, -1)
    if start + 1 >= end:
        return None
    x = data[start + 1]
    pos = start + 2
    pid_pos = tl0_pos = key_pos = -1
    if x & 0x80:
        if pos >= end or (data[pos] & 0x80 and pos + 1 >= end):
            return None
        pid_pos = pos
        pos += 2 if data[pos] & 0x80 else 1
    if x & 0x40:
        if pos >= end:
            return None
        tl0_pos = pos
        pos += 1
    if x & 0x30:
        if pos >= end:
            return None
        if x & 0x10:
            key_pos = pos
    return (pid_pos, tl0_pos, key_pos)


def offset_vp8_indices(
    out: bytearray, fields: tuple[int, int, int], pid: int, tl0: int, keyidx: int
) -> None:
    """Raise, in place, the VP8 PictureID, TL0PICIDX and KEYIDX that ``vp8_picture_fields``
    found in ``out`` by ``pid``, ``tl0`` and ``keyidx``, each in its field's own width (a 15-bit
    picture id modulo 2^15, a 7-bit one modulo 2^7, TL0PICIDX modulo 2^8, KEYIDX modulo 2^5;
    the descriptor keeps its length). A zero offset writes nothing."""
    pid_pos, tl0_pos, key_pos = fields
    if pid_pos >= 0 and pid & 0x7FFF:
        if out[pid_pos] & 0x80:
            value = ((out[pid_pos] & 0x7F) << 8 | out[pid_pos + 1]) + pid
            out[pid_pos] = 0x80 | (value >> 8) & 0x7F
            out[pid_pos + 1] = value & 0xFF
        else:
            out[pid_pos] = (out[pid_pos] + pid) & 0x7F
    if tl0_pos >= 0 and tl0 & 0xFF:
        out[tl0_pos] = (out[tl0_pos] + tl0) & 0xFF
    if key_pos >= 0 and keyidx & 0x1F:
        b = out[key_pos]
        out[key_pos] = b & 0xE0 | (b + keyidx) & 0x1F


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
    #: The G bit: a picture group description follows (it may list no picture, N_G = 0).
    has_group: bool = False

    def __bytes__(self) -> bytes:
        out = bytearray()
        first = (self.spatial_layers - 1 & 7) << 5
        if self.resolutions:
            first |= 0x10
            for width, height in self.resolutions:
                out += bytes((width >> 8 & 0xFF, width & 0xFF, height >> 8 & 0xFF, height & 0xFF))
        if self.has_group or self.pictures:
            first |= 0x08
            out.append(len(self.pictures) & 0xFF)
            for tid, u, diffs in self.pictures:
                out.append((tid & 7) << 5 | (0x10 if u else 0) | (len(diffs) & 3) << 2)
                out += bytes(d & 0xFF for d in diffs)
        return bytes((first,)) + bytes(out)

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
            ss.has_group = True
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
    #: The Z bit: higher spatial layers of this picture do not use this frame (inter-layer).
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
    #: The picture id is sent in 15 bits (M=1), else in 7.
    long_picture_id: bool = False
    #: The L bit: layer indices are present (``temporal_id`` is then not None).
    has_layer_indices: bool = False

    @property
    def keyframe(self) -> bool:
        return not self.inter_picture and self.begin_of_frame and self.spatial_id == 0

    def __bytes__(self) -> bytes:
        """The descriptor as RFC 9628 §4.2 lays it out (the scalability structure included)."""
        b = (0x40 if self.inter_picture else 0) | (0x10 if self.flexible else 0)
        b |= (0x08 if self.begin_of_frame else 0) | (0x04 if self.end_of_frame else 0)
        b |= (0x01 if self.not_reference else 0) | (0x02 if self.scalability else 0)
        out = bytearray()
        if self.picture_id is not None:
            b |= 0x80
            if self.long_picture_id:
                out += bytes((0x80 | self.picture_id >> 8 & 0x7F, self.picture_id & 0xFF))
            else:
                out.append(self.picture_id & 0x7F)
        if self.has_layer_indices:
            b |= 0x20
            t = (self.temporal_id or 0) & 7
            out.append(
                t << 5
                | (0x10 if self.switching_up else 0)
                | (self.spatial_id & 7) << 1
                | (1 if self.inter_layer_dependency else 0)
            )
            if not self.flexible:
                out.append((self.tl0_pic_idx or 0) & 0xFF)
        if self.flexible and self.inter_picture:
            diffs = self.reference_diffs
            for i, diff in enumerate(diffs):
                out.append((diff & 0x7F) << 1 | (1 if i + 1 < len(diffs) else 0))
        if self.scalability is not None:
            out += bytes(self.scalability)
        return bytes((b,)) + bytes(out)

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
                d.long_picture_id = True
                pos += 2
            else:
                d.picture_id = payload[pos]
                pos += 1
        if b & 0x20:  # L: layer indices
            if pos >= n or (not d.flexible and pos + 1 >= n):
                raise ValueError("VP9 layer indices are truncated")
            t = payload[pos]
            d.has_layer_indices = True
            d.temporal_id, d.switching_up = t >> 5, bool(t & 0x10)
            d.spatial_id, d.inter_layer_dependency = t >> 1 & 7, bool(t & 1)
            pos += 1
            if not d.flexible:
                d.tl0_pic_idx = payload[pos]
                pos += 1
        if d.flexible and d.inter_picture:  # P_DIFF list, N bit chains up to 3
            while True:
                if len(d.reference_diffs) == 3:
                    raise ValueError("VP9 lists more than 3 reference indices")
                if pos >= n:
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


def vp9_layer_info(data: Payload, start: int = 0) -> tuple[int, int, bool, bool, bool] | None:
    """The layer of the VP9 payload at ``data[start:]`` (an RTP packet and its payload offset,
    RFC 9628 §4.2): ``(spatial_id, temporal_id, switching_up, begin, end)``; ``temporal_id`` is
    -1 and ``spatial_id`` 0 without layer indices (L=0), ``begin``/``end`` are the B and E bits
    (start and end of this spatial layer's frame). None when the descriptor is truncated. The
    hot path's reading of ``Vp9Descriptor.parse``: it never raises."""
    n = len(data)
    if start >= n:
        return None
    b = data[start]
    pos = start + 1
    if b & 0x80:  # I: a picture id of one or two bytes
        if pos >= n or (data[pos] & 0x80 and pos + 1 >= n):
            return None
        pos += 2 if data[pos] & 0x80 else 1
    begin, end = bool(b & 0x08), bool(b & 0x04)
    if not b & 0x20:
        return (0, -1, False, begin, end)
    if pos >= n or (not b & 0x10 and pos + 1 >= n):  # layer indices (+ TL0PICIDX)
        return None
    t = data[pos]
    return (t >> 1 & 7, t >> 5, bool(t & 0x10), begin, end)


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


# -- picture size of a keyframe -----------------------------------------------------------------

VP8_START_CODE = b"\x9d\x01\x2a"


def vp8_frame_size(payload: Payload) -> tuple[int, int] | None:
    """(width, height) from the key frame header at the start of a VP8 keyframe's first
    partition (RFC 6386 §9.1; the 2-bit scaling fields are dropped); None otherwise."""
    try:
        d = Vp8Descriptor.parse(payload)
    except ValueError:
        return None
    pos = d.size
    if not d.keyframe or pos + 10 > len(payload):
        return None
    if bytes(payload[pos + 3 : pos + 6]) != VP8_START_CODE:
        return None
    width = (payload[pos + 6] | payload[pos + 7] << 8) & 0x3FFF
    height = (payload[pos + 8] | payload[pos + 9] << 8) & 0x3FFF
    return (width, height) if width and height else None


class _Bits:
    """An RBSP bit reader (emulation prevention bytes already removed); ``ValueError`` at end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("H.264 SPS is truncated")
            value = value << 1 | (self.data[byte] >> (7 - (self.pos & 7)) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise ValueError("H.264 exp-Golomb code is too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: Payload) -> bytes:
    """The NAL unit's payload without its header byte and emulation prevention bytes."""
    out = bytearray()
    zeros = 0
    for b in bytes(nal[1:]):
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


#: profile_idc values whose SPS carries chroma format, bit depths and scaling matrices.
_H264_HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))


def h264_sps_frame_size(nal: Payload) -> tuple[int, int]:
    """(width, height) of an H.264 sequence parameter set NAL unit (header byte included),
    frame cropping applied (ITU-T H.264 §7.3.2.1.1, §7.4.2.1.1). Raises ``ValueError``."""
    if not len(nal) or nal[0] & 0x1F != H264_NAL_SPS:
        raise ValueError("not an H.264 SPS")
    r = _Bits(_rbsp(nal))
    profile = r.u(8)
    r.u(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = 0
    if profile in _H264_HIGH_PROFILES:
        chroma_format = r.ue()
        if chroma_format == 3:
            separate_planes = r.u(1)
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if r.u(1):
                    last = next_scale = 8
                    for _ in range(16 if i < 6 else 64):
                        if next_scale:
                            next_scale = (last + r.se()) % 256
                        last = next_scale or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width = (r.ue() + 1) * 16
    map_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    height = (2 - frame_mbs_only) * map_units * 16
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    if r.u(1):  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        if separate_planes or chroma_format == 0:
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            unit_x = 1 if chroma_format == 3 else 2
            unit_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    if width <= 0 or height <= 0:
        raise ValueError("H.264 SPS crops the whole picture")
    return width, height


def h264_frame_size(payload: Payload) -> tuple[int, int] | None:
    """(width, height) from an SPS carried as a single NAL unit or inside a STAP-A; None when
    the packet carries no (readable) SPS."""
    n = len(payload)
    if not n:
        return None
    kind = payload[0] & 0x1F
    try:
        if kind == H264_NAL_SPS:
            return h264_sps_frame_size(payload)
        if kind == H264_STAP_A:
            pos = 1
            while pos + 2 < n:
                size = payload[pos] << 8 | payload[pos + 1]
                if size == 0 or pos + 2 + size > n:
                    return None
                if payload[pos + 2] & 0x1F == H264_NAL_SPS:
                    return h264_sps_frame_size(payload[pos + 2 : pos + 2 + size])
                pos += 2 + size
    except ValueError:
        return None
    return None


def vp9_frame_size(payload: Payload) -> tuple[int, int] | None:
    """(width, height) of the highest spatial layer listed in a keyframe's scalability
    structure (RFC 9628 §4.2.1, Y bit); None without one."""
    try:
        d = Vp9Descriptor.parse(payload)
    except ValueError:
        return None
    if d.scalability is None or not d.scalability.resolutions:
        return None
    width, height = d.scalability.resolutions[-1]
    return (width, height) if width and height else None


def vp9_resolutions(payload: Payload) -> tuple[tuple[int, int], ...]:
    """(width, height) of each spatial layer, lowest first, listed in a VP9 keyframe's
    scalability structure (RFC 9628 §4.2.1, Y bit); empty without one."""
    try:
        d = Vp9Descriptor.parse(payload)
    except ValueError:
        return ()
    if d.scalability is None:
        return ()
    return tuple(d.scalability.resolutions)


def frame_size_reader(mime: str) -> FrameSizeReader | None:
    """The function reading a keyframe's picture size for codec ``mime``, or None."""
    return _FRAME_SIZE.get(mime.rpartition("/")[2].lower())


_FRAME_SIZE: dict[str, FrameSizeReader] = {
    "vp8": vp8_frame_size,
    "vp9": vp9_frame_size,
    "h264": h264_frame_size,
}
