"""RTCP packets as values: parse, build, compound packets, NTP time.

Owns: SR (RFC 3550 §6.4.1), RR (§6.4.2) and their report blocks, SDES (§6.5), BYE (§6.6),
generic NACK (RFC 4585 §6.2.1), PLI (RFC 4585 §6.3.1), FIR (RFC 5104 §4.3.1), REMB
(draft-alvestrand-rmcat-remb-03 §2.2), transport-wide congestion control feedback
(``TransportFeedback``, draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1: run-length and
status-vector chunks, 8-bit and 16-bit receive deltas), compound packets (RFC 3550 §6.1) and
the 64-bit NTP timestamp with its middle 32 bits (LSR, §6.4.1).
Must not import anything from zvonok outside ``zvonok.media``.
Unknown packet types are kept as ``RtcpUnknown``; malformed input raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from struct import pack, unpack_from

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_RTPFB = 205
RTCP_PSFB = 206
RTPFB_NACK = 1
RTPFB_TWCC = 15
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_APP = 15  # REMB rides on application-layer feedback, identified by "REMB"
SDES_CNAME = 1

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_REPORT_BLOCK = "!IB3sIIII"


# -- NTP time --------------------------------------------------------------------------------


def ntp_from_seconds(seconds: float) -> int:
    """64-bit NTP timestamp of a time given in seconds since 1900 (32.32 fixed point)."""
    return int(seconds * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_from_unix(unix_time: float) -> int:
    return ntp_from_seconds(unix_time + NTP_EPOCH_OFFSET)


def ntp_to_seconds(ntp: int) -> float:
    return ntp / (1 << 32)


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (the LSR field of a report block)."""
    return (ntp >> 16) & 0xFFFF_FFFF


# -- header ----------------------------------------------------------------------------------


