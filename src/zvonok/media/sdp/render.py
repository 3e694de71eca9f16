"""The server's offers and answers as SDP values (RFC 8829 §5.2/§5.3 content): ICE-lite
credentials and candidates, the DTLS fingerprint and setup role (RFC 5763), rtcp-mux (RFC 8858),
extmap (RFC 8285), rtpmap/fmtp/rtcp-fb, msid (RFC 8830), ssrc/FID (RFC 5576) and, on m-lines
where the client sends simulcast, ``a=rid:<id> recv`` (RFC 8851) and ``a=simulcast:recv``
(RFC 8853).

Owns ``server_description`` and ``media_description``: a session's slots -> ``SessionModel`` /
``MediaDescription``. The text is written by the one SDP writer, ``_model`` (``str()``), the
same that writes every parsed description back.
Imports only ``zvonok.media.sdp``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from ._model import MediaDescription, Origin, RtpCodec, SessionModel, SsrcGroup
from .candidate import Candidate
from .simulcast import receive_attributes
from .slots import LocalParameters, Slot


def server_description(
    slots: Sequence[Slot],
    local: LocalParameters,
    *,
    session_id: str,
    version: int,
    offer: bool,
    paused: Mapping[str, Collection[str]] | None = None,
    allow_mixed: bool = False,
) -> SessionModel:
    """The whole ICE-lite offer or answer for ``slots`` (BUNDLE of every live m-line);
    ``paused``: mid -> the simulcast rids to mark paused (``~``) there; ``allow_mixed``: write
    ``a=extmap-allow-mixed`` (RFC 8285 §6)."""
    paused = paused or {}
    bundle = [s.mid for s in slots if not s.stopped]
    candidates = [Candidate.parse(c) for c in local.candidates]
    return SessionModel(
        origin=Origin("-", session_id, version, "IN", "IP4", "0.0.0.0"),
        session_name="zvonok",
        timing="0 0",
        bundle=[bundle] if bundle else [],
        ice_lite=True,
        msid_semantic=" WMS *",
        extmap_allow_mixed=allow_mixed,
        media=[
            media_description(s, local, candidates, offer=offer, paused=paused.get(s.mid, ()))
            for s in slots
        ],
    )


def media_description(
    slot: Slot,
    local: LocalParameters,
    candidates: list[Candidate],
    *,
    offer: bool,
    paused: Collection[str] = (),
) -> MediaDescription:
    """One m-line: a stopped one on port 0 (RFC 8829 §5.2.2), else the slot's direction, codecs,
    extensions, when we receive simulcast its rids, and when we send the track's msid and
    SSRCs."""
    media = MediaDescription(
        kind=slot.kind,
        port=9,
        protocol=slot.protocol,
        formats=[str(c.payload_type) for c in slot.codecs],
        connection=("IN", "IP4", "0.0.0.0"),
        mid=slot.mid,
        ice_ufrag=local.ice_ufrag,
        ice_pwd=local.ice_pwd,
        fingerprints=[local.fingerprint],
        setup="actpass" if offer else "passive",
        rtcp_mux=True,
        codecs=_written_codecs(slot.codecs),
    )
    if slot.stopped:
        # Port 0. The transport attributes are not needed by browsers but are harmless, and
        # stricter parsers (aiortc) refuse any m-section without ICE credentials, a setup role
        # or rtcp-mux, even a rejected one.
        media.port = 0
        media.formats = media.formats or slot.rejected_formats or ["0"]
        media.direction = "inactive"
        return media
    media.rtcp_rsize = slot.kind == "video"
    sending = slot.send is not None and (offer or slot.client_receives)
    receiving = slot.recv and (offer or slot.client_sends)
    media.direction = direction(sending, receiving)
    media.extensions = list(slot.extensions)
    if receiving:
        media.rids, media.simulcast = receive_attributes(slot.remote_rids, paused)
    if sending and slot.send is not None:
        track = slot.send
        media.msid = (track.stream_id, track.track_id)
        has_rtx = any(c.name.lower() == "rtx" for c in slot.codecs)
        if has_rtx:
            media.ssrc_groups = [SsrcGroup("FID", [track.ssrc, track.rtx_ssrc])]
        for ssrc in (track.ssrc, track.rtx_ssrc) if has_rtx else (track.ssrc,):
            media.ssrcs[ssrc] = {
                "cname": track.cname,
                "msid": f"{track.stream_id} {track.track_id}",
            }
    media.candidates = list(candidates)
    media.end_of_candidates = True
    return media


def _written_codecs(codecs: Sequence[RtpCodec]) -> list[RtpCodec]:
    """The codecs as the server writes them: a channel count only when it is above one."""
    return [
        replace(c, channels=None) if c.channels is not None and c.channels <= 1 else c
        for c in codecs
    ]


def direction(send: bool, recv: bool) -> str:
    if send and recv:
        return "sendrecv"
    if send:
        return "sendonly"
    if recv:
        return "recvonly"
    return "inactive"
