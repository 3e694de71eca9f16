"""The receiver reports a router sends its publishers, one compound packet per publisher.

Owns ``ReceiverReports``: during one ``Router.tick`` the streams whose report is due hand it
their report blocks (RFC 3550 §6.4.1, 24 bytes each, built by ``ProducerLayer.report_block``);
the publisher's other streams whose last report is at least ``EARLY_SHARE`` of the interval old
join them, and each publisher transport is sent one compound RTCP packet: RR with up to 31
blocks (more: further RRs, §6.4.2), then the router's SDES CNAME (§6.1), under the router's
RTCP SSRC. A call's audio and video (and a simulcast track's layers) are reported in one
packet a second instead of one each, and after the first report they stay in step. The header
and the SDES chunk are built once per router; a tick with nothing due allocates nothing.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

from collections.abc import Sequence
from struct import Struct

from ..packets.rtcp import RTCP_RR, SourceDescription
from .types import PacketSink

#: Report blocks one RR packet carries at most (the 5-bit RC field).
MAX_BLOCKS = 31
_RR_HEAD = Struct("!BBHI")


class ReceiverReports:
    """The report blocks of one tick, by publisher transport (``add``), sent by ``flush``."""

    __slots__ = ("ssrc", "sdes", "_pending")

    def __init__(self, ssrc: int, cname: str) -> None:
        self.ssrc = ssrc
        #: The SDES CNAME chunk every compound packet ends with (RFC 3550 §6.1).
        self.sdes = bytes(SourceDescription.cname_of(ssrc, cname))
        #: id(sink) -> (sink, its blocks), in the order the blocks came.
        self._pending: dict[int, tuple[PacketSink, list[bytes]]] = {}

    def __bool__(self) -> bool:
        return bool(self._pending)

    def add(self, sink: PacketSink, block: bytes) -> None:
        entry = self._pending.get(id(sink))
        if entry is None:
            self._pending[id(sink)] = (sink, [block])
        else:
            entry[1].append(block)

    def waiting(self, sink: PacketSink) -> bool:
        """Some block for ``sink`` was added since the last ``flush``."""
        return id(sink) in self._pending

    def flush(self) -> int:
        """Send each transport its compound packet; returns how many were sent."""
        pending, self._pending = self._pending, {}
        for sink, blocks in pending.values():
            sink.send_rtcp(self.build(self.ssrc, self.sdes, blocks))
        return len(pending)

    @staticmethod
    def build(ssrc: int, sdes: bytes, blocks: Sequence[bytes]) -> bytes:
        """RR packet(s) under ``ssrc`` with ``blocks`` (31 per RR), then ``sdes``."""
        if len(blocks) <= MAX_BLOCKS:
            count = len(blocks)
            return (
                _RR_HEAD.pack(0x80 | count, RTCP_RR, 1 + 6 * count, ssrc) + b"".join(blocks) + sdes
            )
        parts = []
        for start in range(0, len(blocks), MAX_BLOCKS):
            chunk = blocks[start : start + MAX_BLOCKS]
            parts.append(_RR_HEAD.pack(0x80 | len(chunk), RTCP_RR, 1 + 6 * len(chunk), ssrc))
            parts.extend(chunk)
        parts.append(sdes)
        return b"".join(parts)

    @staticmethod
    def compound(ssrc: int, cname: str, blocks: Sequence[bytes]) -> bytes:
        """``build`` with the SDES CNAME chunk made here (a report sent outside a router)."""
        return ReceiverReports.build(ssrc, bytes(SourceDescription.cname_of(ssrc, cname)), blocks)