def _header(count: int, packet_type: int, body_length: int) -> bytes:
    if body_length % 4:
        raise ValueError(f"RTCP body length {body_length} is not a multiple of 4")
    return pack("!BBH", 0x80 | count, packet_type, body_length // 4)


@dataclass(slots=True)
class ReportBlock:
    """RFC 3550 §6.4.1 report block. ``packets_lost`` is the signed 24-bit cumulative count."""

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int

    @classmethod
    def parse(cls, data: bytes | bytearray, pos: int = 0) -> ReportBlock:
        if pos + 24 > len(data):
            raise ValueError("RTCP report block is truncated")
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = unpack_from(_REPORT_BLOCK, data, pos)
        return cls(ssrc, fraction, int.from_bytes(lost, "big", signed=True), highest, jitter,
                   lsr, dlsr)  # fmt: skip

    def __bytes__(self) -> bytes:
        lost = max(-(1 << 23), min((1 << 23) - 1, self.packets_lost))
        return pack(_REPORT_BLOCK, self.ssrc, self.fraction_lost,
                    lost.to_bytes(3, "big", signed=True), self.highest_sequence, self.jitter,
                    self.lsr, self.dlsr)  # fmt: skip


def _parse_blocks(body: bytes, pos: int, count: int, what: str) -> list[ReportBlock]:
    if pos + 24 * count > len(body):
        raise ValueError(f"RTCP {what} has {count} report blocks but only {len(body)} bytes")
    return [ReportBlock.parse(body, pos + 24 * i) for i in range(count)]


@dataclass(slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    @classmethod
    def parse(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < 24:
            raise ValueError(f"RTCP sender report is too short ({len(body)} bytes)")
        ssrc, ntp, rtp_ts, packets, octets = unpack_from("!IQIII", body)
        reports = _parse_blocks(body, 24, count, "sender report")
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, body[24 + 24 * count :])

    def __bytes__(self) -> bytes:
        body = pack("!IQIII", self.ssrc, self.ntp_timestamp, self.rtp_timestamp,
                    self.packet_count, self.octet_count)  # fmt: skip
        body += b"".join(bytes(r) for r in self.reports) + self.extension
        return _header(len(self.reports), RTCP_SR, len(body)) + body


@dataclass(slots=True)
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    @classmethod
    def parse(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise ValueError(f"RTCP receiver report is too short ({len(body)} bytes)")
        reports = _parse_blocks(body, 4, count, "receiver report")
        return cls(unpack_from("!I", body)[0], reports, body[4 + 24 * count :])

    def __bytes__(self) -> bytes:
        body = self.ssrc.to_bytes(4, "big") + b"".join(bytes(r) for r in self.reports)
        body += self.extension
        return _header(len(self.reports), RTCP_RR, len(body)) + body


@dataclass(slots=True)
class SdesChunk:
    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def cname(self) -> str | None:
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(slots=True)
class SourceDescription:
    chunks: list[SdesChunk] = field(default_factory=list)

    @classmethod
    def cname_of(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls([SdesChunk(ssrc, [(SDES_CNAME, cname.encode())])])

    @classmethod
    def parse(cls, count: int, body: bytes) -> SourceDescription:
        chunks, pos = [], 0
        for _ in range(count):
            if pos + 4 > len(body):
                raise ValueError("RTCP SDES chunk is truncated")
            chunk = SdesChunk(unpack_from("!I", body, pos)[0])
            pos += 4
            while True:
                if pos >= len(body):
                    raise ValueError("RTCP SDES item list is not terminated")
                item_type = body[pos]
                if item_type == 0:
                    pos = (pos + 4) & ~3  # the null item, then padding to a 32-bit boundary
                    break
                if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                    raise ValueError("RTCP SDES item is truncated")
                chunk.items.append((item_type, body[pos + 2 : pos + 2 + body[pos + 1]]))
                pos += 2 + body[pos + 1]
            chunks.append(chunk)
        return cls(chunks)

    def __bytes__(self) -> bytes:
        body = bytearray()
        for chunk in self.chunks:
            body += chunk.ssrc.to_bytes(4, "big")
            for item_type, value in chunk.items:
                if len(value) > 255:
                    raise ValueError(f"SDES item of {len(value)} bytes is longer than 255")
                body += bytes((item_type, len(value))) + value
            body += bytes(4 - len(body) % 4)  # null item + padding (at least one zero byte)
        return _header(len(self.chunks), RTCP_SDES, len(body)) + bytes(body)


@dataclass(slots=True)
class Bye:
    sources: list[int] = field(default_factory=list)
    reason: bytes | None = None

    @classmethod
    def parse(cls, count: int, body: bytes) -> Bye:
        if 4 * count > len(body):
            raise ValueError(f"RTCP BYE has {count} sources but only {len(body)} bytes")
        sources = list(unpack_from(f"!{count}I", body))
        reason = None
        if len(body) > 4 * count:
            length = body[4 * count]
            if 4 * count + 1 + length > len(body):
                raise ValueError("RTCP BYE reason is truncated")
            reason = body[4 * count + 1 : 4 * count + 1 + length]
        return cls(sources, reason)

    def __bytes__(self) -> bytes:
        body = b"".join(s.to_bytes(4, "big") for s in self.sources)
        if self.reason is not None:
            body += bytes((len(self.reason),)) + self.reason
            body += bytes(-len(body) % 4)
        return _header(len(self.sources), RTCP_BYE, len(body)) + body


# -- feedback (RFC 4585 §6.1: common header, sender ssrc, media ssrc, FCI) --------------------


def nack_pairs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Pack sequence numbers into RFC 4585 §6.2.1 (PID, BLP) pairs, in wrap-aware order."""
    ordered = sorted({s & 0xFFFF for s in seqs})
    n = len(ordered)
    if n > 1:  # start after the widest circular gap, so that a list straddling 65535 stays in order
        gaps = [(ordered[(i + 1) % n] - ordered[i]) & 0xFFFF for i in range(n)]
        cut = max(range(n), key=gaps.__getitem__) + 1
        ordered = ordered[cut:] + ordered[:cut]
    pairs: list[tuple[int, int]] = []
    for seq in ordered:
        if pairs:
            pid, blp = pairs[-1]
            delta = (seq - pid) & 0xFFFF
            if 1 <= delta <= 16:
                pairs[-1] = (pid, blp | 1 << (delta - 1))
                continue
        pairs.append((seq, 0))
    return pairs


@dataclass(slots=True)
class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, sender: int, media: int, fci: bytes) -> Nack:
        if not fci or len(fci) % 4:
            raise ValueError(f"RTCP NACK has {len(fci)} bytes of FCI, not a multiple of 4")
        lost: list[int] = []
        for i in range(0, len(fci), 4):
            pid, blp = unpack_from("!HH", fci, i)
            lost.append(pid)
            lost.extend((pid + b + 1) & 0xFFFF for b in range(16) if blp >> b & 1)
        return cls(sender, media, lost)

    def __bytes__(self) -> bytes:
        fci = b"".join(pack("!HH", pid, blp) for pid, blp in nack_pairs(self.lost))
        return _feedback(RTPFB_NACK, RTCP_RTPFB, self.sender_ssrc, self.media_ssrc, fci)


@dataclass(slots=True)
class Pli:
    sender_ssrc: int
    media_ssrc: int

    def __bytes__(self) -> bytes:
        return _feedback(PSFB_PLI, RTCP_PSFB, self.sender_ssrc, self.media_ssrc, b"")


@dataclass(slots=True)
class Fir:
    """Full intra request; ``entries`` are ``(ssrc, command sequence number)``."""

    sender_ssrc: int
    media_ssrc: int = 0
    entries: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def parse(cls, sender: int, media: int, fci: bytes) -> Fir:
        if not fci or len(fci) % 8:
            raise ValueError(f"RTCP FIR has {len(fci)} bytes of FCI, not a multiple of 8")
        entries = [unpack_from("!IB", fci, i) for i in range(0, len(fci), 8)]
        return cls(sender, media, [(ssrc, seq) for ssrc, seq in entries])

    def __bytes__(self) -> bytes:
        fci = b"".join(pack("!IB3x", ssrc, seq & 0xFF) for ssrc, seq in self.entries)
        return _feedback(PSFB_FIR, RTCP_PSFB, self.sender_ssrc, self.media_ssrc, fci)


@dataclass(slots=True)
class Remb:
    """Receiver estimated maximum bitrate (bits/s) for ``ssrcs``."""

    sender_ssrc: int
    bitrate: int
    ssrcs: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, sender: int, media: int, fci: bytes) -> Remb:
        if len(fci) < 8 or fci[:4] != b"REMB":
            raise ValueError("RTCP REMB is truncated or lacks its 'REMB' identifier")
        count, exp = fci[4], fci[5] >> 2
        mantissa = (fci[5] & 3) << 16 | fci[6] << 8 | fci[7]
        if 8 + 4 * count > len(fci):
            raise ValueError(f"RTCP REMB lists {count} SSRCs but has only {len(fci)} bytes")
        return cls(sender, mantissa << exp, list(unpack_from(f"!{count}I", fci, 8)))

    def __bytes__(self) -> bytes:
        exp, mantissa = 0, self.bitrate
        while mantissa >= 1 << 18:
            exp, mantissa = exp + 1, mantissa >> 1
        fci = b"REMB" + bytes((len(self.ssrcs), exp << 2 | mantissa >> 16))
        fci += (mantissa & 0xFFFF).to_bytes(2, "big")
        fci += b"".join(s.to_bytes(4, "big") for s in self.ssrcs)
        return _feedback(PSFB_APP, RTCP_PSFB, self.sender_ssrc, 0, fci)


@dataclass(slots=True)
class RtcpUnknown:
    """A packet kept opaque: unknown types, other feedback formats."""

    packet_type: int
    count: int
    body: bytes

    @property
    def sender_ssrc(self) -> int | None:
        return int.from_bytes(self.body[:4], "big") if len(self.body) >= 4 else None

    def __bytes__(self) -> bytes:
        return _header(self.count, self.packet_type, len(self.body)) + self.body


#: draft-holmer §3.1.1 packet status symbols.
TWCC_NOT_RECEIVED = 0
TWCC_SMALL_DELTA = 1
TWCC_LARGE_DELTA = 2
#: Receive deltas and the reference time count in these units (µs).
TWCC_DELTA_US = 250
TWCC_REFERENCE_US = 64_000
_MAX_RUN = 0x1FFF


def _twcc_symbol(delta: int | None) -> int:
    if delta is None:
        return TWCC_NOT_RECEIVED
    if 0 <= delta <= 0xFF:
        return TWCC_SMALL_DELTA
    if -0x8000 <= delta <= 0x7FFF:
        return TWCC_LARGE_DELTA
    raise ValueError(f"transport-cc receive delta {delta} does not fit 16 bits")


def _twcc_chunks(symbols: list[int]) -> bytes:
    """Packet chunks for ``symbols`` (§3.1.3, §3.1.4): a run-length chunk for a run of 7 or
    more equal symbols, else a status vector (14 one-bit symbols when none is a large delta,
    7 two-bit symbols otherwise); vector slots past the end are "not received"."""
    out = bytearray()
    i, n = 0, len(symbols)
    while i < n:
        run = 1
        while i + run < n and run < _MAX_RUN and symbols[i + run] == symbols[i]:
            run += 1
        if run >= 7 or i + run == n and run > 1:
            out += (symbols[i] << 13 | run).to_bytes(2, "big")
            i += run
            continue
        part = symbols[i : i + 14]
        if TWCC_LARGE_DELTA not in part:
            word = 0x8000
            for k, sym in enumerate(part):
                word |= sym << (13 - k)
            out += word.to_bytes(2, "big")
            i += len(part)
            continue
        part = symbols[i : i + 7]
        word = 0xC000
        for k, sym in enumerate(part):
            word |= sym << (12 - 2 * k)
        out += word.to_bytes(2, "big")
        i += len(part)
    return bytes(out)


def parse_twcc_fci(fci: bytes) -> tuple[int, int, int, list[int | None]]:
    """``(base_seq, reference_time, fb_count, deltas)`` of a transport-cc feedback FCI
    (draft-holmer §3.1; ``deltas`` as ``TransportFeedback.deltas``); malformed: ``ValueError``.
    The pure-Python reference of ``_fastpath.twcc_parse``, which ``TransportFeedback.parse``
    uses when the extension is built (tests/unit/media/test_fastpath_rtcp.py)."""
    if len(fci) < 8:
        raise ValueError(f"RTCP transport-cc FCI is too short ({len(fci)} bytes)")
    base, count = unpack_from("!HH", fci)
    ref, fb_count = int.from_bytes(fci[4:7], "big", signed=True), fci[7]
    if count == 0:
        raise ValueError("RTCP transport-cc reports no packets (status count 0)")
    symbols: list[int] = []
    pos = 8
    while len(symbols) < count:
        if pos + 2 > len(fci):
            raise ValueError(
                f"RTCP transport-cc chunks are truncated: {len(symbols)} of {count} packet statuses"
            )
        chunk = fci[pos] << 8 | fci[pos + 1]
        pos += 2
        if not chunk & 0x8000:
            sym, run = chunk >> 13 & 3, chunk & _MAX_RUN
            if sym == 3:
                raise ValueError("RTCP transport-cc run-length chunk has the reserved symbol")
            if run == 0:
                raise ValueError("RTCP transport-cc run-length chunk has run length 0")
            symbols += [sym] * min(run, count - len(symbols))
        elif not chunk & 0x4000:
            symbols += [chunk >> (13 - k) & 1 for k in range(14)]
        else:
            two = [chunk >> (12 - 2 * k) & 3 for k in range(7)]
            if 3 in two[: count - len(symbols)]:
                raise ValueError("RTCP transport-cc status vector has the reserved symbol")
            symbols += two
    deltas: list[int | None] = []
    for sym in symbols[:count]:
        if sym == TWCC_NOT_RECEIVED:
            deltas.append(None)
            continue
        size = 1 if sym == TWCC_SMALL_DELTA else 2
        if pos + size > len(fci):
            raise ValueError(
                f"RTCP transport-cc receive deltas overrun the packet ({len(deltas)} of "
                f"{count} read, {len(fci) - pos} bytes left)"
            )
        deltas.append(
            fci[pos] if size == 1 else int.from_bytes(fci[pos : pos + 2], "big", signed=True)
        )
        pos += size
    if len(fci) - pos > 3:
        raise ValueError(f"RTCP transport-cc has {len(fci) - pos} bytes after its deltas")
    return base, ref, fb_count, deltas


@dataclass(slots=True)
class TransportFeedback:
    """Transport-wide congestion control feedback (RTPFB FMT 15), draft-holmer §3.1.

    ``deltas`` has one entry per packet from ``base_seq`` on (the packet status count): None
    when the packet was not received, else its receive delta in 250 µs units from the previous
    received packet (the first one's from ``reference_time``, a signed 24-bit count of 64 ms).
    ``fb_count`` is the 8-bit feedback packet count.
    """

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_time: int
    fb_count: int
    deltas: list[int | None] = field(default_factory=list)

    @classmethod
    def parse(cls, sender: int, media: int, fci: bytes) -> TransportFeedback:
        base, ref, fb_count, deltas = _parse_twcc_fci(fci)
        return cls(sender, media, base, ref, fb_count, deltas)

    def __bytes__(self) -> bytes:
        if not self.deltas or len(self.deltas) > 0xFFFF:
            raise ValueError(f"transport-cc must report 1 to 65535 packets, not {len(self.deltas)}")
        symbols = [_twcc_symbol(d) for d in self.deltas]
        fci = bytearray(pack("!HH", self.base_seq & 0xFFFF, len(self.deltas)))
        fci += (self.reference_time & 0xFFFFFF).to_bytes(3, "big") + bytes((self.fb_count & 0xFF,))
        fci += _twcc_chunks(symbols)
        for delta, sym in zip(self.deltas, symbols, strict=True):
            if sym == TWCC_SMALL_DELTA:
                fci.append(delta)  # type: ignore[arg-type]
            elif sym == TWCC_LARGE_DELTA:
                fci += delta.to_bytes(2, "big", signed=True)  # type: ignore[union-attr]
        fci += bytes(-len(fci) % 4)
        return _feedback(RTPFB_TWCC, RTCP_RTPFB, self.sender_ssrc, self.media_ssrc, bytes(fci))

    def arrivals(self) -> list[tuple[int, int | None]]:
        """``(16-bit seq, arrival µs in the sender's time base or None)`` per reported packet."""
        at = self.reference_time * TWCC_REFERENCE_US
        out: list[tuple[int, int | None]] = []
        for i, delta in enumerate(self.deltas):
            seq = (self.base_seq + i) & 0xFFFF
            if delta is None:
                out.append((seq, None))
            else:
                at += delta * TWCC_DELTA_US
                out.append((seq, at))
        return out

    @classmethod
    def build(
        cls,
        sender: int,
        media: int,
        fb_count: int,
        base_seq: int,
        arrivals: list[int | None],
    ) -> TransportFeedback:
        """Feedback for packets ``base_seq, base_seq + 1, ...`` arrived at ``arrivals`` (µs, any
        monotonic base; None: lost). The reference time is the first arrival's 64 ms slot; each
        delta is rounded to 250 µs against the rounded sum so far, so errors never accumulate.
        ``ValueError`` when a delta needs more than 16 bits (split the report there) or no
        packet arrived."""
        first = next((a for a in arrivals if a is not None), None)
        if first is None:
            raise ValueError("transport-cc feedback needs at least one received packet")
        ref = first // TWCC_REFERENCE_US
        ticks = ref * (TWCC_REFERENCE_US // TWCC_DELTA_US)
        deltas: list[int | None] = []
        for at in arrivals:
            if at is None:
                deltas.append(None)
                continue
            now = (at + TWCC_DELTA_US // 2) // TWCC_DELTA_US
            _twcc_symbol(now - ticks)
            deltas.append(now - ticks)
            ticks = now
        ref = ((ref + 0x80_0000) & 0xFF_FFFF) - 0x80_0000  # the signed 24-bit field
        return cls(sender, media, base_seq & 0xFFFF, ref, fb_count & 0xFF, deltas)


def _feedback(fmt: int, packet_type: int, sender: int, media: int, fci: bytes) -> bytes:
    return _header(fmt, packet_type, 8 + len(fci)) + pack("!II", sender, media) + fci


RtcpPacket = (
    SenderReport
    | ReceiverReport
    | SourceDescription
    | Bye
    | Nack
    | Pli
    | Fir
    | Remb
    | TransportFeedback
    | RtcpUnknown
)


def _parse_feedback(packet_type: int, fmt: int, body: bytes) -> RtcpPacket:
    if len(body) < 8:
        raise ValueError(f"RTCP feedback packet is too short ({len(body)} bytes)")
    sender, media = unpack_from("!II", body)
    fci = body[8:]
    if packet_type == RTCP_RTPFB:
        if fmt == RTPFB_NACK:
            return Nack.parse(sender, media, fci)
        if fmt == RTPFB_TWCC:
            return TransportFeedback.parse(sender, media, fci)
    elif fmt == PSFB_PLI:
        return Pli(sender, media)
    elif fmt == PSFB_FIR:
        return Fir.parse(sender, media, fci)
    elif fmt == PSFB_APP and fci[:4] == b"REMB":
        return Remb.parse(sender, media, fci)
    return RtcpUnknown(packet_type, fmt, body)


def parse_rtcp(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    """One packet from its header fields and body (padding already removed)."""
    if packet_type == RTCP_SR:
        return SenderReport.parse(count, body)
    if packet_type == RTCP_RR:
        return ReceiverReport.parse(count, body)
    if packet_type == RTCP_SDES:
        return SourceDescription.parse(count, body)
    if packet_type == RTCP_BYE:
        return Bye.parse(count, body)
    if packet_type in (RTCP_RTPFB, RTCP_PSFB):
        return _parse_feedback(packet_type, count, body)
    return RtcpUnknown(packet_type, count, body)


def parse_compound(data: bytes | bytearray) -> list[RtcpPacket]:
    """Every packet of a compound RTCP packet (RFC 3550 §6.1); ``ValueError`` when malformed."""
    data = bytes(data)
    packets: list[RtcpPacket] = []
    pos = 0
    if not data:
        raise ValueError("RTCP packet is empty")
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError(f"RTCP header is truncated ({len(data) - pos} bytes)")
        first, packet_type, words = unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            raise ValueError(f"RTCP packet has version {first >> 6}, expected 2")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise ValueError(f"RTCP length {4 + 4 * words} overruns the packet ({len(data) - pos})")
        body_end = end
        if first & 0x20:
            pad = data[end - 1] if end > pos + 4 else 0
            if pad == 0 or pos + 4 + pad > end:
                raise ValueError("RTCP padding length overruns the packet")
            # every RTCP body (SDES chunks included) is whole 32-bit words, except transport-cc
            # feedback, whose deltas end anywhere (Chrome pads it with 1-3 bytes, P bit set)
            twcc = packet_type == RTCP_RTPFB and first & 0x1F == RTPFB_TWCC
            if pad % 4 and not twcc:
                raise ValueError(f"RTCP padding of {pad} bytes leaves a partial 32-bit word")
            body_end -= pad
        packets.append(parse_rtcp(packet_type, first & 0x1F, data[pos + 4 : body_end]))
        pos = end
    return packets


def build_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound RTCP packet."""
    return b"".join(bytes(p) for p in packets)


def _twcc_parser() -> Callable[[bytes], tuple[int, int, int, list[int | None]]]:
    from ..fastpath import native

    if native is not None and hasattr(native, "twcc_parse"):  # else: built before it existed
        parser: Callable[[bytes], tuple[int, int, int, list[int | None]]] = native.twcc_parse
        return parser
    return parse_twcc_fci


#: The transport-cc FCI parser ``TransportFeedback.parse`` uses: compiled when built.
_parse_twcc_fci = _twcc_parser()
