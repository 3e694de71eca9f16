"""The admin REST API (FastAPI): see and manage live calls with an operator token.

Owns ``create_admin_app``: ``GET /admin/rooms``, ``GET /admin/rooms/{room}``,
``DELETE /admin/rooms/{room}``, ``GET /admin/sessions/{session_id}``,
``POST /admin/sessions/{session_id}/kick``,
``POST /admin/sessions/{session_id}/tracks/{track_id}/mute`` and ``.../unmute``, ``GET``,
``POST`` and ``DELETE /admin/drain`` (the node's graceful drain: ``drain.NodeDrain``), with
OpenAPI at ``/admin/openapi.json`` (also ``/openapi.json``) and Swagger UI at ``/admin/docs`` (also
``/docs``). Every one of these paths, the OpenAPI description and Swagger UI included, needs
``Authorization: Bearer <admin_token>`` (``admin.operator``: compared in constant time; separate
from user JWTs; 401 with ``WWW-Authenticate: Bearer`` otherwise); without an ``admin_token``
setting the app is not mounted at all. It reads and acts through an ``AdminBackend``
(``admin.backend``): this process's rooms, or, on a front with workers, every worker's (each room
then names its ``worker``; a worker that does not answer: 503 where it may hold the target, listed
in ``unavailableWorkers`` of ``GET /admin/rooms``). Imports ``rooms``, ``metrics``; never
``signaling`` or ``media``.
"""

from __future__ import annotations

from typing import Any, Protocol, overload

from fastapi import Depends, FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from .. import metrics
from ..ids import RoomKey
from ..rooms.quality import QualityMonitor
from ..rooms.service import RoomService
from .backend import AdminBackend, LocalAdminBackend, WorkerUnavailable
from .operator import operator_auth


class DrainControl(Protocol):
    """The node's drain (``drain.NodeDrain``) as the admin API drives it."""

    def status(self) -> dict[str, Any]: ...

    def start(self, *, by_signal: bool = False) -> bool: ...

    def cancel(self) -> bool: ...


class ActionResult(BaseModel):
    """The outcome of an admin action."""

    ok: bool
    changed: bool = True
    sessions: int | None = None


def _key(room: str) -> RoomKey:
    try:
        return RoomKey.parse(room)
    except ValueError as exc:
        raise HTTPException(404, f"no such room: {exc}") from None


def _unavailable(exc: WorkerUnavailable) -> HTTPException:
    detail = {"error": "worker unavailable", "unavailableWorkers": exc.workers}
    return HTTPException(503, detail)


@overload
def create_admin_app(
    backend: AdminBackend, token: str, /, *, drain: DrainControl | None = None
) -> FastAPI: ...
@overload
def create_admin_app(
    rooms: RoomService,
    quality: QualityMonitor,
    token: str,
    /,
    *,
    drain: DrainControl | None = None,
) -> FastAPI: ...
def create_admin_app(
    source: AdminBackend | RoomService,
    quality_or_token: QualityMonitor | str,
    token: str | None = None,
    /,
    *,
    drain: DrainControl | None = None,
) -> FastAPI:
    """The admin app over ``backend`` (or, as before, over this process's ``rooms`` and
    ``quality``), with ``/admin/drain`` when given the node's ``drain``; its routes carry their
    full paths, so mount it without a prefix."""
    if isinstance(source, RoomService):
        if not isinstance(quality_or_token, QualityMonitor) or token is None:
            raise TypeError("create_admin_app(rooms, quality, token)")
        return _create(LocalAdminBackend(source, quality_or_token), token, drain)
    if not isinstance(quality_or_token, str) or token is not None:
        raise TypeError("create_admin_app(backend, token)")
    return _create(source, quality_or_token, drain)


def _create(backend: AdminBackend, token: str, drain: DrainControl | None) -> FastAPI:
    app = FastAPI(
        title="zvonok admin API",
        version="1",
        description="Live rooms and sessions of one zvonok node; needs the operator token.",
        # FastAPI's own docs and OpenAPI routes take no dependencies: declared below instead.
        docs_url=None,
        openapi_url=None,
        redoc_url=None,
    )

    auth = [Depends(operator_auth(token))]

    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/admin/openapi.json", title=app.title)

    for prefix in ("/admin", ""):
        app.get(f"{prefix}/openapi.json", dependencies=auth, include_in_schema=False)(openapi)
        app.get(f"{prefix}/docs", dependencies=auth, include_in_schema=False)(docs)

    @app.get("/admin/rooms", dependencies=auth, summary="Every live room with its sessions")
    async def list_rooms() -> dict[str, Any]:
        return await backend.list_rooms()

    @app.get("/admin/rooms/{room}", dependencies=auth, summary="One room (e.g. chat:1)")
    async def get_room(room: str) -> dict[str, Any]:
        try:
            found = await backend.get_room(_key(room))
        except WorkerUnavailable as exc:
            raise _unavailable(exc) from None
        if found is None:
            raise HTTPException(404, "no such room")
        return found

    @app.delete("/admin/rooms/{room}", dependencies=auth, summary="Close a room: end every session")
    async def close_room(room: str) -> ActionResult:
        try:
            ended = await backend.close_room(_key(room))
        except WorkerUnavailable as exc:
            raise _unavailable(exc) from None
        if ended is None:
            raise HTTPException(404, "no such room")
        metrics.record("admin_actions", "close-room")
        return ActionResult(ok=True, sessions=ended)

    @app.get("/admin/sessions/{session_id}", dependencies=auth, summary="One session")
    async def get_session(session_id: str) -> dict[str, Any]:
        try:
            found = await backend.get_session(session_id)
        except WorkerUnavailable as exc:
            raise _unavailable(exc) from None
        if found is None:
            raise HTTPException(404, "no such session")
        return found

    @app.post("/admin/sessions/{session_id}/kick", dependencies=auth, summary="Remove a session")
    async def kick(session_id: str) -> ActionResult:
        try:
            kicked = await backend.kick(session_id)
        except WorkerUnavailable as exc:
            raise _unavailable(exc) from None
        if not kicked:
            raise HTTPException(404, "no such session")
        metrics.record("admin_actions", "kick")
        return ActionResult(ok=True)

    async def set_muted(session_id: str, track_id: str, muted: bool) -> ActionResult:
        try:
            changed = await backend.set_muted(session_id, track_id, muted)
        except WorkerUnavailable as exc:
            raise _unavailable(exc) from None
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

    if drain is not None:
        control = drain

        @app.get("/admin/drain", dependencies=auth, summary="The node's drain state")
        async def drain_status() -> dict[str, Any]:
            return control.status()

        @app.post(
            "/admin/drain",
            dependencies=auth,
            summary="Drain: no new rooms; the node exits when its rooms are empty or at "
            "drain_timeout",
        )
        async def drain_start() -> dict[str, Any]:
            if control.status()["state"] == "stopping":
                raise HTTPException(409, "the node is stopping")
            started = control.start()
            if started:
                metrics.record("admin_actions", "drain")
            return {**control.status(), "changed": started}

        @app.delete("/admin/drain", dependencies=auth, summary="Cancel the drain: serve again")
        async def drain_cancel() -> dict[str, Any]:
            if control.status()["state"] == "stopping":
                raise HTTPException(409, "the node is stopping; too late to cancel")
            cancelled = control.cancel()
            if cancelled:
                metrics.record("admin_actions", "drain-cancel")
            return {**control.status(), "changed": cancelled}

    return app
