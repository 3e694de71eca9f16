"""The signaling vocabulary: one frozen dataclass per client and per server message.

Owns the wire format of ``docs/protocol.md``: the envelope ``{"type", "payload", "roomId",
"sessionId"}``, with ``payload`` accepted as an object or as a JSON-encoded string (the spec's
"JSON-encoded data"). Every message has ``parse`` (from the decoded JSON object) and ``to_json``
(the object to encode), and ``parse(m.to_json()) == m``:

- a client message (``Join``, ``Offer``, ``Answer``, ``Ice``, ``Leave``, ``TrackSettings``) is the
  whole envelope:
  it carries ``roomId`` (as the client wrote it, number or string) and ``sessionId``;
- a server message (``Joined`` … ``Speakers``) is its ``payload``: the envelope's ``roomId`` and
  ``sessionId`` belong to the connection and are added by ``encode_server_message``. The one
  exception, ``StatsFrame``, is what the server sends as ``stats``: the payload object the quality
  monitor built, kept as it is (``to_json`` returns it; a receiver parses it as ``Stats``).

Parsing never raises anything but ``MessageError`` (a ``ValueError``) whose ``code`` is the
``error`` code the client is told: ``bad-json``, ``bad-message``, ``bad-sdp`` (an oversized
description) and, from ``IcePayload.parsed_candidate``, ``bad-candidate``. The candidate grammar
is checked there, when the message is used, so that a candidate is judged after the envelope's
room and session (the order the server has always answered in).

This is the boundary between signaling and rooms (``rooms`` sends these through ``SignalSink``;
issue 13's worker link will carry them). It imports nothing from ``rooms``, and from ``media``
only the RFC 8839 candidate grammar (``media.sdp.candidate``, a leaf that imports nothing).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from ..ids import SESSION_ID_RE, SessionId
from ..media.sdp.candidate import Candidate

ClientType = Literal["join", "offer", "answer", "ice", "leave", "track-settings"]
#: The largest SDP text we accept inside a message (the frame limit bounds it too).
MAX_SDP_CHARS = 128 * 1024
MAX_CANDIDATE_CHARS = 1024
#: ``track-settings``: at most this many entries, track ids at most this long, sizes at most this.
MAX_TRACK_SETTINGS = 64
MAX_TRACK_ID_CHARS = 64
MAX_TRACK_SIZE = 16384
#: ``participant-left`` reasons (docs/protocol.md).
LEAVE_REASONS = ("leave", "disconnect", "failed", "shutdown", "kicked", "room-closed")
#: ``state`` values: the spec's connection states.
CONNECTION_STATES = ("new", "connecting", "connected", "disconnected", "failed", "closed")

JsonObject = dict[str, Any]


class MessageError(ValueError):
    """A frame that cannot be used; ``code`` is sent back in the ``error`` message."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


# ---------------------------------------------------------------------------- payload parts
@dataclass(frozen=True, slots=True)
class SessionDescriptionPayload:
    """``{"type": "offer"|"answer", "sdp": "..."}``."""

    type: Literal["offer", "answer"]
    sdp: str

    @classmethod
    def parse(
        cls, payload: Mapping[str, object] | None, msg_type: Literal["offer", "answer"], ref: str
    ) -> SessionDescriptionPayload:
        if payload is None:
            raise MessageError("bad-message", f"'{msg_type}' needs a payload {{type, sdp}}", ref)
        sdp = payload.get("sdp")
        if not isinstance(sdp, str) or not sdp:
            raise MessageError("bad-message", "payload.sdp must be a non-empty string", ref)
        if len(sdp) > MAX_SDP_CHARS:
            raise MessageError("bad-sdp", f"payload.sdp is longer than {MAX_SDP_CHARS}", ref)
        kind = payload.get("type", msg_type)
        if kind != msg_type:
            raise MessageError("bad-message", f"payload.type {kind!r} != message type", ref)
        return cls(type=msg_type, sdp=sdp)

    def to_json(self) -> JsonObject:
        return {"type": self.type, "sdp": self.sdp}


