"""The generator's side of offer/answer: read the server's offer, write the answer (RFC 8829).

Owns ``OfferInfo`` / ``OfferedMedia`` (just what the generator needs from an offer: ICE
credentials, the server's candidate, per m-line kind, mid, direction, codecs and extension ids),
``build_answer`` (BUNDLE, rtcp-mux, ``a=setup:active``: the generator is the DTLS client,
RFC 5763 §5; ``a=ssrc`` and ``a=msid`` for what it publishes, RFC 8830) and ``build_offer`` (a
publisher's sendonly offer, ``a=setup:actpass``, for servers such as Janus where the client
offers, and for ``zvonok bench --simulcast``); ``parse_offer`` reads the server's answer to it as
well. A video m-line sent in simulcast (``simulcast``: mid -> rids, lowest layer first) is written
as Chrome writes it: the rtp-stream-id extension (RFC 8852), ``a=rid:<id> send`` per layer
(RFC 8851), ``a=simulcast:send q;h;f`` (RFC 8853 §5.1) and no ``a=ssrc`` (the SSRCs are learnt
from the rid extension), in the offer and again in every answer to a later offer that repeats
that m-line (there as ``recvonly`` with ``a=simulcast:recv``). Written independently of
``zvonok.media.sdp`` on purpose, so the benchmark does not share the server's SDP code.
Imports nothing from zvonok.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RID_ID = 10  # Chrome's id for it
#: The simulcast layers a ``--simulcast`` publisher sends, lowest first (Chrome's names).
SIMULCAST_RIDS = ("q", "h", "f")


@dataclass
class OfferedMedia:
    """One m-line of the server's offer."""

    kind: str
    mid: str
    direction: str
    payload_types: list[str]
    lines: list[str]  # the rtpmap/fmtp/rtcp-fb lines
    extensions: dict[str, int] = field(default_factory=dict)
    simulcast: str = ""  # the a=simulcast value ("" when absent), e.g. "recv q;h;f"
    rids: list[str] = field(default_factory=list)  # the a=rid lines' values, e.g. "q recv"

    def payload_type(self, name: str) -> int | None:
        """The first payload type whose rtpmap names ``name`` (case-insensitive)."""
        for line in self.lines:
            if line.startswith("a=rtpmap:"):
                pt, _, rest = line[9:].partition(" ")
                if rest.lower().startswith(name.lower() + "/"):
                    return int(pt)
        return None


@dataclass
class OfferInfo:
    """What the generator needs from the server's offer."""

    ice_ufrag: str
    ice_pwd: str
    address: tuple[str, int]
    media: list[OfferedMedia]
    setup: str = ""  # the first a=setup value: "active" makes us the DTLS server (RFC 5763 §5)
    #: The server's first ``tcptype passive`` candidate on ``hosts`` (ICE-TCP, RFC 6544), if any.
    tcp_address: tuple[str, int] | None = None


def parse_offer(
    text: str, *, hosts: tuple[str, ...] = ("127.",),
    fallback_address: tuple[str, int] | None = None,
) -> OfferInfo:  # fmt: skip
    """Read the server's offer (or answer); ``ValueError`` when a needed line is missing.

    The server's address is its first UDP candidate whose address starts with one of ``hosts``
    (loopback by default); ``fallback_address`` when there is none (a renegotiation that does
    not repeat the candidates).
    """
    ufrag = pwd = setup = ""
    address: tuple[str, int] | None = None
    tcp_address: tuple[str, int] | None = None
    media: list[OfferedMedia] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            media.append(OfferedMedia(parts[0], "", "sendrecv", parts[3:], []))
        elif line.startswith("a=ice-ufrag:"):
            ufrag = line[12:]
        elif line.startswith("a=ice-pwd:"):
            pwd = line[10:]
        elif line.startswith("a=setup:"):
            setup = setup or line[8:]
        elif line.startswith("a=candidate:"):
            fields = line.split()
            if not fields[4].startswith(hosts):
                continue
            if fields[2].lower() == "udp" and address is None:
                address = (fields[4], int(fields[5]))
            elif fields[2].lower() == "tcp" and tcp_address is None and "passive" in fields[8:]:
                tcp_address = (fields[4], int(fields[5]))
        elif not media:
            continue
        elif line.startswith("a=mid:"):
            media[-1].mid = line[6:]
        elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive"):
            media[-1].direction = line[2:]
        elif line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            media[-1].lines.append(line)
        elif line.startswith("a=extmap:"):
            ident, _, uri = line[9:].partition(" ")
            media[-1].extensions[uri.strip()] = int(ident.split("/")[0])
        elif line.startswith("a=simulcast:"):
            media[-1].simulcast = line[12:].strip()
        elif line.startswith("a=rid:"):
            media[-1].rids.append(line[6:].strip())
    address = address or fallback_address
    if not ufrag or not pwd or address is None:
        raise ValueError(f"server offer lacks ICE credentials or a UDP candidate on {hosts}")
    return OfferInfo(ufrag, pwd, address, media, setup, tcp_address)


