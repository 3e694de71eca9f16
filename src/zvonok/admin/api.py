"""The admin REST API (FastAPI): see and manage live calls with an operator token.

Owns ``create_admin_app``: ``GET /admin/rooms``, ``GET /admin/rooms/{room}``,
``DELETE /admin/rooms/{room}``, ``GET /admin/sessions/{session_id}``,
``POST /admin/sessions/{session_id}/kick``,
``POST /admin/sessions/{session_id}/tracks/{track_id}/mute`` and ``.../unmute``, with OpenAPI at
``/admin/openapi.json`` (also ``/openapi.json``) and Swagger UI at ``/admin/docs`` (also
``/docs``). Every one of these paths, the OpenAPI description and Swagger UI included, needs
``Authorization: Bearer <admin_token>`` (compared in constant time; separate from user JWTs;
401 with ``WWW-Authenticate: Bearer`` otherwise); without an ``admin_token`` setting the app
is not mounted at all. Imports ``rooms``, ``metrics``; never ``signaling`` or ``media``.
Implements RFC 6750 §2.1 (bearer header) for the operator token only.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from .. import metrics
from ..ids import RoomKey, SessionId
from ..rooms import moderation
from ..rooms.participant import Participant
from ..rooms.quality import QualityMonitor
from ..rooms.room import Room
from ..rooms.service import RoomService

_bearer = HTTPBearer(auto_error=False, description="The operator token (setting admin_token).")


class ActionResult(BaseModel):
    """The outcome of an admin action."""

    ok: bool
    changed: bool = True
    sessions: int | None = None


def _participant(participant: Participant, quality: QualityMonitor) -> dict[str, Any]:
    room = participant.room
    stats = quality.latest.get(participant.session_id)
    if stats is None:
        stats = quality.measure(participant, 0.0)
    return {
        "sessionId": participant.session_id,
        "userId": participant.user_id,
        "state": participant.state.value,
        "tracks": [
            {
                "trackId": track_id,
                "mid": mid,
                "kind": entry.producer.kind,
                "muted": track_id in room.muted,
            }
            for mid, track_id in participant.published.items()
            if (entry := room.published.get(track_id)) is not None
        ],
        "receiving": sorted(participant.consumers),
        "quality": stats,
    }


def _room(room: Room[Participant], quality: QualityMonitor) -> dict[str, Any]:
    return {
        "room": str(room.key),
        "kind": room.key.kind.value,
        "id": room.key.id,
        "participants": [_participant(p, quality) for p in room.participants.values()],
        "tracks": len(room.published),
    }


def _key(room: str) -> RoomKey:
    try:
        return RoomKey.parse(room)
    except ValueError as exc:
        raise HTTPException(404, f"no such room: {exc}") from None


def create_admin_app(rooms: RoomService, quality: QualityMonitor, token: str) -> FastAPI:
    """The admin app; its routes carry their full paths, so mount it without a prefix."""
    app = FastAPI(
        title="zvonok admin API",
        version="1",
        description="Live rooms and sessions of one zvonok node; needs the operator token.",
        # FastAPI's own docs and OpenAPI routes take no dependencies: declared below instead.
        docs_url=None,
        openapi_url=None,
        redoc_url=None,
    )

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "admin token missing or wrong", headers={"WWW-Authenticate": "Bearer"}
            )

    auth = [Depends(authorized)]

    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/admin/openapi.json", title=app.title)

    for prefix in ("/admin", ""):
        app.get(f"{prefix}/openapi.json", dependencies=auth, include_in_schema=False)(openapi)
        app.get(f"{prefix}/docs", dependencies=auth, include_in_schema=False)(docs)

    @app.get("/admin/rooms", dependencies=auth, summary="Every live room with its sessions")
    async def list_rooms() -> dict[str, Any]:
        return {
            "rooms": [_room(room, quality) for room in list(rooms.rooms.values())],
            "sessions": len(rooms.sessions),
            "draining": rooms.closing,
        }

    @app.get("/admin/rooms/{room}", dependencies=auth, summary="One room (e.g. chat:1)")
    async def get_room(room: str) -> dict[str, Any]:
        found = rooms.rooms.get(_key(room))
        if found is None:
            raise HTTPException(404, "no such room")
        return _room(found, quality)

    @app.delete("/admin/rooms/{room}", dependencies=auth, summary="Close a room: end every session")
    async def close_room(room: str) -> ActionResult:
        ended = await moderation.close_room(rooms, _key(room))
        if ended is None:
            raise HTTPException(404, "no such room")
        metrics.record("admin_actions", "close-room")
        return ActionResult(ok=True, sessions=ended)

    @app.get("/admin/sessions/{session_id}", dependencies=auth, summary="One session")
    async def get_session(session_id: str) -> dict[str, Any]:
        participant = rooms.sessions.get(SessionId(session_id))
        if participant is None:
            raise HTTPException(404, "no such session")
        return {"room": str(participant.room.key), **_participant(participant, quality)}

    @app.post("/admin/sessions/{session_id}/kick", dependencies=auth, summary="Remove a session")
    async def kick(session_id: str) -> ActionResult:
        if not await moderation.kick(rooms, session_id):
            raise HTTPException(404, "no such session")
        metrics.record("admin_actions", "kick")
        return ActionResult(ok=True)

    async def set_muted(session_id: str, track_id: str, muted: bool) -> ActionResult:
        changed = moderation.set_muted(rooms, session_id, track_id, muted)
        if changed is None:
            raise HTTPException(404, "no such session or track")
        metrics.record("admin_actions", "mute" if muted else "unmute")
        return ActionResult(ok=True, changed=changed)

    @app.post(
        "/admin/sessions/{session_id}/tracks/{track_id}/mute",
        dependencies=auth,
        summary="Stop forwarding a published track; the room is told",
    )
    async def mute(session_id: str, track_id: str) -> ActionResult:
        return await set_muted(session_id, track_id, True)

    @app.post(
        "/admin/sessions/{session_id}/tracks/{track_id}/unmute",
        dependencies=auth,
        summary="Forward a muted track again",
    )
    async def unmute(session_id: str, track_id: str) -> ActionResult:
        return await set_muted(session_id, track_id, False)

    return app