@dataclass(frozen=True, slots=True)
class IcePayload:
    """A trickled candidate; ``candidate == ""`` marks the end of candidates."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None
    username_fragment: str | None = None

    @property
    def end_of_candidates(self) -> bool:
        return self.candidate == ""

    @classmethod
    def parse(cls, payload: Mapping[str, object] | None, ref: str) -> IcePayload:
        if payload is None:
            return cls(candidate="", sdp_mid=None, sdp_mline_index=None)
        candidate = payload.get("candidate")
        if candidate is None:
            candidate = ""
        if not isinstance(candidate, str):
            raise MessageError("bad-message", "payload.candidate must be a string", ref)
        if len(candidate) > MAX_CANDIDATE_CHARS:
            raise MessageError("bad-message", "payload.candidate is too long", ref)
        mid = payload.get("sdpMid")
        if mid is not None and (not isinstance(mid, str) or len(mid) > 64):
            raise MessageError("bad-message", "payload.sdpMid must be a short string or null", ref)
        index = payload.get("sdpMLineIndex")
        if index is not None and (
            isinstance(index, bool) or not isinstance(index, int) or index < 0
        ):
            raise MessageError("bad-message", "payload.sdpMLineIndex must be an integer >= 0", ref)
        ufrag = payload.get("usernameFragment")
        if ufrag is not None and not isinstance(ufrag, str):
            raise MessageError("bad-message", "payload.usernameFragment must be a string", ref)
        return cls(candidate, mid, index, ufrag)

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "candidate": self.candidate,
            "sdpMid": self.sdp_mid,
            "sdpMLineIndex": self.sdp_mline_index,
        }
        if self.username_fragment is not None:
            out["usernameFragment"] = self.username_fragment
        return out

    def parsed_candidate(self) -> Candidate | None:
        """The candidate (RFC 8839 §5.1), ``None`` at the end of candidates.

        Raises ``MessageError`` ``bad-candidate`` (ref ``ice``) when it does not parse.
        """
        if self.candidate == "":
            return None
        try:
            return Candidate.parse(self.candidate)
        except ValueError as exc:
            raise MessageError("bad-candidate", f"bad ICE candidate: {exc}", "ice") from None


# ---------------------------------------------------------------------------- client messages
@dataclass(frozen=True, slots=True)
class _Envelope:
    """What every client message carries: ``roomId`` as written, and ``sessionId``."""

    raw_room_id: int | str
    session_id: SessionId

    @property
    def room_id(self) -> str:
        """``roomId`` as the room's id text (``1`` → ``"1"``)."""
        return str(self.raw_room_id)

    def _frame(self, msg_type: str, payload: JsonObject | None) -> JsonObject:
        out: JsonObject = {"type": msg_type}
        if payload is not None:
            out["payload"] = payload
        out["roomId"] = self.raw_room_id
        out["sessionId"] = self.session_id
        return out


@dataclass(frozen=True, slots=True)
class Join(_Envelope):
    """``join``: enter the room, or resume a live session of this user with this ``sessionId``."""

    type: ClassVar[Literal["join"]] = "join"
    description: ClassVar[None] = None
    ice: ClassVar[None] = None

    @classmethod
    def parse(cls, data: Mapping[str, object]) -> Join:
        room, session, _ = _envelope(data, "join")
        return cls(room, session)  # any payload (``{}``) is ignored

    def to_json(self) -> JsonObject:
        return self._frame("join", None)


@dataclass(frozen=True, slots=True)
class Offer(_Envelope):
    """``offer``: the client's offer (publish tracks, ICE restart)."""

    description: SessionDescriptionPayload
    type: ClassVar[Literal["offer"]] = "offer"
    ice: ClassVar[None] = None

    @classmethod
    def parse(cls, data: Mapping[str, object]) -> Offer:
        room, session, payload = _envelope(data, "offer")
        return cls(room, session, SessionDescriptionPayload.parse(payload, "offer", "offer"))

    def to_json(self) -> JsonObject:
        return self._frame("offer", self.description.to_json())


@dataclass(frozen=True, slots=True)
class Answer(_Envelope):
    """``answer``: the answer to the server's outstanding offer."""

    description: SessionDescriptionPayload
    type: ClassVar[Literal["answer"]] = "answer"
    ice: ClassVar[None] = None

    @classmethod
    def parse(cls, data: Mapping[str, object]) -> Answer:
        room, session, payload = _envelope(data, "answer")
        return cls(room, session, SessionDescriptionPayload.parse(payload, "answer", "answer"))

    def to_json(self) -> JsonObject:
        return self._frame("answer", self.description.to_json())


