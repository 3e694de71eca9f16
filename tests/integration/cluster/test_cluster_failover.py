"""Sentinel failover under a live relayed call (issue 14; shared design cluster.md §4 "Sentinel
failover"): real ``zvonok serve`` nodes find their Redis through three real ``redis-sentinel``
processes (quorum 2) watching a master with two replicas (``min-replicas-to-write 1``,
``min-replicas-max-lag 10``, as the design asks), and aiortc clients talk through different nodes.

- ``SENTINEL FAILOVER``, and ``kill -9`` of the master (Sentinel promotes a replica after
  ``down-after-milliseconds``): the nodes follow the new master (a room created afterwards has
  its lease there, the call's own lease is there too, ``zvonok_cluster_health`` is ``ok`` again
  on every node), the call goes on (both sides keep receiving, no ``error``, no close), and a
  renegotiation started as the failover starts completes: a third participant joins through the
  room's owner, so the server's re-offer to the relayed client and its answer cross the SignalBus
  during the failover, and the relayed client receives her.

Cluster timings are shortened (``cluster_timing`` 0.25); every wait is bounded; loopback only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from ..harness.aiortc_peer import AiortcPeers
from ..harness.redis import MASTER_NAME, RedisSentinel, RedisServer
from ..harness.server import ServerFactory, ZvonokServer
from .test_cluster_calls import TIMING, lease, relayed_call, sees

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

#: §4: the design's write guard on the master (a master without a replica stops taking writes).
MIN_REPLICAS = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")
#: Sentinel's "master is down" delay: short, so ``kill -9`` promotes within a few seconds.
DOWN_AFTER_MS = 1000
#: From the failover's start to: the relayed client receives the newcomer; the nodes are healthy
#: on the new master.
RENEGOTIATION_LIMIT = 15.0
FOLLOW_LIMIT = 15.0


class SentinelSet:
    """A master, two replicas and three Sentinels (quorum 2), each in its own directory."""

    def __init__(self, root: Path) -> None:
        self.servers: list[RedisServer] = []
        self.sentinels: list[RedisSentinel] = []
        try:
            self.master = self._server(root / "master", None)
            for n in range(2):
                self._server(root / f"replica{n}", self.master.port).wait_linked()
            for n in range(3):
                sentinel = RedisSentinel(
                    root / f"sentinel{n}", self.master, quorum=2, down_after_ms=DOWN_AFTER_MS
                )
                self.sentinels.append(sentinel)
            for sentinel in self.sentinels:
                sentinel.wait_replicas(2)
                sentinel.wait_sentinels(2)
        except BaseException:
            self.stop()
            raise

    def _server(self, root: Path, replica_of: int | None) -> RedisServer:
        server = RedisServer(root, replica_of=replica_of, extra=MIN_REPLICAS)
        self.servers.append(server)
        return server

    @property
    def addresses(self) -> list[str]:
        return [sentinel.address for sentinel in self.sentinels]

    async def new_master(self, old: RedisServer, within: float) -> RedisServer:
        """The server every live Sentinel names as master once it is not ``old`` any more."""
        deadline = time.monotonic() + within
        while True:
            ports = {await asyncio.to_thread(s.master_port) for s in self.sentinels}
            if len(ports) == 1 and (port := ports.pop()) != old.port:
                return next(server for server in self.servers if server.port == port)
            assert time.monotonic() < deadline, f"the Sentinels name no new master: {ports}"
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    redis = SentinelSet(tmp_path / "redis")
    try:
        yield redis
    finally:
        redis.stop()


def start_nodes(
    factory: ServerFactory, redis: SentinelSet, shared: Path, count: int
) -> list[ZvonokServer]:
    """``count`` nodes finding the master through the Sentinels, one data dir for all."""
    nodes = []
    for n in range(count):
        node = factory.start(
            extra_args=["--data-dir", str(shared)],
            env={
                "ZVONOK_CLUSTER_BACKEND": "redis",
                "ZVONOK_REDIS_SENTINELS": json.dumps(redis.addresses),
                "ZVONOK_REDIS_MASTER_NAME": MASTER_NAME,
                "ZVONOK_NODE_ID": f"node{n}",
                "ZVONOK_CLUSTER_TIMING": TIMING,
                "ZVONOK_RESUME_GRACE": "5",
            },
        )
        node.data_dir = shared
        nodes.append(node)
    return nodes


async def healthy(node: ZvonokServer) -> bool:
    """The node's ``zvonok_cluster_health{state="ok"}`` is 1."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(node.http_url + "/metrics", timeout=2)).text
    return 'zvonok_cluster_health{state="ok"} 1.0' in text


