"""Browser-shaped SDP answers to the server's offers, for unit tests of negotiation and rooms.

Shared by tests/unit/media and tests/unit/rooms (test fakes live here, not in test modules).
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

from zvonok.media.sdp.description import Rid, RtpCodec, SessionDescription

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdp"


def sdp_fixture(name: str) -> str:
    """A captured browser or aiortc SDP from tests/fixtures/sdp."""
    return (FIXTURES / name).read_text()


def answer_to(
    offer: str,
    *,
    publish: dict[str, int] | None = None,
    reject: AbstractSet[str] = frozenset(),
    video: Sequence[str] | None = None,
) -> str:
    """A browser-shaped answer: mirror each m-line, flip the direction, keep codecs and extmaps.

    ``video`` (codec names, e.g. ``["H264", "VP8"]``): what the browser accepts on video m-lines
    and in which order (``setCodecPreferences``); a video m-line with none of them is rejected.
    """
    desc = SessionDescription.parse(offer)
    publish = publish or {}
    for media in desc.media:
        if video is not None and media.kind == "video" and media.port != 0:
            order = [name.lower() for name in video]
            media_codecs = [c for c in media.codecs if c.name.lower() in order]
            media_codecs.sort(key=lambda c: order.index(c.name.lower()))
            kept = {c.payload_type for c in media_codecs}
            if not kept:
                media.port = 0
                continue
            rtx = [c for c in media.codecs if c.name.lower() == "rtx" and _apt(c) in kept]
            media.codecs = media_codecs + rtx
            media.formats = [str(c.payload_type) for c in media.codecs]
        media.ice_ufrag, media.ice_pwd = "cliufrag", "clientpasswordclientpass"
        media.fingerprints = [("sha-256", ":".join(["CD"] * 32))]
        media.setup = "active"
        media.candidates = []
        media.end_of_candidates = False
        if media.mid in reject:
            media.port = 0
            continue
        flip = {"recvonly": "sendonly", "sendonly": "recvonly"}
        media.direction = flip.get(media.direction or "", media.direction)
        # Simulcast (RFC 8853): the rids we receive are the ones the browser sends.
        swap = {"recv": "send", "send": "recv"}
        media.rids = [Rid(r.id, swap[r.direction], r.params) for r in media.rids]
        if media.simulcast is not None:
            words = media.simulcast.split(" ")
            media.simulcast = " ".join(swap.get(word, word) for word in words)
        media.ssrcs, media.ssrc_groups, media.msid = {}, [], None
        if media.mid in publish:
            media.ssrcs = {publish[media.mid]: {"cname": "client"}}
    desc.ice_lite = False
    return str(desc)


def _apt(codec: RtpCodec) -> int | None:
    try:
        return int(codec.fmtp.get("apt", ""))
    except ValueError:
        return None
