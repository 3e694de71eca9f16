"""SDP values for the WebRTC subset and the one SDP writer (``str()``).

Owns the data model of an offer/answer (session, m-sections, codecs, header extensions, SSRCs)
and value -> text. Implements RFC 8866 (SDP syntax, line order), the attributes
of RFC 8829 (JSEP) used by browsers: RFC 8843 (BUNDLE groups), RFC 8285 (extmap),
RFC 5576 (ssrc, ssrc-group), RFC 8830 (msid), RFC 8851/8853 (rid, simulcast), RFC 8839
(ice-ufrag/pwd/options, candidates, end-of-candidates, ice-lite), RFC 8122 (fingerprint),
RFC 4145 (setup), RFC 5761 (rtcp-mux), RFC 5506 (rtcp-rsize), RFC 4585 (rtcp-fb),
RFC 8841 (sctp-port, max-message-size). Attributes it does not model are kept in order in
``other`` and written back, so building a parsed browser SDP keeps every line (attribute order
inside a section is canonicalised: the order of the server's own offers and answers, which
``render`` builds as values of this module and this writer writes).

Private to ``zvonok.media.sdp``: import the names from ``description`` (which adds
``SessionDescription.parse``). The bottom of the package: the parser (``_text``) and
``description`` import this module, never the other way round. Imports only ``zvonok.media.sdp``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Self

from .candidate import Candidate

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(slots=True)
class RtpCodec:
    """One payload type of an m-line: rtpmap + fmtp + rtcp-fb.

    ``fmtp`` maps parameter names to values; a parameter without ``=`` (``0-15`` of
    telephone-event, ``111/111`` of red) maps to ``""``. ``fmtp_raw`` keeps the text as written
    and is reused when building as long as ``fmtp`` still says the same.
    """

    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: dict[str, str] = field(default_factory=dict)
    rtcp_fb: list[str] = field(default_factory=list)
    fmtp_raw: str | None = field(default=None, compare=False)

    def fmtp_text(self) -> str:
        """The parameter text of this codec's ``a=fmtp`` line."""
        if self.fmtp_raw is not None and parse_fmtp(self.fmtp_raw) == self.fmtp:
            return self.fmtp_raw
        return ";".join(f"{k}={v}" if v else k for k, v in self.fmtp.items())


@dataclass(slots=True)
class HeaderExtension:
    """``a=extmap:<id>[/<direction>] <uri> [<attributes>]`` (RFC 8285 §8)."""

    id: int
    uri: str
    direction: str | None = None
    attributes: str | None = None


@dataclass(slots=True)
class SsrcGroup:
    """``a=ssrc-group:<semantics> <ssrc>...`` (RFC 5576 §4.2), e.g. FID or SIM."""

    semantics: str
    ssrcs: list[int]


@dataclass(slots=True)
class Rid:
    """``a=rid:<id> <send|recv> [<restrictions>]`` (RFC 8851 §10); restrictions kept as text."""

    id: str
    direction: str
    params: str | None = None


@dataclass(slots=True)
class Origin:
    """The ``o=`` line (RFC 8866 §5.2); ``session_id`` is kept as written (digits)."""

    username: str = "-"
    session_id: str = "0"
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"