@dataclass
class LocalMedia:
    """The generator's own identity in every answer."""

    ufrag: str
    pwd: str
    fingerprint: str
    port: int
    cname: str
    stream: str
    host: str = "127.0.0.1"  # the address of our one host candidate
    tcp: bool = False  # the candidate is ICE-TCP ``tcptype active`` (RFC 6544 §4.5: port 9)


def _codec_lines(m: OfferedMedia, pt: int) -> list[str]:
    """The codec lines of payload type ``pt`` and of its RTX (apt=pt), if offered."""
    rtx = [
        int(line[7:].split()[0])
        for line in m.lines
        if line.startswith("a=fmtp:") and line.endswith(f"apt={pt}")
    ]
    keep = {pt, *rtx}
    return [ln for ln in m.lines if int(ln.split(":", 1)[1].split()[0]) in keep]


def _candidate(local: LocalMedia) -> str:
    """Our one host candidate: UDP, or ICE-TCP ``tcptype active`` (RFC 6544 §4.5: port 9)."""
    if local.tcp:
        return f"a=candidate:1 1 tcp 1518280447 {local.host} 9 typ host tcptype active"
    return f"a=candidate:1 1 udp 2130706431 {local.host} {local.port} typ host"


def _simulcast_lines(rids: tuple[str, ...]) -> list[str]:
    """What a simulcast sender writes for its m-line: a=rid per layer and a=simulcast:send."""
    return [f"a=rid:{rid} send" for rid in rids] + [f"a=simulcast:send {';'.join(rids)}"]


def build_answer(
    offer: OfferInfo, local: LocalMedia, sending: dict[str, tuple[str, int]],
    simulcast: Mapping[str, tuple[str, ...]] | None = None,
) -> str:  # fmt: skip
    """The answer: ``sending`` maps mid -> (kind, ssrc) for the m-lines we publish on;
    ``simulcast`` mid -> rids for those sent in simulcast (no a=ssrc there, RFC 8853)."""
    simulcast = simulcast or {}
    mids = [m.mid for m in offer.media]
    lines = [
        "v=0",
        f"o=- {local.port} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {' '.join(mids)}",
        "a=msid-semantic: WMS *",
    ]
    for m in offer.media:
        codec = "opus" if m.kind == "audio" else "VP8"
        pt = m.payload_type(codec)
        pts = _codec_lines(m, pt) if pt is not None else []
        formats = sorted({int(ln.split(":", 1)[1].split()[0]) for ln in pts}, key=lambda p: p != pt)
        if m.direction == "recvonly":
            direction = "sendonly" if m.mid in sending else "inactive"
        elif m.direction == "sendonly":
            direction = "recvonly"
        else:
            direction = "inactive"
        lines += [
            f"m={m.kind} 9 UDP/TLS/RTP/SAVPF {' '.join(map(str, formats or [0]))}",
            "c=IN IP4 0.0.0.0",
            f"a=mid:{m.mid}",
            f"a=ice-ufrag:{local.ufrag}",
            f"a=ice-pwd:{local.pwd}",
            f"a=fingerprint:sha-256 {local.fingerprint}",
            "a=setup:active",
            "a=rtcp-mux",
            f"a={direction}",
            *(f"a=extmap:{ident} {uri}" for uri, ident in m.extensions.items()),
            *pts,
        ]
        if direction == "sendonly" and m.mid in simulcast:
            lines += [
                f"a=msid:{local.stream} {local.stream}-{m.kind}",
                *_simulcast_lines(simulcast[m.mid]),
            ]
        elif direction == "sendonly":
            ssrc = sending[m.mid][1]
            lines += [
                f"a=msid:{local.stream} {local.stream}-{m.kind}",
                f"a=ssrc:{ssrc} cname:{local.cname}",
                f"a=ssrc:{ssrc} msid:{local.stream} {local.stream}-{m.kind}",
            ]
        lines.append(_candidate(local))
    return "\r\n".join(lines) + "\r\n"


