"""The shared retransmission history of one producer's stream.

Owns: ``HistoryLike`` (what a ring of packets offers its readers), ``PacketHistory``, the
pure-Python ring of the stream's original packets indexed by ``seq & mask``, from which every
consumer answers NACKs (RFC 4585 §6.2.1) with RTX (RFC 4588) and the speaker detector reads
audio levels (RFC 6464), and ``make_history``, which picks the compiled ``_fastpath.PacketRing``
(the same behaviour, the packets copied into slot buffers it owns and reuses: no Python object
kept per packet) when the fast path is built, this reference otherwise.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

from typing import Protocol

from ..fastpath import native

#: The longest packet a ring keeps: the largest datagram the compiled receive path decrypts
#: (``_fastpath.MAX_RING_PACKET``); a longer one, or one shorter than an RTP header, empties
#: its slot instead.
MAX_PACKET = 1500
MIN_PACKET = 12
#: The most slots a ring has (one per 16-bit sequence number).
MAX_SIZE = 65536


class HistoryLike(Protocol):
    """A ring of a stream's last packets by sequence number (``PacketHistory`` or the compiled
    ``PacketRing``)."""

    @property
    def size(self) -> int: ...

    def put(self, seq: int, packet: bytes, /) -> None: ...

    def get(self, seq: int, /) -> bytes | None: ...

    def clear(self) -> None: ...


class PacketHistory:
    """The last ``size`` packets (a power of two) by sequence number: the pure-Python
    reference of ``_fastpath.PacketRing`` (tests/unit/media/test_packet_ring.py holds them
    equal)."""

    __slots__ = ("slots", "mask")

    def __init__(self, size: int = 1024) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"history size {size} is not a power of two")
        if size > MAX_SIZE:
            raise ValueError(f"history size {size} is more than {MAX_SIZE}")
        self.slots: list[bytes | None] = [None] * size
        self.mask = size - 1

    @property
    def size(self) -> int:
        return self.mask + 1

    def put(self, seq: int, packet: bytes) -> None:
        """Keep ``packet`` in slot ``seq & mask`` (one not ``MIN_PACKET``..``MAX_PACKET`` bytes
        long empties the slot)."""
        if MIN_PACKET <= len(packet) <= MAX_PACKET:
            self.slots[seq & self.mask] = packet
        else:
            self.slots[seq & self.mask] = None

    def get(self, seq: int) -> bytes | None:
        """The stored packet with sequence number ``seq``, or None if gone or never seen."""
        packet = self.slots[seq & self.mask]
        if packet is None or (packet[2] << 8 | packet[3]) != seq:
            return None
        return packet

    def clear(self) -> None:
        """Forget every packet."""
        self.slots[:] = [None] * len(self.slots)


def make_history(size: int) -> HistoryLike:
    """A ring of ``size`` slots: the compiled one when the fast path is built."""
    if native is not None:
        ring: HistoryLike = native.PacketRing(size)
        return ring
    return PacketHistory(size)