async def lease_while_joined(
    node: ZvonokServer, user: str, room: str, session: str, master: RedisServer
) -> dict[str, str]:
    """Join ``room`` through ``node`` (signaling only) and read its lease on ``master`` while
    joined, then leave; empty when the join was refused or the lease is elsewhere."""
    token = await asyncio.to_thread(node.token, user)
    async with connect(node.ws_url("group", room) + "?access_token=" + token) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": room, "sessionId": session}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["type"] in ("joined", "error"):
                break
        if msg["type"] != "joined":
            return {}
        record = lease(master, "group", room)
        await ws.send(json.dumps({"type": "leave", "roomId": room, "sessionId": session}))
        return record


async def failover_under_a_call(
    how: str,
    factory: ServerFactory,
    redis: SentinelSet,
    aiortc_peers: AiortcPeers,
    shared: Path,
) -> None:
    nodes = start_nodes(factory, redis, shared, 2)
    group = nodes[0].create_group(["alice", "bob", "carol"])
    fresh = nodes[0].create_group(["dave"])
    old = redis.master
    owner, first, alice, bob = await relayed_call(nodes, old, aiortc_peers, group)
    relayed, other = (bob, alice) if owner == 0 else (alice, bob)

    started = time.monotonic()
    if how == "failover":
        await asyncio.to_thread(redis.sentinels[0].failover)
    else:
        os.kill(old.pid, signal.SIGKILL)
    # carol joins through the owner while the master changes: the server's re-offer to the
    # relayed client and its answer cross the SignalBus during the failover. (Not an aiortc
    # ``add_screen_share``: today a publisher's second video track stops the aiortc receiver's
    # whole transport, on a single node too: aiortc's header-extension parser raises on one of
    # the forwarded packets. A media-path bug of its own, reported with issue 14's failover work.)
    carol = await aiortc_peers.open(
        nodes[owner], "carol", group, "green", kind="group", session_id="c-1"
    )
    await relayed.wait_receiving(from_user="carol", color="green", timeout=RENEGOTIATION_LIMIT)
    renegotiated = time.monotonic() - started

    new = await redis.new_master(old, FOLLOW_LIMIT)
    deadline = started + FOLLOW_LIMIT
    n = 0
    while True:  # a new room, through the edge, has its lease on the new master
        n += 1
        record = await lease_while_joined(nodes[1], "dave", fresh, f"dave-{n}", new)
        if record:
            break
        assert time.monotonic() < deadline, "no room is created on the new master"
        await asyncio.sleep(0.2)
    while not all([await healthy(node) for node in nodes]):
        assert time.monotonic() < deadline, "the nodes are not healthy on the new master"
        await asyncio.sleep(0.1)
    followed = time.monotonic() - started
    # the call's own lease is on the new master, still its first owner's
    while (now := lease(new, "group", group)).get("owner") != first["owner"]:
        assert time.monotonic() < deadline, f"the call's lease is not on the new master: {now}"
        await asyncio.sleep(0.1)

    # the call went on: everyone receives everyone, nobody was told anything
    await sees(other, relayed.user, relayed.color, 5)
    await sees(relayed, other.user, other.color, 5)
    await sees(carol, relayed.user, relayed.color, 5)
    await sees(relayed, "carol", "green", 5)
    for peer in (alice, bob, carol):
        assert peer.server_errors == [] and peer.closes == [], (peer.name, peer.closes)
    print(
        f"{how}: master {old.port} -> {new.port}; relayed re-offer done after "
        f"{renegotiated:.2f} s; nodes on the new master and healthy after {followed:.2f} s"
    )
    for peer in (alice, bob, carol):
        await peer.leave()


@pytest.mark.allow_errors(server=[r"redis", r"Redis", r"cluster"], reason="the master moves")
async def test_sentinel_failover_under_a_relayed_call(
    zvonok_server_factory: ServerFactory,
    sentinel_set: SentinelSet,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
) -> None:
    await failover_under_a_call(
        "failover", zvonok_server_factory, sentinel_set, aiortc_peers, tmp_path / "shared"
    )


@pytest.mark.allow_errors(server=[r"redis", r"Redis", r"cluster"], reason="the master is killed")
async def test_the_master_killed_under_a_relayed_call(
    zvonok_server_factory: ServerFactory,
    sentinel_set: SentinelSet,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
) -> None:
    await failover_under_a_call(
        "kill", zvonok_server_factory, sentinel_set, aiortc_peers, tmp_path / "shared"
    )