#: The header extensions a publisher offers (the ones ``client.MediaLeg`` writes), per kind.
OFFER_EXTENSIONS = {
    "audio": [(1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
              (4, "urn:ietf:params:rtp-hdrext:sdes:mid")],
    "video": [(2, "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
              (4, "urn:ietf:params:rtp-hdrext:sdes:mid")],
}  # fmt: skip
OPUS_PT, VP8_PT = 111, 96


def build_offer(
    local: LocalMedia, sending: dict[str, tuple[str, int]],
    simulcast: Mapping[str, tuple[str, ...]] | None = None,
) -> str:  # fmt: skip
    """A publisher's offer: one sendonly m-line per ``sending`` entry (mid -> (kind, ssrc)).

    Opus (48 kHz stereo, in-band FEC) or VP8 with NACK/PLI/FIR feedback, BUNDLE, rtcp-mux,
    ``a=setup:actpass`` (the answerer picks the DTLS role), no RTX, our one host candidate.
    A video mid in ``simulcast`` (mid -> rids, lowest first) is offered as Chrome offers
    simulcast: the rtp-stream-id extension, a=rid per layer, a=simulcast:send, no a=ssrc.
    """
    simulcast = simulcast or {}
    lines = [
        "v=0",
        f"o=- {local.port} 2 IN IP4 {local.host}",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {' '.join(sending)}",
        "a=msid-semantic: WMS *",
    ]
    for mid, (kind, ssrc) in sending.items():
        if kind == "audio":
            pt = OPUS_PT
            codec = [f"a=rtpmap:{pt} opus/48000/2", f"a=fmtp:{pt} minptime=10;useinbandfec=1"]
        elif kind == "video":
            pt = VP8_PT
            codec = [f"a=rtpmap:{pt} VP8/90000"] + [
                f"a=rtcp-fb:{pt} {fb}" for fb in ("ccm fir", "nack", "nack pli")
            ]
        else:
            raise ValueError(f"cannot offer {kind!r}")
        lines += [
            f"m={kind} 9 UDP/TLS/RTP/SAVPF {pt}",
            "c=IN IP4 0.0.0.0",
            f"a=mid:{mid}",
            f"a=ice-ufrag:{local.ufrag}",
            f"a=ice-pwd:{local.pwd}",
            f"a=fingerprint:sha-256 {local.fingerprint}",
            "a=setup:actpass",
            "a=rtcp-mux",
            "a=sendonly",
            *(f"a=extmap:{ident} {uri}" for ident, uri in OFFER_EXTENSIONS[kind]),
        ]
        rids = simulcast.get(mid) if kind == "video" else None
        if rids:
            lines.append(f"a=extmap:{RID_ID} {RID_URI}")
        lines += [*codec, f"a=msid:{local.stream} {local.stream}-{kind}"]
        if rids:
            lines += _simulcast_lines(rids)
        else:
            lines += [
                f"a=ssrc:{ssrc} cname:{local.cname}",
                f"a=ssrc:{ssrc} msid:{local.stream} {local.stream}-{kind}",
            ]
        lines += [_candidate(local), "a=end-of-candidates"]
    return "\r\n".join(lines) + "\r\n"
