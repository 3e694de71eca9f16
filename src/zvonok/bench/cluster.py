"""``zvonok bench --nodes 2``: a scenario against two ``zvonok serve`` nodes on one Redis.

Owns ``LocalRedis`` (a ``redis-server`` the bench starts on a free loopback port, no persistence,
``maxmemory`` capped, in the run's temp dir; stopped by PID), ``NodePair`` (the Redis and the two
nodes, ``cluster_backend = "redis"``, sharing one data dir: one embedded membership database and
one token secret), ``route_late`` (after the senders joined, half the late participants go
through their room's owner and half through the other node, alternating over the run, whichever
node placement made the owner), ``join_split`` (join latency of the participants who joined
through the room's owner, *direct*, and of those relayed to it through the other node,
*relayed*; the owner read from the room's lease in Redis) and ``relay_legs`` (each node's
``zvonok_cluster_relay_leg_seconds`` and ``..._located`` from its ``/metrics``: the relayed
joins' legs, mean and bucket-interpolated median per leg). Loopback only; every process is ended
by PID.
Implements no RFC (RESP, the Redis protocol, for the few commands it sends).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .target import Target, free_port, spawn_server, start_process, stop_process

#: Seconds the bench waits for its ``redis-server`` to answer ``PING``.
REDIS_START_TIMEOUT = 10.0
#: The bench's Redis holds a few hundred keys; this caps it anyway.
REDIS_MAXMEMORY = "64mb"


def command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """One command to the Redis on 127.0.0.1:``port``; its raw reply (RESP)."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = sock.recv(65536)
    return reply


def bulk(reply: bytes) -> str | None:
    """The string of a RESP bulk reply (``$n\\r\\n...``); None for a null or an error."""
    if not reply.startswith(b"$") or reply.startswith(b"$-1"):
        return None
    return reply.split(b"\r\n", 2)[1].decode()


@dataclass
class LocalRedis:
    """A ``redis-server`` the bench started (loopback, no persistence)."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.process)


async def spawn_redis(directory: Path) -> LocalRedis:
    """``redis-server`` on a free 127.0.0.1 port; returns when it answers ``PING``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("--nodes 2 needs redis-server on PATH")
    port = free_port(socket.SOCK_STREAM)
    argv = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(directory), "--maxmemory", REDIS_MAXMEMORY, "--protected-mode", "yes",
    ]  # fmt: skip
    redis = LocalRedis(port, start_process(argv, directory / "redis.log"))
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    while time.monotonic() < deadline:
        if redis.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {redis.process.returncode}")
        try:
            if await asyncio.to_thread(command, port, "PING") == b"+PONG\r\n":
                return redis
        except OSError:
            pass
        await asyncio.sleep(0.05)
    redis.stop()
    raise RuntimeError(f"redis-server did not answer within {REDIS_START_TIMEOUT} s")


@dataclass
class NodePair:
    """The bench's Redis and its two nodes (``bench0`` takes the senders: it owns the rooms)."""

    redis: LocalRedis
    nodes: list[Target] = field(default_factory=list)
    node_ids: list[str] = field(default_factory=list)

    def owner(self, kind: str, room_id: str) -> str | None:
        """The node holding the room's lease in Redis."""
        return bulk(command(self.redis.port, "HGET", f"zv:room:{kind}:{room_id}", "owner"))

    def redis_stats(self) -> dict[str, int]:
        """``INFO commandstats`` of the bench's Redis: calls per command."""
        text = command(self.redis.port, "INFO", "commandstats").decode(errors="replace")
        calls: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line.partition(":")
                fields = dict(item.split("=", 1) for item in rest.split(","))
                calls[name.removeprefix("cmdstat_")] = int(fields["calls"])
        return calls

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()


async def spawn_pair(directory: Path, extra_env: Mapping[str, str] | None = None) -> NodePair:
    """Redis, then two nodes on it, one data dir; stopped (by PID) if any fails to start.
    ``extra_env``: more ``ZVONOK_*`` settings for both nodes."""
    redis = await spawn_redis(directory)
    pair = NodePair(redis)
    try:
        for n in range(2):
            node_id = f"bench{n}"
            env = {
                "ZVONOK_CLUSTER_BACKEND": "redis",
                "ZVONOK_REDIS_URL": redis.url,
                "ZVONOK_NODE_ID": node_id,
                **(extra_env or {}),
            }
            pair.nodes.append(
                await spawn_server(directory, extra_env=env, log_name=f"{node_id}.log")
            )
            pair.node_ids.append(node_id)
    except BaseException:
        pair.stop()
        raise
    return pair


class Routed(Protocol):
    """A late participant as ``route_late`` sends it to a node."""

    url: str
    room_kind: str
    room_id: str
    node: int


def plan_routes(
    owners: Mapping[tuple[str, str], str | None],
    node_ids: Sequence[str],
    rooms: Sequence[tuple[str, str]],
) -> list[int]:
    """The node (index in ``node_ids``) each late participant joins through, given its room
    (``rooms``, in join order) and each room's owner: the owner at even positions over the run
    (direct), the other node at odd ones (relayed), so a run has as many direct joins as relayed
    ones (±1) whichever node placement made each room's owner. A room with no owner (not
    expected) counts as the first node's."""
    routes = []
    for position, room in enumerate(rooms):
        owner = owners.get(room)
        owning = node_ids.index(owner) if owner in node_ids else 0
        routes.append(owning if position % 2 == 0 else 1 - owning)
    return routes