@dataclass(frozen=True, slots=True)
class Ice(_Envelope):
    """``ice``: a trickled candidate, or the end of candidates."""

    ice: IcePayload
    type: ClassVar[Literal["ice"]] = "ice"
    description: ClassVar[None] = None

    @classmethod
    def parse(cls, data: Mapping[str, object]) -> Ice:
        room, session, payload = _envelope(data, "ice")
        return cls(room, session, IcePayload.parse(payload, "ice"))

    def to_json(self) -> JsonObject:
        return self._frame("ice", self.ice.to_json())


@dataclass(frozen=True, slots=True)
class Leave(_Envelope):
    """``leave``: leave the room at once."""

    type: ClassVar[Literal["leave"]] = "leave"
    description: ClassVar[None] = None
    ice: ClassVar[None] = None

    @classmethod
    def parse(cls, data: Mapping[str, object]) -> Leave:
        room, session, _ = _envelope(data, "leave")
        return cls(room, session)

    def to_json(self) -> JsonObject:
        return self._frame("leave", None)


@dataclass(frozen=True, slots=True)
class TrackSetting:
    """One entry of ``track-settings``: a subscriber's wish for one track it receives.

    ``paused``: it wants no video of it now (a hidden tile); ``max_width``/``max_height``: the
    largest picture it can use (its tile's size in device pixels). ``None``: no limit."""

    track_id: str
    paused: bool = False
    max_width: int | None = None
    max_height: int | None = None

    @classmethod
    def parse(cls, item: object, ref: str) -> TrackSetting:
        if not isinstance(item, dict):
            raise MessageError("bad-message", "payload.tracks must hold objects", ref)
        track_id = item.get("trackId")
        if not isinstance(track_id, str) or not 0 < len(track_id) <= MAX_TRACK_ID_CHARS:
            raise MessageError(
                "bad-message", f"trackId must be a string of 1-{MAX_TRACK_ID_CHARS} characters", ref
            )
        paused = item.get("paused")
        if paused is not None and not isinstance(paused, bool):
            raise MessageError("bad-message", "paused must be true or false", ref)
        return cls(
            track_id,
            bool(paused),
            _size(item, "maxWidth", ref),
            _size(item, "maxHeight", ref),
        )

    def to_json(self) -> JsonObject:
        out: JsonObject = {"trackId": self.track_id}
        if self.paused:
            out["paused"] = True
        if self.max_width is not None:
            out["maxWidth"] = self.max_width
        if self.max_height is not None:
            out["maxHeight"] = self.max_height
        return out