@dataclass(slots=True)
class MediaDescription:
    """One m-section. ``connection`` is the ``c=`` line as (nettype, addrtype, address).

    ``extra_lines`` keeps other non-attribute lines (``b=``, ``i=``, ``k=``) as (type, value);
    ``other`` keeps attributes not modelled here as (name, value or None), in order.
    """

    kind: str
    port: int
    protocol: str
    formats: list[str]
    mid: str | None = None
    direction: str | None = None
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: list[str] = field(default_factory=list)
    fingerprints: list[tuple[str, str]] = field(default_factory=list)
    setup: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    end_of_candidates: bool = False
    codecs: list[RtpCodec] = field(default_factory=list)
    extensions: list[HeaderExtension] = field(default_factory=list)
    ssrcs: dict[int, dict[str, str]] = field(default_factory=dict)
    ssrc_groups: list[SsrcGroup] = field(default_factory=list)
    msid: tuple[str, str] | None = None
    rids: list[Rid] = field(default_factory=list)
    simulcast: str | None = None
    sctp_port: int | None = None
    max_message_size: int | None = None
    connection: tuple[str, str, str] | None = None
    extra_lines: list[tuple[str, str]] = field(default_factory=list)
    other: list[tuple[str, str | None]] = field(default_factory=list)

    def codec_by_pt(self, pt: int) -> RtpCodec | None:
        """The codec with payload type ``pt``, if this m-line has one."""
        return next((c for c in self.codecs if c.payload_type == pt), None)

    def rtx_apt(self) -> dict[int, int]:
        """``{rtx payload type: the payload type it repairs}`` (RFC 4588 §8.6)."""
        out: dict[int, int] = {}
        for codec in self.codecs:
            apt = codec.fmtp.get("apt", "")
            if codec.name.lower() == "rtx" and apt.isascii() and apt.isdigit():
                out[codec.payload_type] = int(apt)
        return out

    def ssrc_of_media(self) -> int | None:
        """The primary SSRC: the first one that is not the second member of a FID group."""
        repair = {grp.ssrcs[1] for grp in self.ssrc_groups if _is_fid(grp)}
        return next((s for s in self.ssrcs if s not in repair), None)

    def rtx_ssrc(self) -> int | None:
        """The RTX SSRC paired with the primary one by ``a=ssrc-group:FID``."""
        primary = self.ssrc_of_media()
        fids = [grp.ssrcs for grp in self.ssrc_groups if _is_fid(grp)]
        pair = next((f for f in fids if f[0] == primary), fids[0] if fids else None)
        return pair[1] if pair is not None and len(pair) > 1 else None

    def __str__(self) -> str:
        return "\r\n".join(_media_lines(self)) + "\r\n"


@dataclass(slots=True)
class SessionModel:
    """A whole offer or answer. ``bundle`` lists the mids of each ``a=group:BUNDLE``.

    The fields and the writer; ``description.SessionDescription`` is the public class.
    """

    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    timing: str = "0 0"
    connection: tuple[str, str, str] | None = None
    bundle: list[list[str]] = field(default_factory=list)
    ice_lite: bool = False
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: list[str] = field(default_factory=list)
    fingerprints: list[tuple[str, str]] = field(default_factory=list)
    setup: str | None = None
    msid_semantic: str | None = None
    extmap_allow_mixed: bool = False
    media: list[MediaDescription] = field(default_factory=list)
    extra_lines: list[tuple[str, str]] = field(default_factory=list)
    other: list[tuple[str, str | None]] = field(default_factory=list)

    def with_session_defaults(self) -> Self:
        """A copy whose m-sections inherit session-level ICE, fingerprint and setup values."""
        out = copy.deepcopy(self)
        for media in out.media:
            media.ice_ufrag = media.ice_ufrag or out.ice_ufrag
            media.ice_pwd = media.ice_pwd or out.ice_pwd
            media.ice_options = media.ice_options or list(out.ice_options)
            media.fingerprints = media.fingerprints or list(out.fingerprints)
            media.setup = media.setup or out.setup
        return out

    def media_by_mid(self, mid: str) -> MediaDescription | None:
        """The m-section whose ``a=mid`` is ``mid``."""
        return next((m for m in self.media if m.mid == mid), None)

    def __str__(self) -> str:
        lines = _session_lines(self)
        for media in self.media:
            lines.extend(_media_lines(media))
        return "\r\n".join(lines) + "\r\n"


