"""RTP packets: a value type for tests and control paths, raw-bytes helpers for the hot path.

Owns: ``RtpPacket`` (RFC 3550 §5.1 fixed header, CSRCs, padding; RFC 8285 one-byte ``0xBEDE``
and two-byte ``0x100X`` header extensions), the raw-bytes accessors and the per-subscriber
rewrite (SSRC, payload type, sequence number, timestamp, header-extension ids), RTX wrap/unwrap
(RFC 4588 §4: the original sequence number, OSN, heads the payload), RTP/RTCP demultiplexing
(RFC 5761 §4) and 16-bit sequence arithmetic (RFC 3550 Appendix A.1).
Must not import anything from zvonok outside ``zvonok.media``.

The hot path never builds an ``RtpPacket``: it reads the few fields it needs from ``bytes`` and
patches a ``bytearray`` copy (a full parse costs ~10x a raw rewrite).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from struct import Struct, pack_into, unpack_from

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
#: M|PT, sequence number, timestamp, SSRC (bytes 1-11), precompiled for the hot path.
_pack_header_tail = Struct("!BHII").pack_into
#: ``rewrite_rtp``'s one-entry cache: (original packet, ext table, packet with remapped ext).
_ext_cache: list[bytes] = [b"", b"", b""]
#: RFC 8285 §4.2 / §4.3 "defined by profile" values.
EXT_ONE_BYTE = 0xBEDE
EXT_TWO_BYTE = 0x1000
EXT_TWO_BYTE_MASK = 0xFFF0
#: RFC 5761 §4: the second byte of an RTCP packet (its packet type) lies in 192..223.
RTCP_TYPE_MIN = 192
RTCP_TYPE_MAX = 223

SEQ_MOD = 1 << 16
_SEQ_HALF = 1 << 15


# -- sequence arithmetic (RFC 3550 A.1) ------------------------------------------------------


def seq_add(seq: int, delta: int) -> int:
    """``seq + delta`` modulo 2**16."""
    return (seq + delta) & 0xFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` on the 16-bit circle, in ``-32768..32767``."""
    return ((a - b + _SEQ_HALF) & 0xFFFF) - _SEQ_HALF


def seq_newer(a: int, b: int) -> bool:
    """True when ``a`` comes after ``b`` (modulo 2**16)."""
    return 0 < ((a - b) & 0xFFFF) < _SEQ_HALF


def extend_seq(seq: int, highest_extended: int) -> int:
    """The extended (32-bit-ish) sequence number of ``seq`` nearest to ``highest_extended``."""
    cycles = highest_extended & ~0xFFFF
    candidate = cycles | seq
    delta = candidate - highest_extended
    if delta > _SEQ_HALF and candidate >= SEQ_MOD:
        candidate -= SEQ_MOD
    elif delta < -_SEQ_HALF:
        candidate += SEQ_MOD
    return candidate


# -- raw accessors (hot path) ----------------------------------------------------------------


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """RFC 5761 §4: an RTCP packet's second byte (packet type) is in 192..223."""
    return len(data) >= 2 and RTCP_TYPE_MIN <= data[1] <= RTCP_TYPE_MAX


def rtp_ssrc(data: bytes | bytearray) -> int:
    result: int = unpack_from("!I", data, 8)[0]
    return result


def rtp_seq(data: bytes | bytearray) -> int:
    return data[2] << 8 | data[3]


def rtp_timestamp(data: bytes | bytearray) -> int:
    result: int = unpack_from("!I", data, 4)[0]
    return result


def rtp_payload_type(data: bytes | bytearray) -> int:
    return data[1] & 0x7F


def rtp_marker(data: bytes | bytearray) -> bool:
    return bool(data[1] & 0x80)


def rtp_header_size(data: bytes | bytearray) -> int:
    """Length of the fixed header + CSRCs + extension block; ``ValueError`` if it overruns."""
    n = len(data)
    if n < RTP_HEADER_SIZE:
        raise ValueError(f"RTP packet is too short ({n} bytes)")
    pos = RTP_HEADER_SIZE + (data[0] & 0x0F) * 4
    if data[0] & 0x10:
        if pos + 4 > n:
            raise ValueError("RTP header extension overruns the packet")
        pos += 4 + (data[pos + 2] << 8 | data[pos + 3]) * 4
    if pos > n:
        raise ValueError("RTP header overruns the packet")
    return pos


