"""Contracts shared by the forwarding modules: the packet sink, the codec description and the
parameter objects that describe a producer's and a consumer's stream.

Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# RFC 8852 header extensions naming a packet's RTP stream, and RFC 8843's mid: the SDP layer's
# constants (the URIs it negotiates), named here for the forwarding modules.
from ..sdp.simulcast import REPAIRED_RID_URI as REPAIRED_RID_URI
from ..sdp.simulcast import RID_URI as RID_URI
from ..sdp.slots import MID_URI as MID_URI


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


@dataclass(frozen=True, slots=True)
class ProducerParams:
    """What the publisher's SDP says about one published track (``Router.produce``).

    ``codecs``: payload type -> codec; ``rtx_payload_types``: RTX pt -> the media pt it repairs
    (RFC 4588 ``apt``); ``mid``: the publisher's m-line (RFC 5888 ``a=mid``), when it has one.
    ``rids``: the simulcast streams (RFC 8853 ``a=simulcast:send``), lowest quality first; empty
    for a plain track. ``extensions``: header-extension URI -> the publisher's id (RFC 8285).
    ``ssrc``: None when the SDP names none (rid simulcast: learned from the rid extension,
    RFC 8852; a plain track: from the mid extension).
    """

    producer_id: str
    kind: str
    codecs: Mapping[int, CodecInfo]
    ssrc: int | None
    rtx_ssrc: int | None
    rtx_payload_types: Mapping[int, int]
    mid: str | None = None
    rids: tuple[str, ...] = ()
    extensions: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConsumerParams:
    """How one subscriber receives one producer's track (``Router.consume``).

    ``payload_types``: publisher pt -> subscriber pt; ``rtx_payload_types``: subscriber media pt
    -> subscriber RTX pt; ``ext_id_map``: publisher header-extension id -> subscriber id.
    """

    consumer_id: str
    ssrc: int
    rtx_ssrc: int | None
    payload_types: Mapping[int, int]
    rtx_payload_types: Mapping[int, int]
    ext_id_map: Mapping[int, int]
    cname: str
