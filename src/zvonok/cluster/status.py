"""What ``zvonok cluster status`` and ``GET /admin/cluster`` show: the live nodes and which node
owns each room, as one JSON document.

Shared design ``cluster.md`` §3 (the keys: ``zv:node:*`` through ``RedisNodeRegistry.nodes``,
``zv:room:*``, "Validity"). ``read_status`` reads Redis directly: the live nodes with their
heartbeat age by Redis's own clock, and the room records found by ``SCAN`` over ``zv:room:*``
(never ``KEYS``, which blocks Redis; at most ``ROOM_LIMIT`` rooms, ``roomsTruncated`` says when
there were more), each with its owner, epoch and whether it counts (the owner's node key holds the
record's ``boot_id``). ``node_json`` and ``status_json`` give a local-mode node the same shape.
redis-py is loaded only when ``read_status`` runs (a local node never imports it). Implements no
RFC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .base import NodeInfo
from .keys import Keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: At most this many room records are listed (SCAN stops there).
ROOM_LIMIT = 1000
#: The ``COUNT`` hint of one ``SCAN`` step: keys Redis looks at per round trip.
SCAN_COUNT = 500


def node_json(node: NodeInfo, *, now_ms: int | None, me: str | None) -> dict[str, Any]:
    """One node's line: id, boot, state, load, rooms, sessions, media addresses and how old its
    heartbeat is (``heartbeatAgeMs``; ``None`` without a heartbeat, in local mode)."""
    age = None if now_ms is None or not node.updated_ms else max(0, now_ms - node.updated_ms)
    return {
        "nodeId": node.node_id,
        "bootId": node.boot_id,
        "state": node.state,
        "load": round(node.load, 4),
        "rooms": node.rooms,
        "sessions": node.sessions,
        "addresses": list(node.addresses),
        "heartbeatAgeMs": age,
        "self": node.node_id == me,
    }


def status_json(
    *,
    backend: str,
    me: str | None,
    health: str | None,
    nodes: list[dict[str, Any]],
    rooms: list[dict[str, Any]],
    truncated: bool = False,
) -> dict[str, Any]:
    """The whole document (see docs/operations.md "Cluster status")."""
    return {
        "backend": backend,
        "node": me,
        "health": health,
        "nodes": sorted(nodes, key=lambda n: str(n["nodeId"])),
        "rooms": sorted(rooms, key=lambda r: str(r["room"])),
        "roomsTruncated": truncated,
    }


def room_json(room: str, owner: str, epoch: int | None, *, valid: bool = True) -> dict[str, Any]:
    return {"room": room, "owner": owner, "epoch": epoch, "valid": valid}


async def scan_rooms(
    client: Redis, keys: Keys, nodes: Sequence[NodeInfo], *, limit: int = ROOM_LIMIT
) -> tuple[list[dict[str, Any]], bool]:
    """The room records (at most ``limit``) and whether there were more."""
    prefix = f"{keys.prefix}room:"
    found: dict[str, None] = {}  # SCAN may return a key twice
    cursor = 0
    truncated = False
    while True:
        cursor, batch = await client.scan(cursor, match=f"{prefix}*", count=SCAN_COUNT)
        found.update((str(key), None) for key in batch)
        if len(found) >= limit and cursor != 0:
            truncated = True
            break
        if cursor == 0:
            break
    names = list(found)[:limit]
    truncated = truncated or len(found) > limit
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hmget(name, "owner", "boot", "epoch")
    records: list[list[Any]] = await pipe.execute()
    boots = {node.node_id: node.boot_id for node in nodes}
    rooms = []
    for name, (owner, boot, epoch) in zip(names, records, strict=True):
        if owner is None:  # expired between SCAN and HMGET
            continue
        rooms.append(
            room_json(
                name[len(prefix) :],
                str(owner),
                int(epoch) if epoch is not None and str(epoch).isdigit() else None,
                valid=boots.get(str(owner)) == boot,
            )
        )
    return rooms, truncated


async def redis_now_ms(client: Redis) -> int:
    """Redis's clock (``TIME``) in ms: heartbeat ages are read on the clock that wrote them."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def read_status(
    client: Redis,
    *,
    keys: Keys | None = None,
    me: str | None = None,
    health: str | None = None,
    limit: int = ROOM_LIMIT,
) -> dict[str, Any]:
    """The cluster as Redis holds it: live nodes and room owners (``status_json``)."""
    from .health import RedisClusterHealth
    from .redis_nodes import RedisNodeRegistry

    keys = keys or Keys()
    registry = RedisNodeRegistry(client, RedisClusterHealth(), node_id="status", keys=keys)
    nodes = await registry.nodes()
    now_ms = await redis_now_ms(client)
    rooms, truncated = await scan_rooms(client, keys, nodes, limit=limit)
    return status_json(
        backend="redis",
        me=me,
        health=health,
        nodes=[node_json(node, now_ms=now_ms, me=me) for node in nodes],
        rooms=rooms,
        truncated=truncated,
    )


def local_status(node: NodeInfo, rooms: Iterable[str]) -> dict[str, Any]:
    """A local-mode node: itself, and every room it hosts (owned by it, no epoch)."""
    return status_json(
        backend="local",
        me=node.node_id,
        health="ok",
        nodes=[node_json(node, now_ms=None, me=node.node_id)],
        rooms=[room_json(room, node.node_id, None) for room in rooms],
    )