def rtp_payload_bounds(data: bytes | bytearray) -> tuple[int, int]:
    """``(start, end)`` of the payload (padding excluded); ``ValueError`` when inconsistent."""
    start = rtp_header_size(data)
    end = len(data)
    if data[0] & 0x20:
        pad = data[end - 1] if end > start else 0
        if pad == 0 or start + pad > end:
            raise ValueError("RTP padding length overruns the packet")
        end -= pad
    return start, end


def read_extension(data: bytes | bytearray, ext_id: int) -> bytes | None:
    """The value of header extension ``ext_id`` (RFC 8285 one-byte ``0xBEDE`` or two-byte
    ``0x100X`` form), or None when the packet has no such element or its header is malformed.

    Never raises: it reads packets from the network before anything has validated them.
    """
    n = len(data)
    if n < RTP_HEADER_SIZE or not data[0] & 0x10 or not 1 <= ext_id <= 255:
        return None
    pos = RTP_HEADER_SIZE + (data[0] & 0x0F) * 4
    if pos + 4 > n:
        return None
    profile = data[pos] << 8 | data[pos + 1]
    i = pos + 4
    end = i + (data[pos + 2] << 8 | data[pos + 3]) * 4
    if end > n:
        return None
    if profile == EXT_ONE_BYTE:
        if ext_id > 14:
            return None
        while i < end:
            b = data[i]
            if b == 0:
                i += 1
                continue
            eid = b >> 4
            if eid == 15:  # RFC 8285 §4.2: stop processing the block
                return None
            length = (b & 0x0F) + 1
            if i + 1 + length > end:
                return None
            if eid == ext_id:
                return bytes(data[i + 1 : i + 1 + length])
            i += 1 + length
        return None
    if profile & EXT_TWO_BYTE_MASK == EXT_TWO_BYTE:
        while i < end:
            eid = data[i]
            if eid == 0:
                i += 1
                continue
            if i + 2 > end:
                return None
            length = data[i + 1]
            if i + 2 + length > end:
                return None
            if eid == ext_id:
                return bytes(data[i + 2 : i + 2 + length])
            i += 2 + length
        return None
    return None


def ext_id_table(mapping: Mapping[int, int]) -> bytes:
    """A 256-entry lookup table ``old id -> new id`` (0 = remove) for ``rewrite_rtp``."""
    table = bytearray(256)
    for old, new in mapping.items():
        if not (1 <= old <= 255 and 1 <= new <= 255):
            raise ValueError(f"header extension id mapping {old}->{new} is out of 1..255")
        table[old] = new
    return bytes(table)


def rewrite_rtp(
    data: bytes | bytearray, ssrc: int, payload_type: int, seq: int, timestamp: int, ext: bytes
) -> bytearray:
    """A copy of ``data`` with new SSRC, payload type (marker kept), seq, timestamp and ext ids.

    ``ext`` is an ``ext_id_table``. Ids are remapped in place; extensions mapped to 0 are removed
    by sliding the kept ones over them (the block shrinks to whole 32-bit words); it is rebuilt
    only when the two-byte form is involved, and the X bit is cleared when none survives.
    Raises ``ValueError`` for a header that overruns the packet.
    """
    if len(data) < RTP_HEADER_SIZE:
        raise ValueError(f"RTP packet is too short ({len(data)} bytes)")
    if not data[0] & 0x10:
        out = bytearray(data)
    elif type(data) is bytes:
        # A fan-out rewrites the same packet for every subscriber, mostly with equal ext
        # tables: remap the extension block once per (packet, table), then only copy.
        cache = _ext_cache
        if cache[0] is data and (cache[1] is ext or cache[1] == ext):
            out = bytearray(cache[2])
        else:
            out = _remap_extensions(bytearray(data), data, ext)
            cache[0], cache[1], cache[2] = data, ext, bytes(out)
    else:
        out = _remap_extensions(bytearray(data), data, ext)
    _pack_header_tail(out, 1, (data[1] & 0x80) | payload_type, seq, timestamp, ssrc)
    return out


