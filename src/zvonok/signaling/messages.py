"""The signaling envelope: parsing client frames and building server frames.

Owns the wire format of ``docs/protocol.md``: ``{"type", "payload", "roomId", "sessionId"}``,
with ``payload`` accepted as an object or as a JSON-encoded string (the spec's "JSON-encoded
data"). Parsing never raises anything but ``MessageError`` (a ``ValueError``) whose ``code`` is the
``error`` code the client is told. Imports nothing from rooms or media.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from ..ids import SESSION_ID_RE, SessionId

ClientType = Literal["join", "offer", "answer", "ice", "leave"]
CLIENT_TYPES: frozenset[str] = frozenset({"join", "offer", "answer", "ice", "leave"})
#: The largest SDP text we accept inside a message (the frame limit bounds it too).
MAX_SDP_CHARS = 128 * 1024
MAX_CANDIDATE_CHARS = 1024


class MessageError(ValueError):
    """A client frame that cannot be used; ``code`` is sent back in the ``error`` message."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


@dataclass(frozen=True, slots=True)
class SessionDescriptionPayload:
    """``{"type": "offer"|"answer", "sdp": "..."}``."""

    type: Literal["offer", "answer"]
    sdp: str


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


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One parsed client frame."""

    type: ClientType
    room_id: str
    raw_room_id: int | str
    session_id: SessionId
    description: SessionDescriptionPayload | None = None
    ice: IcePayload | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def room_id_text(value: object) -> str:
    """The canonical text of a ``roomId``: ``1`` and ``"1"`` both become ``"1"``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MessageError("bad-message", "roomId must be a number or a string")
    return str(value)


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
    msg_type = data.get("type")
    if not isinstance(msg_type, str):
        raise MessageError("bad-message", "missing or non-string 'type'")
    if msg_type not in CLIENT_TYPES:
        raise MessageError("bad-message", f"unknown message type {msg_type[:40]!r}", msg_type[:40])
    ref = msg_type
    if "roomId" not in data:
        raise MessageError("bad-message", "missing 'roomId'", ref)
    raw_room = data["roomId"]
    try:
        room_id = room_id_text(raw_room)
    except MessageError as exc:
        raise MessageError(exc.code, exc.message, ref) from None
    session_id = data.get("sessionId")
    if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id):
        raise MessageError(
            "bad-message", "'sessionId' must be 1-64 characters of [A-Za-z0-9_.-]", ref
        )
    payload = _payload(data.get("payload"), ref)
    description = None
    ice = None
    if msg_type in ("offer", "answer"):
        description = _description(payload, msg_type, ref)
    elif msg_type == "ice":
        ice = _ice(payload, ref)
    return ClientMessage(
        type=msg_type,  # type: ignore[arg-type]  # checked against CLIENT_TYPES above
        room_id=room_id,
        raw_room_id=raw_room,
        session_id=SessionId(session_id),
        description=description,
        ice=ice,
        extra=payload if isinstance(payload, dict) else {},
    )


def _payload(value: object, ref: str) -> dict[str, Any] | None:
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


def _description(
    payload: dict[str, Any] | None, msg_type: str, ref: str
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
    return SessionDescriptionPayload(type=msg_type, sdp=sdp)  # type: ignore[arg-type]


def _ice(payload: dict[str, Any] | None, ref: str) -> IcePayload:
    if payload is None:
        return IcePayload(candidate="", sdp_mid=None, sdp_mline_index=None)
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
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise MessageError("bad-message", "payload.sdpMLineIndex must be an integer >= 0", ref)
    ufrag = payload.get("usernameFragment")
    if ufrag is not None and not isinstance(ufrag, str):
        raise MessageError("bad-message", "payload.usernameFragment must be a string", ref)
    return IcePayload(candidate, mid, index, ufrag)


def server_message(
    msg_type: str,
    payload: dict[str, Any] | None,
    room_id: int | str,
    session_id: str | None,
) -> str:
    """Encode one server frame with the spec's envelope."""
    envelope: dict[str, Any] = {"type": msg_type, "payload": payload, "roomId": room_id}
    envelope["sessionId"] = session_id
    return json.dumps(envelope, separators=(",", ":"))
