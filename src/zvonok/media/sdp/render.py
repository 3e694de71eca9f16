"""SDP text for the server's offers and answers (RFC 8866 syntax, RFC 8829 §5.2/§5.3 content):
ICE-lite credentials and candidates, the DTLS fingerprint and setup role (RFC 5763), rtcp-mux
(RFC 8858), extmap (RFC 8285), rtpmap/fmtp/rtcp-fb, msid (RFC 8830) and ssrc/FID (RFC 5576).

Imports only ``zvonok.media.sdp``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .description import RtpCodec
from .slots import LocalParameters, Slot


def render_media(slot: Slot, local: LocalParameters, *, offer: bool) -> list[str]:
    if slot.stopped:
        # Port 0 (RFC 8829 §5.2.2). The transport attributes are not needed by browsers but are
        # harmless, and stricter parsers (aiortc) refuse any m-section without ICE credentials,
        # a setup role or rtcp-mux, even a rejected one.
        stopped = [str(c.payload_type) for c in slot.codecs] or slot.rejected_formats or ["0"]
        lines = [f"m={slot.kind} 0 {slot.protocol} {' '.join(stopped)}", "c=IN IP4 0.0.0.0"]
        lines.append(f"a=mid:{slot.mid}")
        lines += _transport_lines(local, offer=offer)
        lines.append("a=inactive")
        lines.extend(codec_lines(slot.codecs))
        return lines
    formats = " ".join(str(c.payload_type) for c in slot.codecs)
    lines = [f"m={slot.kind} 9 {slot.protocol} {formats}", "c=IN IP4 0.0.0.0"]
    lines.append(f"a=mid:{slot.mid}")
    lines += _transport_lines(local, offer=offer)
    if slot.kind == "video":
        lines.append("a=rtcp-rsize")
    sending = slot.send is not None and (offer or slot.client_receives)
    receiving = slot.recv and (offer or slot.client_sends)
    lines.append("a=" + direction(sending, receiving))
    lines.extend(f"a=extmap:{e.id} {e.uri}" for e in slot.extensions)
    lines.extend(codec_lines(slot.codecs))
    if sending and slot.send is not None:
        track = slot.send
        lines.append(f"a=msid:{track.stream_id} {track.track_id}")
        has_rtx = any(c.name.lower() == "rtx" for c in slot.codecs)
        if has_rtx:
            lines.append(f"a=ssrc-group:FID {track.ssrc} {track.rtx_ssrc}")
        for ssrc in (track.ssrc, track.rtx_ssrc) if has_rtx else (track.ssrc,):
            lines.append(f"a=ssrc:{ssrc} cname:{track.cname}")
            lines.append(f"a=ssrc:{ssrc} msid:{track.stream_id} {track.track_id}")
    lines.extend(f"a={c}" for c in local.candidates)
    lines.append("a=end-of-candidates")
    return lines


def codec_lines(codecs: Sequence[RtpCodec]) -> list[str]:
    lines = []
    for c in codecs:
        channels = f"/{c.channels}" if c.channels and c.channels > 1 else ""
        lines.append(f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}{channels}")
        lines.extend(f"a=rtcp-fb:{c.payload_type} {fb}" for fb in c.rtcp_fb)
        if c.fmtp:
            lines.append(f"a=fmtp:{c.payload_type} {c.fmtp_text()}")
    return lines


def direction(send: bool, recv: bool) -> str:
    if send and recv:
        return "sendrecv"
    if send:
        return "sendonly"
    if recv:
        return "recvonly"
    return "inactive"


def _transport_lines(local: LocalParameters, *, offer: bool) -> list[str]:
    """ICE-lite credentials, the DTLS fingerprint and role (RFC 5763 §5), rtcp-mux (RFC 8858)."""
    return [
        f"a=ice-ufrag:{local.ice_ufrag}",
        f"a=ice-pwd:{local.ice_pwd}",
        f"a=fingerprint:{local.fingerprint[0]} {local.fingerprint[1]}",
        f"a=setup:{'actpass' if offer else 'passive'}",
        "a=rtcp-mux",
    ]
