"""HTTP routes of the browser side: the demo page, the SDK, and the development helpers.

Owns ``web_routes``: ``GET /`` (the demo page), ``GET /sdk/zvonok.js`` (the SDK, an ES module),
``GET /static/{name}`` (the demo's script and style sheet), ``GET /demo/config`` (``{"mode":
"dev"|"prod"}``, so the page knows which form to show) and, in development mode only,
``POST /dev/token`` and ``POST /dev/join``. The files are package data under
``zvonok/static/`` read with ``importlib.resources``. The development endpoints get their powers
injected (``issue_dev_token``, ``dev_ensure_member``); in production mode they do not exist (404).
Also owns ``dev_guarded``, which every development endpoint (``/debug/state`` too) goes through:
a ``Host`` that is not loopback (DNS rebinding) or a cross-site ``Origin`` (RFC 6454) gets 403,
a POST body that is not ``Content-Type: application/json`` gets 415 (no CORS-simple
``text/plain`` form posts). Imports ``ids``, ``errors`` and ``edge`` only; never ``signaling``,
``rooms``, ``media``, ``store`` or ``auth``. The JSON error bodies follow the signaling refusals
of ``docs/protocol.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .edge import DevHostPolicy
from .errors import StoreUnavailable
from .ids import ROOM_ID_RE, RoomKind

#: What a user id typed into the demo may look like.
USER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: The largest JSON body the development endpoints read.
MAX_BODY_BYTES = 4096

#: ``user_id -> token``; ``ValueError`` when this server cannot sign tokens (503).
IssueDevToken = Callable[[str], str]
#: ``(kind, room_id, user_id)``: make the user a member; ``ValueError`` when that is impossible
#: (a private chat that already has two other members), ``StoreUnavailable`` when the store is down.
EnsureMember = Callable[[str, str, str], Awaitable[None]]
#: A Starlette request handler.
Endpoint = Callable[[Request], Awaitable[Response]]

#: name -> media type of every file served from the package.
STATIC_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "zvonok.js": "text/javascript; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}
_NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


@cache
def static_text(name: str) -> str:
    """The text of one packaged static file (read once)."""
    if name not in STATIC_FILES:
        raise ValueError(f"unknown static file {name!r}")
    return resources.files("zvonok").joinpath("static", name).read_text(encoding="utf-8")


def _file(name: str) -> Response:
    return Response(static_text(name), media_type=STATIC_FILES[name], headers=_NO_CACHE)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def _index(request: Request) -> Response:
    return _file("index.html")


async def _sdk(request: Request) -> Response:
    return _file("zvonok.js")


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ("demo.js", "demo.css"):
        return _error(404, "not-found", "no such file")
    return _file(name)


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; raises ``ValueError`` with the reason otherwise."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError:
        raise ValueError("body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def parse_user_id(data: dict[str, Any]) -> str:
    """``userId`` of a request body; raises ``ValueError`` unless it is 1-64 of [A-Za-z0-9_.-]."""
    user_id = data.get("userId")
    if not isinstance(user_id, str) or not USER_ID_RE.match(user_id):
        raise ValueError("userId must be 1-64 characters of [A-Za-z0-9_.-]")
    return user_id


def parse_room(data: dict[str, Any]) -> tuple[str, str]:
    """``(kind, roomId)`` of a request body; raises ``ValueError`` on a bad kind or id."""
    kind = data.get("kind")
    if kind not in (RoomKind.CHAT.value, RoomKind.GROUP.value):
        raise ValueError("kind must be 'chat' or 'group'")
    room_id = data.get("roomId")
    if isinstance(room_id, int) and not isinstance(room_id, bool):
        room_id = str(room_id)
    if not isinstance(room_id, str) or not ROOM_ID_RE.match(room_id):
        raise ValueError("roomId must be 1-64 characters of [A-Za-z0-9_-]")
    return str(kind), room_id


def _is_json(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "application/json"


def dev_guarded(policy: DevHostPolicy, endpoint: Endpoint) -> Endpoint:
    """``endpoint`` behind the development checks: loopback ``Host``, same-origin ``Origin``, and
    for requests with a body, ``Content-Type: application/json``."""

    async def guarded(request: Request) -> Response:
        refusal = policy.refusal(
            request.headers.get("host"), request.headers.get("origin"), request.url.scheme
        )
        if refusal is not None:
            return _error(403, "forbidden", refusal)
        if request.method == "POST" and not _is_json(request.headers.get("content-type", "")):
            return _error(415, "unsupported-media-type", "send Content-Type: application/json")
        return await endpoint(request)

    return guarded


def _dev_token_endpoint(issue: IssueDevToken) -> Endpoint:
    async def dev_token(request: Request) -> Response:
        try:
            user_id = parse_user_id(await read_json(request))
        except ValueError as exc:
            return _error(400, "bad-request", str(exc))
        try:
            token = issue(user_id)
        except ValueError as exc:  # e.g. the server verifies RS256/ES256 only: no secret to sign
            return _error(503, "unavailable", str(exc))
        return JSONResponse({"token": token})

    return dev_token


def _dev_join_endpoint(ensure: EnsureMember) -> Endpoint:
    async def dev_join(request: Request) -> Response:
        try:
            data = await read_json(request)
            user_id = parse_user_id(data)
            kind, room_id = parse_room(data)
        except ValueError as exc:
            return _error(400, "bad-request", str(exc))
        try:
            await ensure(kind, room_id, user_id)
        except ValueError as exc:
            return _error(409, "conflict", str(exc))
        except StoreUnavailable:
            return _error(503, "unavailable", "the membership store is unavailable, retry")
        return JSONResponse({"userId": user_id, "kind": kind, "roomId": room_id})

    return dev_join


def web_routes(
    *,
    dev_mode: bool,
    issue_dev_token: IssueDevToken | None,
    dev_ensure_member: EnsureMember | None,
    dev_policy: DevHostPolicy | None = None,
) -> list[BaseRoute]:
    """The routes of the demo page and the SDK; the ``/dev/*`` ones only in development mode,
    guarded by ``dev_policy`` (default: loopback ``Host`` only)."""
    mode = "dev" if dev_mode else "prod"

    async def page_config(request: Request) -> Response:
        return JSONResponse({"mode": mode})

    routes: list[BaseRoute] = [
        Route("/", _index, methods=["GET"]),
        Route("/sdk/zvonok.js", _sdk, methods=["GET"]),
        Route("/static/{name}", _static, methods=["GET"]),
        Route("/demo/config", page_config, methods=["GET"]),
    ]
    if dev_mode:
        if issue_dev_token is None or dev_ensure_member is None:
            raise ValueError("dev_mode needs issue_dev_token and dev_ensure_member")
        policy = dev_policy or DevHostPolicy()
        token = dev_guarded(policy, _dev_token_endpoint(issue_dev_token))
        join = dev_guarded(policy, _dev_join_endpoint(dev_ensure_member))
        routes.append(Route("/dev/token", token, methods=["POST"]))
        routes.append(Route("/dev/join", join, methods=["POST"]))
    return routes
