"""``zvonok cluster status``: the cluster's nodes and which node owns each room, from a shell.

Owns the ``cluster`` click group (added to ``zvonok`` by ``zvonok.cli``). Where it reads:

- **Redis directly** when given ``--redis-url``, or when the settings (``--config``, the
  ``ZVONOK_*`` variables) say ``cluster_backend = "redis"`` (``redis_url`` or Sentinel): no node
  needs to be up, and every node is seen the same way (``cluster.status.read_status``).
- **A node's admin API** otherwise (``GET /admin/cluster`` at ``--url`` / ``ZVONOK_ADMIN_URL``,
  with ``--token`` / ``ZVONOK_ADMIN_TOKEN``): in local mode that node alone.

Prints a table (``--json``: the document). Errors print ``error: ...`` and exit with 2 (refused,
bad settings) or 1 (unreachable). A Redis URL is never printed unredacted. Imports click, httpx
(admin API) or redis-py (Redis) only when that path runs. Implements no RFC.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from .cli import _call, _fail

_STALE = "stale: its owner is gone or restarted"


@click.group("cluster")
def cluster() -> None:
    """The cluster of nodes sharing Redis (cluster_backend = "redis")."""


@cluster.command("status")
@click.option(
    "--redis-url",
    envvar="ZVONOK_REDIS_URL",
    default=None,
    help="Read Redis directly (redis://[:password@]host:port/db); default: the settings'.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A TOML settings file: its cluster settings say which Redis to read.",
)
@click.option(
    "--url",
    envvar="ZVONOK_ADMIN_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Without Redis settings: the node whose admin API to ask.",
)
@click.option("--token", envvar="ZVONOK_ADMIN_TOKEN", default=None, help="The operator token.")
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
def status(
    redis_url: str | None,
    config_file: Path | None,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """List the nodes (state, load, rooms, sessions, media addresses, heartbeat age) and which
    node owns each room."""
    data = _from_redis(redis_url, config_file)
    if data is None:
        if not token:
            _fail("no Redis settings: give --redis-url (or --config), or --token for the admin API")
        data = _call("GET", url, "/admin/cluster", token)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for line in format_status(data):
        click.echo(line)


def _from_redis(redis_url: str | None, config_file: Path | None) -> dict[str, Any] | None:
    """The status read from Redis, or None when no Redis is configured."""
    import asyncio

    from pydantic import ValidationError

    from ..config import load_settings

    try:
        settings = load_settings(config_file, redis_url=redis_url)
    except ValidationError as exc:
        problems = "; ".join(str(err["msg"]) for err in exc.errors())
        _fail(f"invalid settings: {problems}")
    if redis_url is None and settings.cluster_backend != "redis":
        return None
    from redis.exceptions import RedisError

    from ..cluster.base import ClusterUnavailable
    from ..cluster.connection import RedisTarget, connect
    from ..cluster.status import read_status

    logging.getLogger("zvonok").addHandler(logging.NullHandler())  # the error line says it all
    target = RedisTarget.from_settings(settings)

    async def read() -> dict[str, Any]:
        client = connect(target, command_timeout=5.0)
        try:
            return await read_status(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(read())
    except (RedisError, OSError, ClusterUnavailable) as exc:
        _fail(f"{exc} ({target.describe()})", code=1)


def format_status(data: dict[str, Any]) -> list[str]:
    """The human-readable table of a status document."""
    nodes: list[dict[str, Any]] = data.get("nodes", [])
    rooms: list[dict[str, Any]] = data.get("rooms", [])
    seen_by = f" (as seen by {data['node']})" if data.get("node") else ""
    health = f", health {data['health']}{seen_by}" if data.get("health") else ""
    lines = [
        f"cluster: {data.get('backend')}{health}; {len(nodes)} node(s), "
        f"{len(rooms)}{'+' if data.get('roomsTruncated') else ''} room(s)"
    ]
    header = ("NODE", "STATE", "LOAD", "ROOMS", "SESSIONS", "HEARTBEAT", "ADDRESSES")
    rows: list[tuple[str, ...]] = [header]
    for node in nodes:
        age = node.get("heartbeatAgeMs")
        rows.append(
            (
                str(node["nodeId"]) + ("*" if node.get("self") else ""),
                str(node["state"]),
                f"{float(node['load']):.3f}",
                str(node["rooms"]),
                str(node["sessions"]),
                "-" if age is None else f"{age / 1000:.1f} s",
                ",".join(node.get("addresses", [])) or "-",
            )
        )
    lines += _table(rows)
    if rooms:
        lines.append("")
        room_rows: list[tuple[str, ...]] = [("ROOM", "OWNER", "EPOCH", "")]
        for room in rooms:
            epoch = room.get("epoch")
            room_rows.append(
                (
                    str(room["room"]),
                    str(room["owner"]),
                    "-" if epoch is None else str(epoch),
                    "" if room.get("valid", True) else _STALE,
                )
            )
        lines += _table(room_rows)
    if data.get("roomsTruncated"):
        lines.append("(more rooms than listed)")
    return lines


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
