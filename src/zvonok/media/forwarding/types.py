"""Contracts shared by the forwarding modules: the packet sink and the codec description.

Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class PacketSink(Protocol):
    """Where a producer's feedback or a consumer's media goes (the media transport)."""

    def send_rtp(self, packet: bytes | bytearray) -> None: ...

    def send_rtcp(self, packet: bytes | bytearray) -> None: ...


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """A publisher codec: its name ("VP8", "opus", "H264"...), RTP clock rate, and the RTCP
    feedback the publisher accepts for it (RFC 4585 ``nack``, ``nack pli``; RFC 5104 ``ccm fir``).
    """

    mime: str
    clock_rate: int
    nack: bool = True
    pli: bool = True
    fir: bool = True