def parse_fmtp(text: str) -> dict[str, str]:
    """``"a=b;c=d"`` -> ``{"a": "b", "c": "d"}``; a parameter without ``=`` maps to ``""``."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name.strip()] = value.strip()
    return out


def _is_fid(group: SsrcGroup) -> bool:
    return group.semantics == "FID" and len(group.ssrcs) >= 2


# ---------------------------------------------------------------------- builder
SESSION_LINE_ORDER = "iuepcbtrzk"
MEDIA_LINE_ORDER = "icbk"


def _a(name: str, value: object = None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def in_line_order(lines: list[tuple[str, str]], order: str) -> list[tuple[str, str]]:
    """``lines`` (``(type, value)``) in the RFC 4566 §5 order ``order``; stable within a type.
    The parser stores them so, because they are always written so."""
    return sorted(lines, key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


def _typed_lines(lines: list[tuple[str, str]], order: str) -> list[str]:
    return [f"{kind}={value}" for kind, value in in_line_order(lines, order)]


def _transport_lines(scope: SessionModel | MediaDescription) -> list[str]:
    out = []
    if scope.ice_ufrag is not None:
        out.append(_a("ice-ufrag", scope.ice_ufrag))
    if scope.ice_pwd is not None:
        out.append(_a("ice-pwd", scope.ice_pwd))
    if scope.ice_options:
        out.append(_a("ice-options", " ".join(scope.ice_options)))
    out += [_a("fingerprint", f"{algo} {value}") for algo, value in scope.fingerprints]
    if scope.setup is not None:
        out.append(_a("setup", scope.setup))
    return out


def _session_lines(desc: SessionModel) -> list[str]:
    """v=, o=, s=, the other session lines in RFC 8866 order, then session attributes."""
    o = desc.origin
    typed = [*desc.extra_lines, ("t", desc.timing)]
    if desc.connection is not None:
        typed.append(("c", " ".join(desc.connection)))
    out = ["v=0", f"o={o.username} {o.session_id} {o.session_version} {o.nettype}"]
    out[-1] += f" {o.addrtype} {o.address}"
    out += [f"s={desc.session_name}", *_typed_lines(typed, SESSION_LINE_ORDER)]
    if desc.ice_lite:
        out.append(_a("ice-lite"))
    out += [_a("group", " ".join(["BUNDLE", *mids])) for mids in desc.bundle]
    out += _transport_lines(desc)
    if desc.extmap_allow_mixed:
        out.append(_a("extmap-allow-mixed"))
    if desc.msid_semantic is not None:
        out.append(_a("msid-semantic", desc.msid_semantic))
    out += [_a(name, value) for name, value in desc.other]
    return out


def _codec_lines(codec: RtpCodec) -> list[str]:
    channels = f"/{codec.channels}" if codec.channels is not None else ""
    pt = codec.payload_type
    out = [_a("rtpmap", f"{pt} {codec.name}/{codec.clock_rate}{channels}")]
    out += [_a("rtcp-fb", f"{pt} {fb}") for fb in codec.rtcp_fb]
    if codec.fmtp:
        out.append(_a("fmtp", f"{pt} {codec.fmtp_text()}"))
    return out


def _rtp_lines(m: MediaDescription) -> list[str]:
    out = [_a(flag) for flag, on in (("rtcp-mux", m.rtcp_mux), ("rtcp-rsize", m.rtcp_rsize)) if on]
    if m.direction is not None:
        out.append(_a(m.direction))
    for ext in m.extensions:
        ext_dir = f"/{ext.direction}" if ext.direction else ""
        ext_attrs = f" {ext.attributes}" if ext.attributes else ""
        out.append(_a("extmap", f"{ext.id}{ext_dir} {ext.uri}{ext_attrs}"))
    for codec in m.codecs:
        out += _codec_lines(codec)
    if m.msid is not None:
        out.append(_a("msid", " ".join(part for part in m.msid if part)))
    out += [_a("rid", " ".join(p for p in (r.id, r.direction, r.params) if p)) for r in m.rids]
    if m.simulcast is not None:
        out.append(_a("simulcast", m.simulcast))
    out += [_a("ssrc-group", " ".join([g.semantics, *map(str, g.ssrcs)])) for g in m.ssrc_groups]
    for ssrc, attrs in m.ssrcs.items():
        out += [_a("ssrc", f"{ssrc} {k}:{v}" if v else f"{ssrc} {k}") for k, v in attrs.items()]
    return out


def _media_lines(m: MediaDescription) -> list[str]:
    """One m-section in canonical order: mid, transport, RTP attributes (rtcp-mux/rsize,
    direction, extmap, codecs, msid, rid/simulcast, ssrc), other, candidates."""
    typed = list(m.extra_lines)
    if m.connection is not None:
        typed.append(("c", " ".join(m.connection)))
    out = [f"m={m.kind} {m.port} {m.protocol} {' '.join(m.formats)}"]
    out += _typed_lines(typed, MEDIA_LINE_ORDER)
    if m.mid is not None:
        out.append(_a("mid", m.mid))
    out += _transport_lines(m)
    out += _rtp_lines(m)
    if m.sctp_port is not None:
        out.append(_a("sctp-port", m.sctp_port))
    if m.max_message_size is not None:
        out.append(_a("max-message-size", m.max_message_size))
    out += [_a(name, value) for name, value in m.other]
    out += [f"a={cand}" for cand in m.candidates]
    if m.end_of_candidates:
        out.append(_a("end-of-candidates"))
    return out
