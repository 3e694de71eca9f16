"""What zvonok forwards: the supported codec and header-extension tables, and codec matching.

Owns the codec table (our canonical order and preferred payload types for offers the server
writes), ``codec_key`` (what makes two browsers' entries "the same codec"), and the filter that
turns a client's offered m-line into the codecs we can forward. Implements RFC 7587 (Opus),
RFC 7741 (VP8), RFC 9628 (VP9 ``profile-id``), RFC 6184 §8.1 (H.264 ``profile-level-id``,
``packetization-mode``; the level may differ between peers), RFC 4588 (RTX ``apt``),
RFC 8285 (extmap ids).

Not forwarded: telephone-event, red, ulpfec, flexfec (left out of answers).
Negotiated both ways on audio and video: transport-wide congestion control
(draft-holmer-rmcat-transport-wide-cc-extensions-01: its header extension and the ``transport-cc``
rtcp-fb), so publishers get our feedback and subscribers send theirs. Video also keeps the
RFC 8852 rid and repaired-rid extensions (simulcast, ``simulcast``) and libwebrtc's video layers
allocation (``packets.vla``: which simulcast streams the publisher sends), only where the
client sends.
Imports only ``zvonok.media.sdp``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .description import MediaDescription, RtpCodec
from .simulcast import REPAIRED_RID_URI, RID_URI

#: What ``codec_key`` returns: the identity of a codec across browsers.
CodecKey = tuple[str | int, ...]

TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
#: libwebrtc's video layers allocation (``packets.vla``): which simulcast streams are sent.
VLA_URI = "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00"
VIDEO_FEEDBACK = ("nack", "nack pli", "ccm fir", "goog-remb", "transport-cc")
AUDIO_FEEDBACK = ("transport-cc",)
FEEDBACK = {"audio": AUDIO_FEEDBACK, "video": VIDEO_FEEDBACK}

#: Header extensions we keep, with our preferred ids for server offers. The ids are Chrome's own
#: defaults, so a Chrome client answers and offers with the same numbers; ids are session-wide
#: (one BUNDLE group), so a URI has one id across kinds.
SUPPORTED_EXTENSIONS: dict[str, tuple[tuple[str, int], ...]] = {
    "audio": (
        (AUDIO_LEVEL_URI, 1),
        ("http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", 2),
        (TWCC_URI, 3),
        ("urn:ietf:params:rtp-hdrext:sdes:mid", 4),
    ),
    "video": (
        ("http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", 2),
        (TWCC_URI, 3),
        ("urn:ietf:params:rtp-hdrext:sdes:mid", 4),
        (VLA_URI, 9),
        (RID_URI, 10),
        (REPAIRED_RID_URI, 11),
        ("urn:3gpp:video-orientation", 13),
        ("urn:ietf:params:rtp-hdrext:toffset", 14),
    ),
}
#: Extensions only the client writes (simulcast stream ids, the layers allocation): offered and
#: answered only on m-lines the client sends on, and never forwarded (a subscriber's m-line
#: does not have them, so its forwarder drops them).
RECEIVE_ONLY_EXTENSIONS = frozenset({RID_URI, REPAIRED_RID_URI, VLA_URI})

_HEX6 = re.compile(r"[0-9A-Fa-f]{6}", re.ASCII)
_H264_FMTP = {"level-asymmetry-allowed": "1", "packetization-mode": "1"}


def _audio(pt: int, name: str, clock: int, channels: int | None, fmtp: str = "") -> RtpCodec:
    params = dict(p.split("=", 1) for p in fmtp.split(";")) if fmtp else {}
    return RtpCodec(pt, name, clock, channels, params, list(AUDIO_FEEDBACK))


def _video(pt: int, name: str, fmtp: dict[str, str]) -> list[RtpCodec]:
    media = RtpCodec(pt, name, 90000, None, dict(fmtp), list(VIDEO_FEEDBACK))
    return [media, RtpCodec(pt + 1, "rtx", 90000, None, {"apt": str(pt)}, [])]


def _h264(pt: int, profile_level_id: str) -> list[RtpCodec]:
    return _video(pt, "H264", {**_H264_FMTP, "profile-level-id": profile_level_id})


_TABLE: dict[str, tuple[RtpCodec, ...]] = {
    "audio": (
        _audio(111, "opus", 48000, 2, "minptime=10;useinbandfec=1"),
        _audio(9, "G722", 8000, None),
        _audio(0, "PCMU", 8000, None),
        _audio(8, "PCMA", 8000, None),
    ),
    "video": (
        *_video(96, "VP8", {}),
        *_video(98, "VP9", {"profile-id": "0"}),
        *_video(100, "VP9", {"profile-id": "2"}),
        *_h264(102, "42e01f"),
        *_h264(104, "42001f"),
        *_h264(106, "4d001f"),
        *_h264(108, "640c1f"),
    ),
}
#: Our preference between codec families; the offerer's order decides inside a family.
_FAMILY_RANK = {"opus": 0, "g722": 1, "pcmu": 1, "pcma": 1, "vp8": 0, "vp9": 1, "h264": 2}


def _copy(codec: RtpCodec, rtcp_fb: Sequence[str] | None = None) -> RtpCodec:
    fb = list(codec.rtcp_fb if rtcp_fb is None else rtcp_fb)
    return RtpCodec(
        codec.payload_type, codec.name, codec.clock_rate, codec.channels, dict(codec.fmtp), fb,
        codec.fmtp_raw,
    )  # fmt: skip


def supported_codecs(kind: str) -> list[RtpCodec]:
    """Our table for ``kind`` in canonical order, each media codec followed by its RTX (copies)."""
    return [_copy(c) for c in _TABLE.get(kind, ())]


def h264_profile(fmtp: Mapping[str, str]) -> tuple[int, int]:
    """``(profile_idc, profile_iop)`` from ``profile-level-id`` (default ``420010``)."""
    plid = fmtp.get("profile-level-id", "420010")
    if not _HEX6.fullmatch(plid):
        raise ValueError(f"bad H.264 profile-level-id {plid!r}")
    return int(plid[0:2], 16), int(plid[2:4], 16)


def codec_key(codec: RtpCodec) -> CodecKey:
    """What identifies "the same codec" across browsers (payload types and levels differ).

    Name (case-insensitive), clock rate, channels (absent = 1); for H.264 also
    packetization-mode and the profile (profile_idc + constraint flags), for VP9 the profile-id.
    An unparsable H.264 profile gives a key that matches nothing in our table; never raises.
    """
    name = codec.name.lower()
    key: tuple[str | int, ...] = (name, codec.clock_rate, codec.channels or 1)
    if name == "h264":
        mode = codec.fmtp.get("packetization-mode", "0").strip()
        try:
            idc, iop = h264_profile(codec.fmtp)
        except ValueError:
            return (*key, mode, "invalid", codec.fmtp.get("profile-level-id", ""))
        return (*key, mode, idc, iop)
    if name == "vp9":
        return (*key, codec.fmtp.get("profile-id", "0").strip())
    return key


_SUPPORTED_KEYS = frozenset(codec_key(c) for t in _TABLE.values() for c in t if c.name != "rtx")


def is_supported(codec: RtpCodec) -> bool:
    """True for a media codec zvonok forwards. RTX is judged by its ``apt`` (see the filter)."""
    return codec_key(codec) in _SUPPORTED_KEYS


def match_codec(codec: RtpCodec, candidates: Sequence[RtpCodec]) -> RtpCodec | None:
    """The first of ``candidates`` that is the same codec as ``codec`` (by ``codec_key``)."""
    key = codec_key(codec)
    return next((c for c in candidates if codec_key(c) == key), None)


def _rank(codec: RtpCodec) -> int:
    return _FAMILY_RANK.get(codec.name.lower(), len(_FAMILY_RANK))


def filter_offer_codecs(m: MediaDescription) -> list[RtpCodec]:
    """The offered codecs we can forward, our family preference first, each with its RTX.

    Keeps the offerer's payload types and fmtp; rtcp-fb is cut down to what we support.
    """
    feedback = FEEDBACK.get(m.kind)
    if feedback is None:
        return []
    media = [c for c in m.codecs if c.name.lower() != "rtx" and is_supported(c)]
    rtx_by_apt: dict[int, RtpCodec] = {}
    for pt, apt in m.rtx_apt().items():
        rtx = m.codec_by_pt(pt)
        if rtx is not None and m.kind == "video":
            rtx_by_apt.setdefault(apt, rtx)
    out: list[RtpCodec] = []
    for codec in sorted(media, key=_rank):
        out.append(_copy(codec, [fb for fb in codec.rtcp_fb if fb in feedback]))
        rtx = rtx_by_apt.get(codec.payload_type)
        if rtx is not None:
            out.append(_copy(rtx, []))
    return out
