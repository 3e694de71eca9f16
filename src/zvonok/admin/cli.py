"""``zvonok rooms``, ``zvonok kick``, ``zvonok mute``, ``zvonok close-room``, ``zvonok drain``:
the admin API from a shell.

Owns the click commands (added to the ``zvonok`` group by ``zvonok.cli``). They call a running
node's admin API over HTTP with the operator token (``--url`` / ``ZVONOK_ADMIN_URL``, default
``http://127.0.0.1:8080``; ``--token`` / ``ZVONOK_ADMIN_TOKEN``). Errors print ``error: ...`` and
exit with 2 (refused, not found) or 1 (unreachable). Imports click and httpx only.
Implements no RFC.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import click

_url = click.option(
    "--url",
    envvar="ZVONOK_ADMIN_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="The node's HTTP address.",
)
_token = click.option(
    "--token", envvar="ZVONOK_ADMIN_TOKEN", required=True, help="The operator token."
)


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


def _call(method: str, url: str, path: str, token: str) -> Any:
    import httpx  # only these commands need it; the server process never loads it

    try:
        response = httpx.request(
            method, url.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
    except httpx.HTTPError as exc:
        _fail(f"{url} unreachable: {exc}", code=1)
    if response.status_code == 404 and path in ("/admin/rooms", "/admin/drain"):
        _fail("the admin API is disabled on this node (no admin_token set)")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        _fail(f"HTTP {response.status_code}: {detail}")
    return response.json()


@click.command("rooms")
@_url
@_token
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def rooms(url: str, token: str, as_json: bool) -> None:
    """List live rooms, their sessions and tracks."""
    data = _call("GET", url, "/admin/rooms", token)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for worker in data.get("unavailableWorkers") or []:
        click.echo(f"warning: worker {worker} did not answer; its rooms are missing", err=True)
    for room in data["rooms"]:
        where = f" worker={room['worker']}" if "worker" in room else ""
        click.echo(
            f"{room['room']}  sessions={len(room['participants'])} tracks={room['tracks']}{where}"
        )
        for p in room["participants"]:
            q = p.get("quality") or {}
            tracks = ",".join(
                f"{t['kind']}:{t['trackId']}{'(muted)' if t['muted'] else ''}" for t in p["tracks"]
            )
            click.echo(
                f"  {p['sessionId']}  user={p['userId']} state={p['state']} "
                f"in={q.get('bitrateIn')}bps out={q.get('bitrateOut')}bps rtt={q.get('rttMs')}ms "
                f"tracks={tracks or '-'}"
            )


@click.command("kick")
@click.argument("session_id")
@_url
@_token
def kick(session_id: str, url: str, token: str) -> None:
    """End a session (the client gets error `kicked`, the room `participant-left`)."""
    _call("POST", url, f"/admin/sessions/{session_id}/kick", token)
    click.echo(f"kicked {session_id}")


@click.command("mute")
@click.argument("session_id")
@click.argument("track_id")
@click.option("--off", is_flag=True, help="Unmute instead.")
@_url
@_token
def mute(session_id: str, track_id: str, off: bool, url: str, token: str) -> None:
    """Stop (or with --off resume) forwarding a published track."""
    action = "unmute" if off else "mute"
    _call("POST", url, f"/admin/sessions/{session_id}/tracks/{track_id}/{action}", token)
    click.echo(f"{action}d {track_id}")


@click.command("close-room")
@click.argument("room")
@_url
@_token
def close_room(room: str, url: str, token: str) -> None:
    """End every session of ROOM (e.g. chat:1)."""
    data = _call("DELETE", url, f"/admin/rooms/{room}", token)
    click.echo(f"closed {room} ({data.get('sessions')} sessions)")


@click.command("drain")
@click.option("--cancel", is_flag=True, help="Serve again: take new rooms, /readyz 200.")
@click.option("--status", "show", is_flag=True, help="Only show the drain state.")
@_url
@_token
def drain(cancel: bool, show: bool, url: str, token: str) -> None:
    """Drain the node: no new rooms (/readyz 503); it exits once its rooms are empty, or at
    drain_timeout (the sessions still there get `node-draining`). --cancel undoes it."""
    method = "GET" if show else "DELETE" if cancel else "POST"
    data = _call(method, url, "/admin/drain", token)
    state = data.get("state")
    left = data.get("secondsLeft")
    if state == "draining":
        rooms = "no rooms left" if data.get("empty") else "rooms still live"
        click.echo(f"draining: {rooms}; drain_timeout ends it in {left:.0f} s")
    else:
        click.echo(str(state))


COMMANDS = (rooms, kick, mute, close_room, drain)