def _remap_extensions(out: bytearray, data: bytes | bytearray, table: bytes) -> bytearray:
    pos = RTP_HEADER_SIZE + (out[0] & 0x0F) * 4
    if pos + 4 > len(out):
        raise ValueError("RTP header extension overruns the packet")
    profile = out[pos] << 8 | out[pos + 1]
    start = pos + 4
    end = start + (out[pos + 2] << 8 | out[pos + 3]) * 4
    if end > len(out):
        raise ValueError("RTP header extension overruns the packet")
    if profile == EXT_ONE_BYTE:
        kept_end = _compact_one_byte(out, start, end, table)
    elif profile & EXT_TWO_BYTE_MASK == EXT_TWO_BYTE:
        kept_end = -1  # rare (allow-mixed): rebuilt, in the one-byte form when everything fits
    else:
        return out  # an extension profile we do not understand passes untouched
    if kept_end == end:  # nothing removed: ids were patched in place
        return out
    if kept_end < 0:  # rebuild from the original elements
        elements = _read_elements(data, profile, start, end)
        block = build_extension_block([(table[e], v) for e, v in elements if table[e]])
        out[pos:end] = block
        if not block:  # nothing survived: no block, X cleared
            out[0] &= 0xEF
    elif kept_end == start:  # nothing survived: no block, X cleared
        del out[pos:end]
        out[0] &= 0xEF
    else:
        words = (kept_end - start + 3) >> 2
        new_end = start + 4 * words
        out[kept_end:new_end] = bytes(new_end - kept_end)
        if new_end < end:
            del out[new_end:end]
            out[pos + 2] = words >> 8
            out[pos + 3] = words & 0xFF
    return out


def _compact_one_byte(out: bytearray, i: int, end: int, table: bytes) -> int:
    """Remap ids in place, sliding kept elements over removed ones and padding.

    Returns where the kept elements end (``end`` when nothing moved), or -1 when an id only fits
    the two-byte form.
    """
    w, moved = i, False
    while i < end:
        b = out[i]
        if b == 0:
            i += 1
            continue
        eid = b >> 4
        if eid == 15:
            break
        n = (b & 0x0F) + 2
        if i + n > end:
            raise ValueError("RTP header extension element overruns its block")
        new = table[eid]
        if new:
            if new > 14:
                return -1
            if w != i:
                out[w + 1 : w + n] = out[i + 1 : i + n]
                moved = True
            out[w] = new << 4 | (b & 0x0F)
            w += n
        else:
            moved = True
        i += n
    return w if moved else end


def _read_elements(
    data: bytes | bytearray, profile: int, i: int, end: int
) -> list[tuple[int, bytes]]:
    elements: list[tuple[int, bytes]] = []
    one_byte = profile == EXT_ONE_BYTE
    while i < end:
        b = data[i]
        if b == 0:
            i += 1
            continue
        if one_byte:
            if b >> 4 == 15:
                break
            eid, start, length = b >> 4, i + 1, (b & 0x0F) + 1
        else:
            if i + 2 > end:
                raise ValueError("RTP header extension element overruns its block")
            eid, start, length = b, i + 2, data[i + 1]
        if start + length > end:
            raise ValueError("RTP header extension element overruns its block")
        elements.append((eid, bytes(data[start : start + length])))
        i = start + length
    return elements