def route_late(pair: NodePair, late: Sequence[Routed]) -> dict[str, int]:
    """After the senders joined (a room's owner is its lease's, in Redis): send each late
    participant through its room's owner or the other node (``plan_routes``; 1:1 calls need it:
    two-choice placement puts some rooms on the second node although their senders joined
    through the first). Returns the planned direct/relayed counts."""
    rooms = [(c.room_kind, c.room_id) for c in late]
    owners = {room: pair.owner(*room) for room in set(rooms)}
    for client, node in zip(late, plan_routes(owners, pair.node_ids, rooms), strict=True):
        client.node = node
        client.url = pair.nodes[node].ws_url(client.room_kind, client.room_id)
    return {"direct": (len(late) + 1) // 2, "relayed": len(late) // 2}


#: A ``/metrics`` sample line: name, labels, value.
_SAMPLE = re.compile(r"^([a-z_]+)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'([a-z_]+)="([^"]*)"')
_LEGS = "zvonok_cluster_relay_leg_seconds"


def parse_legs(text: str) -> dict[str, Any]:
    """From a node's ``/metrics`` text: per leg, how many, their mean and their median (ms,
    interpolated in the histogram's buckets); and how many joins found their owner each way
    (``located``)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    located: dict[str, int] = {}
    for line in text.splitlines():
        sample = _SAMPLE.match(line)
        if sample is None:
            continue
        name, value = sample.group(1), float(sample.group(3))
        labels = dict(_LABEL.findall(sample.group(2)))
        leg = labels.get("leg", "")
        if name == _LEGS + "_sum":
            sums[leg] = value
        elif name == _LEGS + "_count":
            counts[leg] = int(value)
        elif name == _LEGS + "_bucket" and "le" in labels:
            buckets.setdefault(leg, []).append((float(labels["le"]), value))
        elif name == "zvonok_cluster_relay_located_total" and "source" in labels:
            located[labels["source"]] = int(value)
    legs = {
        name: {
            "count": count,
            "mean_ms": round(sums.get(name, 0.0) / count * 1e3, 2),
            "p50_ms": _bucket_median(buckets.get(name, []), count),
        }
        for name, count in sorted(counts.items())
        if count
    }
    return {"legs": legs, "located": located}


def _bucket_median(cumulative: list[tuple[float, float]], count: int) -> float | None:
    """The median of a histogram (ms), interpolated linearly inside the bucket that holds it
    (None when that is the open-ended one)."""
    lower, below = 0.0, 0.0
    for bound, total in sorted(cumulative):
        if total >= count / 2:
            if bound == float("inf"):
                return None
            share = (count / 2 - below) / (total - below) if total > below else 1.0
            return round((lower + share * (bound - lower)) * 1e3, 2)
        lower, below = bound, total
    return None


def relay_legs(pair: NodePair) -> dict[str, Any]:
    """``parse_legs`` of each node's ``/metrics`` (empty for a node that did not answer)."""
    out: dict[str, Any] = {}
    for node_id, node in zip(pair.node_ids, pair.nodes, strict=True):
        try:
            with urllib.request.urlopen(node.http_url + "/metrics", timeout=5) as resp:
                out[node_id] = parse_legs(resp.read().decode(errors="replace"))
        except OSError:
            out[node_id] = {}
    return out


class Joiner(Protocol):
    """A late participant as ``join_split`` reads it."""

    room_kind: str
    room_id: str
    node: int
    ws_open_ns: int
    joined_ns: int

    @property
    def first_rx_ns(self) -> int: ...


def _ms(values_ns: Sequence[int], q: float) -> float | None:
    if not values_ns:
        return None
    ordered = sorted(values_ns)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6, 1)


def _stats(values_ns: Sequence[int]) -> dict[str, Any]:
    return {
        "count": len(values_ns),
        "p50": round(statistics.median(values_ns) / 1e6, 1) if values_ns else None,
        "p95": _ms(values_ns, 0.95),
        "max": round(max(values_ns) / 1e6, 1) if values_ns else None,
    }


def join_split(pair: NodePair, late: Sequence[Joiner]) -> dict[str, Any]:
    """Join latency of the late participants, direct (through the owner) vs relayed: WebSocket
    open → ``joined`` (signaling) and → first media packet; the owner of every room."""
    owners = {
        (c.room_kind, c.room_id): pair.owner(c.room_kind, c.room_id) for c in late
    }  # fmt: skip
    groups: dict[str, list[Joiner]] = {"direct": [], "relayed": []}
    for client in late:
        owner = owners[(client.room_kind, client.room_id)]
        through = pair.node_ids[client.node]
        groups["direct" if through == owner else "relayed"].append(client)
    out: dict[str, Any] = {"room_owners": {f"{k}:{r}": o for (k, r), o in sorted(owners.items())}}
    for name, clients in groups.items():
        out[name] = {
            "joined_ms": _stats([c.joined_ns - c.ws_open_ns for c in clients if c.joined_ns]),
            "first_media_ms": _stats(
                [c.first_rx_ns - c.ws_open_ns for c in clients if c.first_rx_ns]
            ),
        }
    return out
