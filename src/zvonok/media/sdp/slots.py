"""The values of one session's negotiation: m-line slots, tracks to send, and results.

Shared by ``negotiation`` (the offer/answer logic) and ``render`` (its SDP values). Imports only
``zvonok.media.sdp``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .candidate import Candidate
from .description import HeaderExtension, RtpCodec

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
#: Extensions that are never forwarded as-is (their values name the publisher's m-line/stream).
NOT_FORWARDED = frozenset(
    {
        MID_URI,
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    }
)
MAX_SLOTS = 256

SignalingState = Literal["stable", "have-local-offer"]


@dataclass(frozen=True, slots=True)
class LocalParameters:
    """What the server's transport announces in every m-line."""

    ice_ufrag: str
    ice_pwd: str
    fingerprint: tuple[str, str]
    candidates: Sequence[str]


@dataclass(frozen=True, slots=True)
class SendTrack:
    """A track the server wants to send to this session (one consumer-to-be)."""

    track_id: str
    stream_id: str
    kind: str
    codecs: Sequence[RtpCodec]
    ssrc: int
    rtx_ssrc: int
    cname: str


@dataclass(slots=True)
class Slot:
    """One m-line of the session, for its whole life (recycled with a new mid when stopped)."""

    index: int
    mid: str
    kind: str
    recv: bool = False
    send: SendTrack | None = None
    stopped: bool = False
    codecs: list[RtpCodec] = field(default_factory=list)
    extensions: list[HeaderExtension] = field(default_factory=list)
    client_sends: bool = False
    client_receives: bool = False
    remote_ssrc: int | None = None
    remote_rtx_ssrc: int | None = None
    #: The simulcast rids the client sends on this m-line (``simulcast.send_rids``), from its
    #: last offer or answer; our offers and answers receive exactly these (``a=rid:<id> recv``,
    #: ``a=simulcast:recv``). Empty: no simulcast.
    remote_rids: tuple[str, ...] = ()
    #: Those of ``remote_rids`` the client marked paused (``~``) in that description.
    remote_paused: frozenset[str] = frozenset()
    remote_msid: tuple[str, str] | None = None
    protocol: str = "UDP/TLS/RTP/SAVPF"
    rejected_formats: list[str] = field(default_factory=list)
    #: ``send`` is a placeholder (``a=msid:-``, SSRCs reserved, no track yet): an m-line the
    #: client offered to receive on when we had nothing for it. A later track fills it with
    #: those SSRCs without renegotiation (``SessionNegotiator.fill_vacant``).
    vacant: bool = False
    #: The client's own order of this m-line's media codecs (codec keys, from its last offer or
    #: answer): its preference, e.g. from ``setCodecPreferences``. What it *sends* is the first
    #: codec of *our* description that it accepted (RFC 3264 §6.1 and §7: each side sends the
    #: other's most preferred format), so our next offer follows this order (codec steering).
    client_order: tuple[tuple[str | int, ...], ...] = ()
    #: Our codec list of this m-line was cut down by codec steering in the description being
    #: negotiated: its answer tells nothing of what the client could send otherwise.
    steered: bool = False


@dataclass(frozen=True, slots=True)
class PublishedTrack:
    """A client track the server receives, as negotiated.

    ``rids``: the simulcast layers the client sends (RFC 8853), lowest first as in its
    ``a=simulcast:send``, paused ones included (a page may turn a layer on and off without
    renegotiating); empty for a plain track. With rids, ``ssrc`` and ``rtx_ssrc`` are
    ``None``: the SSRCs are learnt from the rid / repaired-rid header extensions (RFC 8852),
    whose ids are in ``extensions`` (by URI, with every other negotiated extension). Without
    rids, ``ssrc`` is the SSRC the client signalled (never ``None``).
    """

    mid: str
    kind: str
    ssrc: int | None
    rtx_ssrc: int | None
    codecs: dict[int, RtpCodec]
    rtx: dict[int, int]
    extensions: dict[str, int]
    msid: tuple[str, str] | None
    rids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AcceptedSend:
    """A server track the client accepted: codecs and extension ids in the client's space."""

    track_id: str
    mid: str
    codecs: list[RtpCodec]
    rtx: dict[int, int]
    extensions: dict[str, int]


@dataclass(frozen=True, slots=True)
class NegotiationResult:
    """Everything the rooms layer needs after an offer/answer exchange completed."""

    published: dict[str, PublishedTrack]
    sending: dict[str, AcceptedSend]
    refused: frozenset[str]
    ice_ufrag: str
    ice_pwd: str
    fingerprints: list[tuple[str, str]]
    candidates: list[Candidate]
    ice_restart: bool


def copy_slot(slot: Slot) -> Slot:
    return Slot(
        index=slot.index,
        mid=slot.mid,
        kind=slot.kind,
        recv=slot.recv,
        send=slot.send,
        stopped=slot.stopped,
        codecs=list(slot.codecs),
        extensions=list(slot.extensions),
        client_sends=slot.client_sends,
        client_receives=slot.client_receives,
        remote_ssrc=slot.remote_ssrc,
        remote_rtx_ssrc=slot.remote_rtx_ssrc,
        remote_rids=slot.remote_rids,
        remote_paused=slot.remote_paused,
        remote_msid=slot.remote_msid,
        protocol=slot.protocol,
        rejected_formats=list(slot.rejected_formats),
        vacant=slot.vacant,
        client_order=slot.client_order,
        steered=slot.steered,
    )


def send_ids(slots: Sequence[Slot]) -> set[str]:
    return {s.send.track_id for s in slots if s.send is not None and not s.stopped}