def _size(item: Mapping[str, object], key: str, ref: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_TRACK_SIZE:
        raise MessageError("bad-message", f"{key} must be an integer 1-{MAX_TRACK_SIZE}", ref)
    return value


def parse_track_settings(payload: Mapping[str, object] | None) -> tuple[TrackSetting, ...]:
    """The entries of a ``track-settings`` payload ``{"tracks": [...]}`` (also as relayed)."""
    ref = "track-settings"
    if payload is None:
        raise MessageError("bad-message", "'track-settings' needs a payload {tracks}", ref)
    items = payload.get("tracks")
    if not isinstance(items, list):
        raise MessageError("bad-message", "payload.tracks must be a list", ref)
    if len(items) > MAX_TRACK_SETTINGS:
        raise MessageError(
            "bad-message", f"payload.tracks holds more than {MAX_TRACK_SETTINGS} entries", ref
        )
    return tuple(TrackSetting.parse(item, ref) for item in items)


@dataclass(frozen=True, slots=True)
class TrackSettings(_Envelope):
    """``track-settings``: the subscriber's wishes (pause, largest picture) per received track."""

    tracks: tuple[TrackSetting, ...]
    type: ClassVar[Literal["track-settings"]] = "track-settings"
    description: ClassVar[None] = None
    ice: ClassVar[None] = None

    @classmethod
    def parse(cls, data: Mapping[str, object]) -> TrackSettings:
        room, session, payload = _envelope(data, "track-settings")
        return cls(room, session, parse_track_settings(payload))

    def to_json(self) -> JsonObject:
        return self._frame("track-settings", {"tracks": [t.to_json() for t in self.tracks]})


ClientMessage = Join | Offer | Answer | Ice | Leave | TrackSettings
CLIENT_MESSAGES: dict[str, type[ClientMessage]] = {
    "join": Join,
    "offer": Offer,
    "answer": Answer,
    "ice": Ice,
    "leave": Leave,
    "track-settings": TrackSettings,
}
CLIENT_TYPES: frozenset[str] = frozenset(CLIENT_MESSAGES)


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one client frame; raises ``MessageError`` with the code to report."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError("bad-json", f"invalid JSON: {exc}") from None
    except RecursionError:  # deeply nested arrays/objects: json's C decoder gives up
        raise MessageError("bad-json", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise MessageError("bad-json", "a message must be a JSON object")
    return parse_client_object(data)


def parse_client_object(data: Mapping[str, object]) -> ClientMessage:
    """Parse one decoded client envelope (dispatches on ``type``)."""
    msg_type = data.get("type")
    if not isinstance(msg_type, str):
        raise MessageError("bad-message", "missing or non-string 'type'")
    kind = CLIENT_MESSAGES.get(msg_type)
    if kind is None:
        raise MessageError("bad-message", f"unknown message type {msg_type[:40]!r}", msg_type[:40])
    return kind.parse(data)


def _envelope(
    data: Mapping[str, object], ref: str
) -> tuple[int | str, SessionId, Mapping[str, object] | None]:
    """``roomId``, ``sessionId`` and the decoded ``payload`` of a ``ref`` message, checked."""
    if data.get("type") != ref:
        raise MessageError("bad-message", f"'type' is not {ref!r}", ref)
    if "roomId" not in data:
        raise MessageError("bad-message", "missing 'roomId'", ref)
    raw_room = data["roomId"]
    if isinstance(raw_room, bool) or not isinstance(raw_room, int | str):
        raise MessageError("bad-message", "roomId must be a number or a string", ref)
    session_id = data.get("sessionId")
    if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id):
        raise MessageError(
            "bad-message", "'sessionId' must be 1-64 characters of [A-Za-z0-9_.-]", ref
        )
    return raw_room, SessionId(session_id), _payload(data.get("payload"), ref)


def _payload(value: object, ref: str) -> Mapping[str, object] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise MessageError("bad-message", f"'payload' string is not JSON: {exc}", ref) from None
        except RecursionError:
            raise MessageError("bad-message", "'payload' nested too deeply", ref) from None
        if value is None:
            return None
    if not isinstance(value, dict):
        raise MessageError("bad-message", "'payload' must be an object or a JSON string", ref)
    return value


# ---------------------------------------------------------------------------- server messages
#: Reads one checked field: ``(payload, key, ref) -> value``; raises ``MessageError``.
Reader = Callable[[Mapping[str, object], str, str], Any]


def _bad(key: str, what: str, ref: str) -> MessageError:
    return MessageError("bad-message", f"payload.{key} must be {what}", ref)


def _str(obj: Mapping[str, object], key: str, ref: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _bad(key, "a string", ref)
    return value


def _int(obj: Mapping[str, object], key: str, ref: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(key, "an integer", ref)
    return value


def _num(obj: Mapping[str, object], key: str, ref: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _bad(key, "a number", ref)
    return value  # an int stays an int: what was written is written back


def _bool(obj: Mapping[str, object], key: str, ref: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise _bad(key, "true or false", ref)
    return value


def _nullable(read: Reader) -> Reader:
    """A field that is always there and may be ``null``."""

    def nullable(obj: Mapping[str, object], key: str, ref: str) -> Any:
        if key not in obj:
            raise _bad(key, "present (null allowed)", ref)
        return None if obj[key] is None else read(obj, key, ref)

    return nullable


def _omittable(read: Reader) -> Reader:
    """A field that is left out when it has no value."""

    def omittable(obj: Mapping[str, object], key: str, ref: str) -> Any:
        return None if obj.get(key) is None else read(obj, key, ref)

    return omittable


_opt_str = _nullable(_str)
_opt_int = _nullable(_int)
_opt_num = _nullable(_num)


def _choice(*options: str) -> Reader:
    def read(obj: Mapping[str, object], key: str, ref: str) -> str:
        value = obj.get(key)
        if value not in options:
            raise _bad(key, " | ".join(options), ref)
        assert isinstance(value, str)
        return value

    return read


def _strs(obj: Mapping[str, object], key: str, ref: str) -> tuple[str, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(key, "a list of strings", ref)
    return tuple(value)


def _objects(obj: Mapping[str, object], key: str, ref: str) -> list[Mapping[str, object]]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _bad(key, "a list of objects", ref)
    return value


def _parts(part: type[_Part]) -> Reader:
    def read(obj: Mapping[str, object], key: str, ref: str) -> tuple[_Part, ...]:
        return tuple(part.parse(item, ref) for item in _objects(obj, key, ref))

    return read


def _json_objects(obj: Mapping[str, object], key: str, ref: str) -> tuple[JsonObject, ...]:
    return tuple(dict(item) for item in _objects(obj, key, ref))


def _dump(value: object) -> object:
    if isinstance(value, _Part):
        return value.to_json()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    return value


class _Part:
    """A JSON object made of ``FIELDS``: (attribute, JSON key, reader), in wire order."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[tuple[str, str, Reader], ...]] = ()

    @classmethod
    def parse(cls, payload: Mapping[str, object], ref: str | None = None) -> Self:
        """Build from the decoded JSON object; ``MessageError`` ``bad-message`` if unfit."""
        where = ref or cls.__name__
        if not isinstance(payload, Mapping):
            raise MessageError("bad-message", "'payload' must be an object", where)
        return cls(**{name: read(payload, key, where) for name, key, read in cls.FIELDS})

    def to_json(self) -> JsonObject:
        return {key: _dump(getattr(self, name)) for name, key, _ in self.FIELDS}


class _ServerMessage(_Part):
    """A server message: ``TYPE`` and the fields of its ``payload``."""

    __slots__ = ()
    type: ClassVar[str]

    @classmethod
    def parse(cls, payload: Mapping[str, object], ref: str | None = None) -> Self:
        return super().parse(payload, ref or cls.type)


@dataclass(frozen=True, slots=True)
class Peer(_Part):
    """Another session in the room: ``{"sessionId", "userId"}``."""

    session_id: str
    user_id: str
    FIELDS = (("session_id", "sessionId", _str), ("user_id", "userId", _str))


@dataclass(frozen=True, slots=True)
class Joined(_ServerMessage):
    """``joined``: the join was accepted. ``ice_servers`` are RTCIceServer objects, verbatim."""

    session_id: str
    user_id: str
    room: str
    participants: tuple[Peer, ...]
    ice_servers: tuple[JsonObject, ...]
    resumed: bool
    type: ClassVar[str] = "joined"
    FIELDS = (
        ("session_id", "sessionId", _str),
        ("user_id", "userId", _str),
        ("room", "room", _str),
        ("participants", "participants", _parts(Peer)),
        ("ice_servers", "iceServers", _json_objects),
        ("resumed", "resumed", _bool),
    )


@dataclass(frozen=True, slots=True)
class ParticipantJoined(_ServerMessage):
    """``participant-joined``."""

    session_id: str
    user_id: str
    type: ClassVar[str] = "participant-joined"
    FIELDS = Peer.FIELDS


@dataclass(frozen=True, slots=True)
class ParticipantLeft(_ServerMessage):
    """``participant-left``, with one of ``LEAVE_REASONS``."""

    session_id: str
    user_id: str
    reason: str
    type: ClassVar[str] = "participant-left"
    FIELDS = (*Peer.FIELDS, ("reason", "reason", _choice(*LEAVE_REASONS)))


@dataclass(frozen=True, slots=True)
class TrackInfo(_Part):
    """One track a session receives, mapped to its owner (an entry of ``tracks``)."""

    track_id: str
    stream_id: str
    mid: str
    kind: str
    session_id: str
    user_id: str
    FIELDS = (
        ("track_id", "trackId", _str),
        ("stream_id", "streamId", _str),
        ("mid", "mid", _str),
        ("kind", "kind", _choice("audio", "video")),
        *Peer.FIELDS,
    )


@dataclass(frozen=True, slots=True)
class Tracks(_ServerMessage):
    """``tracks``: every track this session receives (sent before each offer that changes it)."""

    tracks: tuple[TrackInfo, ...]
    type: ClassVar[str] = "tracks"
    FIELDS = (("tracks", "tracks", _parts(TrackInfo)),)


def _sdp_reader(kind: str) -> Reader:
    def read(obj: Mapping[str, object], key: str, ref: str) -> str:
        if obj.get("type") != kind:
            raise _bad("type", repr(kind), ref)
        sdp = _str(obj, key, ref)
        if not sdp:
            raise _bad(key, "a non-empty string", ref)
        return sdp

    return read


@dataclass(frozen=True, slots=True)
class ServerOffer(_ServerMessage):
    """``offer`` from the server: ``{"type": "offer", "sdp"}``."""

    sdp: str
    type: ClassVar[str] = "offer"
    FIELDS = (("sdp", "sdp", _sdp_reader("offer")),)

    def to_json(self) -> JsonObject:
        return {"type": "offer", "sdp": self.sdp}


@dataclass(frozen=True, slots=True)
class ServerAnswer(_ServerMessage):
    """``answer`` from the server: ``{"type": "answer", "sdp"}``."""

    sdp: str
    type: ClassVar[str] = "answer"
    FIELDS = (("sdp", "sdp", _sdp_reader("answer")),)

    def to_json(self) -> JsonObject:
        return {"type": "answer", "sdp": self.sdp}


@dataclass(frozen=True, slots=True)
class ServerIce(_ServerMessage):
    """``ice`` from the server: one of its candidates, or ``""`` for the end of candidates."""

    candidate: str
    sdp_mid: str
    sdp_mline_index: int
    type: ClassVar[str] = "ice"
    FIELDS = (
        ("candidate", "candidate", _str),
        ("sdp_mid", "sdpMid", _str),
        ("sdp_mline_index", "sdpMLineIndex", _int),
    )


@dataclass(frozen=True, slots=True)
class State(_ServerMessage):
    """``state``: this session's connection state (one of ``CONNECTION_STATES``)."""

    state: str
    type: ClassVar[str] = "state"
    FIELDS = (("state", "state", _choice(*CONNECTION_STATES)),)


@dataclass(frozen=True, slots=True)
class Error(_ServerMessage):
    """``error``: ``code``, ``message``; ``ref`` and ``retryAfterMs`` only when set."""

    code: str
    message: str
    ref: str | None = None
    retry_after_ms: int | None = None
    type: ClassVar[str] = "error"
    FIELDS = (
        ("code", "code", _str),
        ("message", "message", _str),
        ("ref", "ref", _omittable(_str)),
        ("retry_after_ms", "retryAfterMs", _omittable(_int)),
    )

    def to_json(self) -> JsonObject:
        out: JsonObject = {"code": self.code, "message": self.message}
        if self.ref is not None:
            out["ref"] = self.ref
        if self.retry_after_ms is not None:
            out["retryAfterMs"] = self.retry_after_ms
        return out


@dataclass(frozen=True, slots=True)
class PublishedStats(_Part):
    """One published track in ``stats``."""

    track_id: str
    mid: str
    kind: str
    bitrate: int | None
    packets: int
    packets_lost: int
    jitter_ms: float
    keyframes: int
    nacks_sent: int
    muted: bool
    FIELDS = (
        ("track_id", "trackId", _str),
        ("mid", "mid", _str),
        ("kind", "kind", _choice("audio", "video")),
        ("bitrate", "bitrate", _opt_int),
        ("packets", "packets", _int),
        ("packets_lost", "packetsLost", _int),
        ("jitter_ms", "jitterMs", _num),
        ("keyframes", "keyframes", _int),
        ("nacks_sent", "nacksSent", _int),
        ("muted", "muted", _bool),
    )


@dataclass(frozen=True, slots=True)
class ReceivingStats(_Part):
    """One received track in ``stats``; the owner is ``None`` once it has left."""

    track_id: str
    kind: str
    session_id: str | None
    user_id: str | None
    bitrate: int | None
    packets: int
    rtx: int
    fraction_lost: float
    packets_lost: int
    jitter_ms: float
    rtt_ms: float | None
    nacks: int
    keyframe_requests: int
    paused: bool
    #: The simulcast layer it gets (its rid; ``None``: a plain track, audio, or paused).
    layer: str | None = None
    layer_switches: int = 0
    #: The highest VP8 temporal layer (TID) forwarded now (``None``: all of them, a track
    #: without temporal layers, audio, or paused).
    temporal_layer: int | None = None
    FIELDS = (
        ("track_id", "trackId", _str),
        ("kind", "kind", _choice("audio", "video")),
        ("session_id", "sessionId", _opt_str),
        ("user_id", "userId", _opt_str),
        ("bitrate", "bitrate", _opt_int),
        ("packets", "packets", _int),
        ("rtx", "rtx", _int),
        ("fraction_lost", "fractionLost", _num),
        ("packets_lost", "packetsLost", _int),
        ("jitter_ms", "jitterMs", _num),
        ("rtt_ms", "rttMs", _opt_num),
        ("nacks", "nacks", _int),
        ("keyframe_requests", "keyframeRequests", _int),
        ("paused", "paused", _bool),
        ("layer", "layer", _opt_str),
        ("layer_switches", "layerSwitches", _int),
        ("temporal_layer", "temporalLayer", _opt_int),
    )


@dataclass(frozen=True, slots=True)
class Stats(_ServerMessage):
    """``stats``: this session's call quality over the last interval (docs/protocol.md)."""

    interval_ms: int
    state: str
    bitrate_in: int | None
    bitrate_out: int | None
    rtt_ms: float | None
    published: tuple[PublishedStats, ...]
    receiving: tuple[ReceivingStats, ...]
    #: The server's estimate of this session's downlink (bit/s; ``None`` until it has one).
    downlink_bps: int | None = None
    type: ClassVar[str] = "stats"
    FIELDS = (
        ("interval_ms", "intervalMs", _int),
        ("state", "state", _choice(*CONNECTION_STATES)),
        ("bitrate_in", "bitrateIn", _opt_int),
        ("bitrate_out", "bitrateOut", _opt_int),
        ("rtt_ms", "rttMs", _opt_num),
        ("published", "published", _parts(PublishedStats)),
        ("receiving", "receiving", _parts(ReceivingStats)),
        ("downlink_bps", "downlinkBps", _opt_int),
    )


@dataclass(frozen=True, slots=True)
class StatsFrame:
    """``stats`` as the server builds it: its payload object, sent as it is (``to_json``).

    The quality monitor measures straight into the wire object, in ``Stats``'s field order, so
    encoding this is byte for byte what ``Stats.parse(payload).to_json()`` encodes; parsing it
    back checked nothing the monitor does not build already and was about half of a session's
    ``stats`` cost (tests/unit/rooms/test_quality_schedule.py holds the two equal). A receiver
    (a client, the relay's front) parses it as ``Stats``.
    """

    payload: JsonObject
    type: ClassVar[str] = "stats"

    def to_json(self) -> JsonObject:
        return self.payload


@dataclass(frozen=True, slots=True)
class TrackMuted(_ServerMessage):
    """``track-muted``: an operator muted (or unmuted) a published track."""

    track_id: str
    kind: str
    session_id: str
    user_id: str
    muted: bool
    by: str = "operator"
    type: ClassVar[str] = "track-muted"
    FIELDS = (
        ("track_id", "trackId", _str),
        ("kind", "kind", _choice("audio", "video")),
        *Peer.FIELDS,
        ("muted", "muted", _bool),
        ("by", "by", _choice("operator")),
    )


#: Why a subscriber gets no video it can decode of a track (docs/protocol.md, codec steering).
UNAVAILABLE_REASONS = ("unsupported-codec", "codec-conflict")


@dataclass(frozen=True, slots=True)
class TrackUnavailable(_ServerMessage):
    """``track-unavailable``: this session cannot decode a track it receives (or, with
    ``unavailable`` false, now can): none of the codecs the publisher can send is one it accepts
    (``unsupported-codec``), or the room shares another one (``codec-conflict``)."""

    track_id: str
    kind: str
    session_id: str
    user_id: str
    unavailable: bool
    reason: str | None
    codecs: tuple[str, ...]
    type: ClassVar[str] = "track-unavailable"
    FIELDS = (
        ("track_id", "trackId", _str),
        ("kind", "kind", _choice("audio", "video")),
        *Peer.FIELDS,
        ("unavailable", "unavailable", _bool),
        ("reason", "reason", _nullable(_choice(*UNAVAILABLE_REASONS))),
        ("codecs", "codecs", _strs),
    )


#: Why a subscriber gets no video of a track for now (``track-paused``).
PAUSE_REASONS = ("bandwidth", "subscriber")


@dataclass(frozen=True, slots=True)
class TrackPaused(_ServerMessage):
    """``track-paused``: the server stopped (``paused``) or resumed sending this session the video
    of a track: its downlink cannot carry even the lowest layer (``bandwidth``), or it asked for
    that itself in ``track-settings`` (``subscriber``)."""

    track_id: str
    kind: str
    session_id: str
    user_id: str
    paused: bool
    reason: str
    type: ClassVar[str] = "track-paused"
    FIELDS = (
        ("track_id", "trackId", _str),
        ("kind", "kind", _choice("audio", "video")),
        *Peer.FIELDS,
        ("paused", "paused", _bool),
        ("reason", "reason", _choice(*PAUSE_REASONS)),
    )


@dataclass(frozen=True, slots=True)
class LayerState(_Part):
    """One simulcast encoding of ``publish-layers``: its ``rid`` and whether to send it."""

    rid: str
    active: bool
    FIELDS = (("rid", "rid", _str), ("active", "active", _bool))


@dataclass(frozen=True, slots=True)
class PublishLayers(_ServerMessage):
    """``publish-layers`` (dynacast): which simulcast encodings of a published track anybody
    wants; the client turns the others off (``RTCRtpSender.setParameters``)."""

    track_id: str
    mid: str
    layers: tuple[LayerState, ...]
    type: ClassVar[str] = "publish-layers"
    FIELDS = (
        ("track_id", "trackId", _str),
        ("mid", "mid", _str),
        ("layers", "layers", _parts(LayerState)),
    )


@dataclass(frozen=True, slots=True)
class PublishBackup(_ServerMessage):
    """``publish-backup`` (codec steering's backup stream, docs/protocol.md): to the publisher of
    video track ``track_id`` (sent on its m-line ``mid``), start (``active``) or stop sending a
    second, low-resolution encoding of it in ``codec`` (a mime type, e.g. ``video/H264``), for
    subscribers that cannot decode the codec the track is sent in."""

    track_id: str
    mid: str
    codec: str
    active: bool
    type: ClassVar[str] = "publish-backup"
    FIELDS = (
        ("track_id", "trackId", _str),
        ("mid", "mid", _str),
        ("codec", "codec", _str),
        ("active", "active", _bool),
    )


@dataclass(frozen=True, slots=True)
class Speaker(_Part):
    """One entry of ``speakers``: a session that speaks and how loud (0..1)."""

    session_id: str
    user_id: str
    level: float
    FIELDS = (*Peer.FIELDS, ("level", "level", _num))


@dataclass(frozen=True, slots=True)
class Speakers(_ServerMessage):
    """``speakers``: the sessions speaking now, loudest first (RFC 6464 audio levels)."""

    speakers: tuple[Speaker, ...]
    type: ClassVar[str] = "speakers"
    FIELDS = (("speakers", "speakers", _parts(Speaker)),)


#: A server message as a receiver parses it.
ParsedServerMessage = (
    Joined
    | ParticipantJoined
    | ParticipantLeft
    | Tracks
    | ServerOffer
    | ServerAnswer
    | ServerIce
    | State
    | Error
    | Stats
    | TrackMuted
    | TrackUnavailable
    | TrackPaused
    | PublishLayers
    | PublishBackup
    | Speakers
)
#: A server message as the server sends it.
ServerMessage = ParsedServerMessage | StatsFrame
SERVER_MESSAGES: dict[str, type[ParsedServerMessage]] = {
    kind.type: kind
    for kind in (
        Joined,
        ParticipantJoined,
        ParticipantLeft,
        Tracks,
        ServerOffer,
        ServerAnswer,
        ServerIce,
        State,
        Error,
        Stats,
        TrackMuted,
        TrackUnavailable,
        TrackPaused,
        PublishLayers,
        PublishBackup,
        Speakers,
    )
}


def server_message(
    msg_type: str,
    payload: JsonObject | None,
    room_id: int | str,
    session_id: str | None,
) -> str:
    """Encode one server frame with the spec's envelope."""
    envelope: JsonObject = {"type": msg_type, "payload": payload, "roomId": room_id}
    envelope["sessionId"] = session_id
    return json.dumps(envelope, separators=(",", ":"))


def encode_server_message(
    message: ServerMessage, room_id: int | str, session_id: str | None
) -> str:
    """One server frame: ``message`` in the envelope of the connection it goes to."""
    return server_message(message.type, message.to_json(), room_id, session_id)


def parse_server_object(data: Mapping[str, object]) -> ParsedServerMessage:
    """Parse one decoded server envelope (a client's view; also the worker link's)."""
    msg_type = data.get("type")
    kind = SERVER_MESSAGES.get(msg_type) if isinstance(msg_type, str) else None
    if kind is None:
        raise MessageError("bad-message", "missing or unknown server message 'type'")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise MessageError("bad-message", "'payload' must be an object", kind.type)
    return kind.parse(payload)