def build_extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """RFC 8285 block (profile, length, elements, zero padding); b"" when ``elements`` is empty.

    The one-byte form is used when every id is 1..14 and every value 1..16 bytes long.
    """
    if not elements:
        return b""
    body = bytearray()
    if all(1 <= eid <= 14 and 1 <= len(v) <= 16 for eid, v in elements):
        profile = EXT_ONE_BYTE
        for eid, value in elements:
            body.append(eid << 4 | (len(value) - 1))
            body += value
    else:
        profile = EXT_TWO_BYTE
        for eid, value in elements:
            if not (1 <= eid <= 255 and len(value) <= 255):
                raise ValueError(f"header extension {eid} cannot be encoded")
            body += bytes((eid, len(value)))
            body += value
    body += bytes(-len(body) % 4)
    return profile.to_bytes(2, "big") + (len(body) // 4).to_bytes(2, "big") + bytes(body)


# -- RTX (RFC 4588) --------------------------------------------------------------------------


def wrap_rtx(data: bytes | bytearray, ssrc: int, payload_type: int, seq: int) -> bytearray:
    """RFC 4588 §4: a retransmission of ``data`` on the RTX stream (OSN prepended, no padding)."""
    start, end = rtp_payload_bounds(data)
    out = bytearray(data[:start])
    out[0] &= 0xDF  # the original padding is not carried over
    out[1] = (out[1] & 0x80) | payload_type
    pack_into("!H", out, 2, seq)
    pack_into("!I", out, 8, ssrc)
    out += data[2:4]
    out += data[start:end]
    return out


def unwrap_rtx(data: bytes | bytearray, payload_type: int, ssrc: int) -> bytearray:
    """The original packet carried by an RTX packet (OSN restored, ``payload_type``/``ssrc``).

    Raises ``ValueError`` when the payload is too short to hold the OSN (e.g. padding only).
    """
    start, end = rtp_payload_bounds(data)
    if end - start < 2:
        raise ValueError("RTX packet has no original sequence number")
    out = bytearray(data[:start])
    out[0] &= 0xDF
    out[1] = (out[1] & 0x80) | payload_type
    out[2:4] = data[start : start + 2]
    pack_into("!I", out, 8, ssrc)
    out += data[start + 2 : end]
    return out


# -- the value type --------------------------------------------------------------------------


@dataclass(slots=True)
class RtpPacket:
    """A parsed RTP packet. ``extensions`` are ``(id, value)`` pairs of an RFC 8285 block;
    ``extension_profile`` is None without an extension block. An unknown profile keeps its raw
    data in ``extension_data``."""

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extensions: list[tuple[int, bytes]] = field(default_factory=list)
    extension_data: bytes = b""
    payload: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray) -> RtpPacket:
        if len(data) < RTP_HEADER_SIZE:
            raise ValueError(f"RTP packet is too short ({len(data)} bytes)")
        if data[0] >> 6 != RTP_VERSION:
            raise ValueError(f"RTP packet has version {data[0] >> 6}, expected 2")
        if RTCP_TYPE_MIN <= data[1] <= RTCP_TYPE_MAX:
            raise ValueError(f"packet type {data[1]} is RTCP, not RTP")
        cc = data[0] & 0x0F
        pos = RTP_HEADER_SIZE + 4 * cc
        if pos > len(data):
            raise ValueError(f"RTP CSRC list ({cc} entries) overruns the packet")
        seq, ts, ssrc = unpack_from("!HII", data, 2)
        packet = cls(data[1] & 0x7F, seq, ts, ssrc, bool(data[1] & 0x80))
        packet.csrc = list(unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE))
        if data[0] & 0x10:
            pos = packet._parse_extension(data, pos)
        end = len(data)
        if data[0] & 0x20:
            pad = data[-1] if end > pos else 0
            if pad == 0 or pos + pad > end:
                raise ValueError("RTP padding length overruns the packet")
            packet.padding_size = pad
            end -= pad
        packet.payload = bytes(data[pos:end])
        return packet

    def _parse_extension(self, data: bytes | bytearray, pos: int) -> int:
        if pos + 4 > len(data):
            raise ValueError("RTP header extension overruns the packet")
        profile, words = unpack_from("!HH", data, pos)
        end: int = pos + 4 + 4 * words
        if end > len(data):
            raise ValueError("RTP header extension overruns the packet")
        self.extension_profile = profile
        if profile == EXT_ONE_BYTE or profile & EXT_TWO_BYTE_MASK == EXT_TWO_BYTE:
            self.extensions = _read_elements(data, profile, pos + 4, end)
        else:
            self.extension_data = bytes(data[pos + 4 : end])
        return end

    def __bytes__(self) -> bytes:
        ext = self._extension_bytes()
        first = RTP_VERSION << 6 | len(self.csrc)
        if self.padding_size:
            first |= 0x20
        if ext:
            first |= 0x10
        out = bytearray(RTP_HEADER_SIZE)
        out[0] = first
        out[1] = self.payload_type | (0x80 if self.marker else 0)
        pack_into("!HII", out, 2, self.sequence_number, self.timestamp, self.ssrc)
        for csrc in self.csrc:
            out += csrc.to_bytes(4, "big")
        out += ext
        out += self.payload
        if self.padding_size:
            out += bytes(self.padding_size - 1) + bytes((self.padding_size,))
        return bytes(out)

    def _extension_bytes(self) -> bytes:
        profile = self.extension_profile
        if profile is None:
            return b""
        if profile == EXT_ONE_BYTE:
            return build_extension_block(self.extensions) or b"\xbe\xde\x00\x00"
        if profile & EXT_TWO_BYTE_MASK == EXT_TWO_BYTE:
            return _as_two_byte(self.extensions, profile)
        data = self.extension_data + bytes(-len(self.extension_data) % 4)
        return profile.to_bytes(2, "big") + (len(data) // 4).to_bytes(2, "big") + data


def _as_two_byte(elements: list[tuple[int, bytes]], profile: int) -> bytes:
    body = bytearray()
    for eid, value in elements:
        body += bytes((eid, len(value))) + value
    body += bytes(-len(body) % 4)
    return profile.to_bytes(2, "big") + (len(body) // 4).to_bytes(2, "big") + bytes(body)
