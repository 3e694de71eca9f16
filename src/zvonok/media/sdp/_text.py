"""The SDP parser behind ``SessionDescription.parse``: line state machine, attribute grammars.

Private to ``zvonok.media.sdp``; use ``SessionDescription.parse`` (building is ``str()`` in
``_model.py``). Fills the values of ``_model`` and never imports ``description`` (which imports
this module). Implements the
line syntax and order of RFC 8866 §5 and the value grammars of the attributes listed in
``_model.py``. Every malformed line raises ``ValueError("line N: ...")``. Imports only
``zvonok.media.sdp``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ._model import (
    DIRECTIONS,
    MEDIA_LINE_ORDER,
    SESSION_LINE_ORDER,
    HeaderExtension,
    MediaDescription,
    Origin,
    Rid,
    RtpCodec,
    SessionModel,
    SsrcGroup,
    in_line_order,
    parse_fmtp,
)
from .candidate import Candidate

Scope = SessionModel | MediaDescription

SETUP_ROLES = ("active", "passive", "actpass", "holdconn")
#: RFC 3551 §6 static payload types that browsers may list without an rtpmap.
STATIC_PAYLOAD_TYPES = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000), 13: ("CN", 8000)}

_A = re.ASCII
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]{1,64}", _A)
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]{1,256}", _A)
_M_LINE = re.compile(r"([a-z][a-z0-9-]{0,31}) ([0-9]{1,5}) (\S{1,64})((?: \S{1,32})+)", _A)
_ORIGIN = re.compile(r"(\S+) ([0-9]{1,20}) ([0-9]{1,20}) (\S+) (\S+) (\S+)", _A)
_CONNECTION = re.compile(r"(\S+) (\S+) (\S+)", _A)
_RTPMAP = re.compile(r"([0-9]{1,3}) ([^/\s]{1,64})/([0-9]{1,10})(?:/([0-9]{1,3}))?", _A)
_FMTP = re.compile(r"([0-9]{1,3}) (\S.*)", _A)
_RTCP_FB = re.compile(r"([0-9]{1,3}) (\S.*)", _A)
_EXTMAP = re.compile(r"([0-9]{1,5})(?:/([a-z]+))? (\S+)(?: (\S.*))?", _A)
_SSRC = re.compile(r"([0-9]{1,10}) ([^:\s]+)(?::(.*))?", _A)
_SSRC_GROUP = re.compile(r"(\S+)((?: [0-9]{1,10})+)", _A)
_MSID = re.compile(r"(\S{1,64})(?: (\S{1,64}))?", _A)
_RID = re.compile(r"([A-Za-z0-9_-]{1,255}) (send|recv)(?: (\S.*))?", _A)
_FINGERPRINT = re.compile(r"([A-Za-z0-9-]{1,16}) ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){15,63})", _A)
_GROUP = re.compile(r"(\S+)((?: \S+)*)", _A)
_DIGITS = re.compile(r"[0-9]{1,20}", _A)


class _Located(ValueError):
    """A ValueError that already names its line."""


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _match(pattern: re.Pattern[str], value: str | None, what: str) -> re.Match[str]:
    found = pattern.fullmatch(value) if value is not None else None
    if found is None:
        raise ValueError(f"bad a={what} value {_short(value or '')}")
    return found


def _int(text: str, low: int, high: int, what: str) -> int:
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise ValueError(f"{what} {_short(text)} not in {low}..{high}")
    return int(text)


class SdpParser:
    """Feeds lines into a ``SessionDescription``; one instance per parse."""

    def __init__(self, desc: SessionModel, max_media: int) -> None:
        self.desc = desc
        self.max_media = max_media
        self.media: MediaDescription | None = None
        self.media_line = 0
        self.number = 0
        self.rtpmaps: dict[int, tuple[str, int, int | None]] = {}
        self.fmtps: dict[int, str] = {}
        self.feedback: dict[int, list[str]] = {}
        self.seen: set[str] = set()

    def feed(self, text: str) -> None:
        started = False
        for number, raw in enumerate(text.split("\n"), 1):
            line = raw[:-1] if raw.endswith("\r") else raw
            if not line:
                continue
            self.number = number
            try:
                if not started and line != "v=0":
                    raise ValueError(f"SDP must start with 'v=0', not {_short(line)}")
                if started:
                    self._line(line)
                started = True
            except _Located:
                raise
            except ValueError as exc:
                raise ValueError(f"line {self.number}: {exc}") from None
        if not started:
            raise ValueError("empty SDP")
        self._close_media()
        self.desc.extra_lines = in_line_order(self.desc.extra_lines, SESSION_LINE_ORDER)
        for media in self.desc.media:
            media.extra_lines = in_line_order(media.extra_lines, MEDIA_LINE_ORDER)
        missing = [k for k in "os" if k not in self.seen]
        if missing:
            raise ValueError(f"line {self.number}: SDP has no {missing[0]}= line")

    def _line(self, line: str) -> None:
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise ValueError(f"not a <type>=<value> line: {_short(line)}")
        kind, value = line[0], line[2:]
        if kind == "a":
            self._attribute(value)
        elif kind == "m":
            self._start_media(line)
        elif kind == "c":
            self._connection(value)
        elif self.media is not None and kind in "ibk":
            self.media.extra_lines.append((kind, value))
        elif self.media is None:
            self._session_line(kind, value)
        else:
            raise ValueError(f"{kind}= line inside a media section")

    def _session_line(self, kind: str, value: str) -> None:
        if kind in "ovst" and (kind in self.seen or kind == "v"):
            raise ValueError(f"duplicate {kind}= line")
        if kind == "o":
            self._origin(value)
        elif kind == "s":
            self.desc.session_name = value
        elif kind == "t":
            self.desc.timing = value
        elif kind in SESSION_LINE_ORDER:
            self.desc.extra_lines.append((kind, value))
        else:
            raise ValueError(f"unknown line type {kind + '='!r}")
        self.seen.add(kind)

    def _origin(self, value: str) -> None:
        found = _ORIGIN.fullmatch(value)
        if found is None:
            raise ValueError(f"bad o= line {_short('o=' + value)}")
        user, sid, version, net, addrtype, addr = found.groups()
        self.desc.origin = Origin(user, sid, int(version), net, addrtype, addr)

    def _connection(self, value: str) -> None:
        found = _CONNECTION.fullmatch(value)
        if found is None:
            raise ValueError(f"bad c= line {_short('c=' + value)}")
        conn = (found[1], found[2], found[3])
        if self.media is None:
            self.desc.connection = conn
        else:
            self.media.connection = conn

    def _start_media(self, line: str) -> None:
        self._close_media()
        found = _M_LINE.fullmatch(line[2:])
        if found is None or int(found[2]) > 65535:
            raise ValueError(f"bad m= line {_short(line)}")
        if len(self.desc.media) >= self.max_media:
            raise ValueError(f"more than {self.max_media} m= lines")
        formats = found[4].split()
        if "RTP" in found[3] and not all(_DIGITS.fullmatch(f) and int(f) < 128 for f in formats):
            raise ValueError(f"bad m= line {_short(line)}: payload types are 0..127")
        if len(set(formats)) != len(formats):
            raise ValueError(f"bad m= line {_short(line)}: a format is listed twice")
        self.media = MediaDescription(found[1], int(found[2]), found[3], formats)
        self.media_line = self.number
        self.desc.media.append(self.media)
        self.seen = {k for k in self.seen if len(k) == 1}

    def _close_media(self) -> None:
        media = self.media
        if media is None:
            return
        for fmt in media.formats if "RTP" in media.protocol else []:
            pt = int(fmt)
            rtpmap = self.rtpmaps.get(pt)
            if rtpmap is None and pt in STATIC_PAYLOAD_TYPES:
                rtpmap = (*STATIC_PAYLOAD_TYPES[pt], None)
            if rtpmap is None:
                if media.port == 0:
                    continue
                raise _Located(f"line {self.media_line}: payload type {pt} has no a=rtpmap")
            raw = self.fmtps.get(pt)
            fmtp = parse_fmtp(raw) if raw is not None else {}
            fb = self.feedback.get(pt, [])
            media.codecs.append(RtpCodec(pt, rtpmap[0], rtpmap[1], rtpmap[2], fmtp, fb, raw))
        self.rtpmaps, self.fmtps, self.feedback = {}, {}, {}

    def _attribute(self, text: str) -> None:
        name, sep, rest = text.partition(":")
        value = rest if sep else None
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"bad attribute name {_short(name)}")
        if self.media is None:
            handler = SESSION_ATTRIBUTES.get(name)
            target: Scope = self.desc
        else:
            handler = MEDIA_ATTRIBUTES.get(name)
            target = self.media
        if handler is None:
            target.other.append((name, value))
            return
        if name in SINGLE and name in self.seen:
            raise ValueError(f"duplicate a={name}")
        self.seen.add(name)
        handler(self, target, value)


# ---------------------------------------------------------------------- attribute handlers
Handler = Callable[[SdpParser, Scope, "str | None"], None]


def _need(value: str | None, name: str) -> str:
    if not value:
        raise ValueError(f"a={name} needs a value")
    return value


def _ice_ufrag(p: SdpParser, t: Scope, value: str | None) -> None:
    t.ice_ufrag = _match(_ICE_CHARS, value, "ice-ufrag")[0]


def _ice_pwd(p: SdpParser, t: Scope, value: str | None) -> None:
    t.ice_pwd = _match(_ICE_CHARS, value, "ice-pwd")[0]


def _ice_options(p: SdpParser, t: Scope, value: str | None) -> None:
    t.ice_options = _need(value, "ice-options").split()


def _fingerprint(p: SdpParser, t: Scope, value: str | None) -> None:
    found = _match(_FINGERPRINT, value, "fingerprint")
    t.fingerprints.append((found[1], found[2]))


def _setup(p: SdpParser, t: Scope, value: str | None) -> None:
    if value not in SETUP_ROLES:
        raise ValueError(f"bad a=setup value {_short(value or '')}")
    t.setup = value


def _group(p: SdpParser, t: Scope, value: str | None) -> None:
    found = _match(_GROUP, value, "group")
    if found[1] == "BUNDLE":
        p.desc.bundle.append(found[2].split())
    else:
        p.desc.other.append(("group", value))


def _ice_lite(p: SdpParser, t: Scope, value: str | None) -> None:
    p.desc.ice_lite = True


def _msid_semantic(p: SdpParser, t: Scope, value: str | None) -> None:
    p.desc.msid_semantic = _need(value, "msid-semantic")


def _allow_mixed(p: SdpParser, t: Scope, value: str | None) -> None:
    p.desc.extmap_allow_mixed = True


def _media(p: SdpParser) -> MediaDescription:
    assert p.media is not None
    return p.media


def _mid(p: SdpParser, t: Scope, value: str | None) -> None:
    _media(p).mid = _match(_TOKEN, value, "mid")[0]


def _direction(p: SdpParser, t: Scope, value: str | None) -> None:
    if "direction" in p.seen:
        raise ValueError("more than one direction attribute")
    p.seen.add("direction")


def _flag(name: str) -> Handler:
    def handler(p: SdpParser, t: Scope, value: str | None) -> None:
        media = _media(p)
        if name in DIRECTIONS:
            _direction(p, t, value)
            media.direction = name
        elif name == "rtcp-mux":
            media.rtcp_mux = True
        elif name == "rtcp-rsize":
            media.rtcp_rsize = True
        else:
            media.end_of_candidates = True

    return handler


def _candidate(p: SdpParser, t: Scope, value: str | None) -> None:
    _media(p).candidates.append(Candidate.parse("candidate:" + _need(value, "candidate")))


def _listed_pt(p: SdpParser, text: str, what: str) -> int:
    pt = int(text)
    if str(pt) not in _media(p).formats:
        raise ValueError(f"a={what} for payload type {pt}, which the m= line does not list")
    return pt


def _rtpmap(p: SdpParser, t: Scope, value: str | None) -> None:
    found = _match(_RTPMAP, value, "rtpmap")
    pt = _listed_pt(p, found[1], "rtpmap")
    if pt in p.rtpmaps:
        raise ValueError(f"duplicate a=rtpmap for payload type {pt}")
    clock = _int(found[3], 1, 2**32 - 1, "clock rate")
    channels = _int(found[4], 1, 255, "channel count") if found[4] else None
    p.rtpmaps[pt] = (found[2], clock, channels)


def _fmtp(p: SdpParser, t: Scope, value: str | None) -> None:
    found = _match(_FMTP, value, "fmtp")
    pt = _listed_pt(p, found[1], "fmtp")
    if pt in p.fmtps:
        raise ValueError(f"duplicate a=fmtp for payload type {pt}")
    p.fmtps[pt] = found[2]


def _rtcp_fb(p: SdpParser, t: Scope, value: str | None) -> None:
    if value is not None and value.startswith("* "):
        _media(p).other.append(("rtcp-fb", value))
        return
    found = _match(_RTCP_FB, value, "rtcp-fb")
    pt = _listed_pt(p, found[1], "rtcp-fb")
    p.feedback.setdefault(pt, []).append(found[2])


def _extmap(p: SdpParser, t: Scope, value: str | None) -> None:
    found = _match(_EXTMAP, value, "extmap")
    ext_id = _int(found[1], 1, 255, "extmap id")
    if found[2] is not None and found[2] not in DIRECTIONS:
        raise ValueError(f"bad extmap direction {found[2]!r}")
    media = _media(p)
    if any(e.id == ext_id for e in media.extensions):
        raise ValueError(f"duplicate extmap id {ext_id}")
    media.extensions.append(HeaderExtension(ext_id, found[3], found[2], found[4]))


def _ssrc(p: SdpParser, t: Scope, value: str | None) -> None:
    found = _match(_SSRC, value, "ssrc")
    ssrc = _int(found[1], 0, 2**32 - 1, "ssrc")
    _media(p).ssrcs.setdefault(ssrc, {})[found[2]] = found[3] or ""


def _ssrc_group(p: SdpParser, t: Scope, value: str | None) -> None:
    found = _match(_SSRC_GROUP, value, "ssrc-group")
    ssrcs = [_int(s, 0, 2**32 - 1, "ssrc") for s in found[2].split()]
    _media(p).ssrc_groups.append(SsrcGroup(found[1], ssrcs))


def _msid(p: SdpParser, t: Scope, value: str | None) -> None:
    found = _match(_MSID, value, "msid")
    media = _media(p)
    if media.msid is None:
        media.msid = (found[1], found[2] or "")
    else:
        media.other.append(("msid", value))


def _rid(p: SdpParser, t: Scope, value: str | None) -> None:
    found = _match(_RID, value, "rid")
    _media(p).rids.append(Rid(found[1], found[2], found[3]))


def _simulcast(p: SdpParser, t: Scope, value: str | None) -> None:
    _media(p).simulcast = _need(value, "simulcast")


def _sctp_port(p: SdpParser, t: Scope, value: str | None) -> None:
    _media(p).sctp_port = _int(_need(value, "sctp-port"), 0, 65535, "sctp-port")


def _max_message_size(p: SdpParser, t: Scope, value: str | None) -> None:
    size = _need(value, "max-message-size")
    _media(p).max_message_size = _int(size, 0, 2**64 - 1, "max-message-size")


_COMMON: dict[str, Handler] = {
    "ice-ufrag": _ice_ufrag,
    "ice-pwd": _ice_pwd,
    "ice-options": _ice_options,
    "fingerprint": _fingerprint,
    "setup": _setup,
}
SESSION_ATTRIBUTES: dict[str, Handler] = {
    **_COMMON,
    "group": _group,
    "ice-lite": _ice_lite,
    "msid-semantic": _msid_semantic,
    "extmap-allow-mixed": _allow_mixed,
}
MEDIA_ATTRIBUTES: dict[str, Handler] = {
    **_COMMON,
    **{name: _flag(name) for name in (*DIRECTIONS, "rtcp-mux", "rtcp-rsize", "end-of-candidates")},
    "mid": _mid,
    "candidate": _candidate,
    "rtpmap": _rtpmap,
    "fmtp": _fmtp,
    "rtcp-fb": _rtcp_fb,
    "extmap": _extmap,
    "ssrc": _ssrc,
    "ssrc-group": _ssrc_group,
    "msid": _msid,
    "rid": _rid,
    "simulcast": _simulcast,
    "sctp-port": _sctp_port,
    "max-message-size": _max_message_size,
}
#: Attributes that may appear once per scope.
SINGLE = frozenset(
    {"ice-ufrag", "ice-pwd", "ice-options", "setup", "ice-lite", "msid-semantic", "mid"}
    | {"rtcp-mux", "rtcp-rsize", "simulcast", "sctp-port", "max-message-size"}
    | {"extmap-allow-mixed", "end-of-candidates"}
)
