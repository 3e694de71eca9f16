"""The shared retransmission history of one video producer.

Owns: ``PacketHistory``, a fixed ring of the producer's original packets indexed by
``seq & mask``, from which every consumer answers NACKs (RFC 4585 §6.2.1) with RTX (RFC 4588).
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations


class PacketHistory:
    """The last ``size`` packets (a power of two) by sequence number; no per-packet objects."""

    __slots__ = ("slots", "mask")

    def __init__(self, size: int = 1024) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"history size {size} is not a power of two")
        self.slots: list[bytes | None] = [None] * size
        self.mask = size - 1

    def put(self, seq: int, packet: bytes) -> None:
        self.slots[seq & self.mask] = packet

    def get(self, seq: int) -> bytes | None:
        """The stored packet with sequence number ``seq``, or None if gone or never seen."""
        packet = self.slots[seq & self.mask]
        if packet is None or (packet[2] << 8 | packet[3]) != seq:
            return None
        return packet

    def clear(self) -> None:
        """Forget every packet (in place: the producer's compiled core shares the list)."""
        self.slots[:] = [None] * len(self.slots)
