"""The Redis backend of the cluster against a real ``redis-server`` and ``redis-sentinel``
(shared design ``cluster.md`` §3, §4, §7; issue 14): the atomic claim with epoch under a race,
validity by the owner's heartbeat and boot_id, renewal, compare-and-delete release, split-brain
detection by renewal, ``zv:gen`` after a flush and an empty restart, the breaker, placement over
heartbeats, and a master found through Sentinel. Several "nodes" are several registries (each
its own boot_id) in this process, sharing one server. Each test is bounded by 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from zvonok.cluster.base import DRAINING, Claimed, ClusterUnavailable, Owned
from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.health import DEGRADED, OK, RECONCILING, RedisClusterHealth
from zvonok.cluster.keys import Keys
from zvonok.cluster.node import RedisCluster
from zvonok.cluster.redis_nodes import NodeIdConflict, RedisNodeRegistry
from zvonok.cluster.redis_rooms import NotRegistered, RedisRoomDirectory, RoomLeases
from zvonok.ids import RoomKey

from ..harness.redis import MASTER_NAME, RedisSentinel, RedisServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(10)]

ROOM = RoomKey.parse("group:r1")
KEYS = Keys()


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = connect(RedisTarget(url=redis_server.url))
    try:
        yield redis
    finally:
        await redis.aclose()


async def node(client: Redis, name: str, *, ttl: float = 6.0) -> RedisNodeRegistry:
    registry = RedisNodeRegistry(client, RedisClusterHealth(), node_id=name, ttl=ttl)
    await registry.register()
    return registry


async def test_claim_race_has_exactly_one_owner(redis_server: RedisServer) -> None:
    """20 concurrent claims from 3 nodes (each its own connection pool and boot_id), 50 rooms:
    one owner each time; the two other nodes get ``Owned(owner, epoch)``, the owner's own
    repeated claims ``Claimed`` with the same epoch (inside a node a lock serializes joins)."""
    clients = [connect(RedisTarget(url=redis_server.url)) for _ in range(3)]
    try:
        nodes = [await node(client, f"n{i + 1}") for i, client in enumerate(clients)]
        leases = [RoomLeases(client) for client in clients]
        for round_ in range(50):
            room = RoomKey.parse(f"group:race{round_}")
            results = await asyncio.gather(
                *(leases[i % 3].claim(room, nodes[i % 3].node_id, nodes[i % 3].boot_id)
                  for i in range(20))
            )  # fmt: skip
            won = {nodes[i % 3].node_id for i, r in enumerate(results) if isinstance(r, Claimed)}
            assert len(won) == 1
            (owner,) = won
            assert len({r.epoch for r in results}) == 1
            for i, result in enumerate(results):
                if nodes[i % 3].node_id != owner:
                    assert result == Owned(owner, result.epoch)
            lease = await leases[0].lookup(room)
            assert lease is not None and lease.valid and lease.owner == owner
    finally:
        for client in clients:
            await client.aclose()


async def test_an_unregistered_node_cannot_claim(client: Redis) -> None:
    with pytest.raises(NotRegistered):
        await RoomLeases(client).claim(ROOM, "ghost", "boot")


async def test_an_expired_owner_loses_the_room_with_epoch_plus_one(client: Redis) -> None:
    n1 = await node(client, "n1", ttl=0.3)
    n2 = await node(client, "n2")
    leases = RoomLeases(client)
    first = await leases.claim(ROOM, n1.node_id, n1.boot_id)
    assert isinstance(first, Claimed)
    assert await leases.claim(ROOM, n2.node_id, n2.boot_id) == Owned("n1", first.epoch)
    await asyncio.sleep(0.4)  # n1's heartbeat key expires; the room record does not
    lease = await leases.lookup(ROOM)
    assert lease is not None and not lease.valid
    assert await leases.claim(ROOM, n2.node_id, n2.boot_id) == Claimed(first.epoch + 1)


async def test_a_restarted_owner_boot_id_invalidates_its_rooms(client: Redis) -> None:
    n1 = await node(client, "n1")
    n2 = await node(client, "n2")
    leases = RoomLeases(client)
    first = await leases.claim(ROOM, n1.node_id, n1.boot_id)
    assert isinstance(first, Claimed)
    reborn = await node(client, "n1")  # kill -9 and start again: same id, new boot
    assert reborn.boot_id != n1.boot_id
    assert await leases.claim(ROOM, n2.node_id, n2.boot_id) == Claimed(first.epoch + 1)
    with pytest.raises(NodeIdConflict):
        await n1.heartbeat()  # the old process, if it were alive, would learn it lost its id


async def test_seen_epoch_raises_the_next_epoch(client: Redis) -> None:
    n1 = await node(client, "n1")
    result = await RoomLeases(client).claim(ROOM, n1.node_id, n1.boot_id, seen_epoch=41)
    assert result == Claimed(42)
    assert await client.get(KEYS.epoch) == "42"


async def test_renewal_keeps_leases_and_release_is_compare_and_delete(client: Redis) -> None:
    n1 = await node(client, "n1")
    n2 = await node(client, "n2")
    leases = RoomLeases(client, ttl=0.4)
    mine = RedisRoomDirectory(leases, RedisClusterHealth(), node_id="n1", boot_id=n1.boot_id)
    other = RoomKey.parse("chat:2")
    assert await mine.claim(ROOM) == "n1"
    assert await mine.claim(other) == "n1"
    for _ in range(6):  # 1.2 s, three lease lifetimes
        await asyncio.sleep(0.2)
        assert await mine.renew() == []
    assert await client.exists(KEYS.room(ROOM), KEYS.room(other)) == 2
    assert not await leases.release(ROOM, "n2", n2.boot_id, mine.held[ROOM])
    await mine.release(ROOM)
    assert await client.exists(KEYS.room(ROOM)) == 0
    await asyncio.sleep(0.5)  # `other` is no longer renewed by anyone... but still held
    assert await client.exists(KEYS.room(other)) == 0
    assert await mine.renew() == []  # a lapsed, unclaimed lease is recreated
    lease = await leases.lookup(other)
    assert lease is not None and lease.valid and lease.epoch == mine.held[other]


async def test_a_running_node_renews_its_leases_and_hears_of_a_lost_room(
    redis_server: RedisServer,
) -> None:
    lost: list[list[RoomKey]] = []
    client = connect(RedisTarget(url=redis_server.url))
    cluster = RedisCluster(client, node_id="n1", timing=0.05, on_rooms_lost=lost.append)
    await cluster.start()
    try:
        assert await cluster.rooms.claim(ROOM) == "n1"
        epoch = cluster.rooms.held[ROOM]
        await asyncio.sleep(2.0)  # lease 1.5 s, renewed every 0.5 s; node key 0.3 s / 0.1 s
        lease = await cluster.rooms.lookup(ROOM)
        assert lease is not None and lease.valid and lease.epoch == epoch
        await cluster.client.hset(KEYS.room(ROOM), "epoch", epoch + 1)  # another claim won
        for _ in range(50):
            if lost:
                break
            await asyncio.sleep(0.05)
        assert lost == [[ROOM]] and ROOM not in cluster.rooms.held
    finally:
        await cluster.close()
    assert await Redis(port=redis_server.port).exists(KEYS.node("n1")) == 0  # deregistered


async def test_renewal_reports_a_room_taken_over(client: Redis) -> None:
    n1 = await node(client, "n1")
    n3 = await node(client, "n3")
    mine = RedisRoomDirectory(
        RoomLeases(client), RedisClusterHealth(), node_id="n1", boot_id=n1.boot_id
    )
    result = await mine.claim_lease(ROOM)
    assert isinstance(result, Claimed)
    await client.hset(  # split brain: the record rewritten to n3 with epoch + 1
        KEYS.room(ROOM), mapping={"owner": "n3", "boot": n3.boot_id, "epoch": result.epoch + 1}
    )
    assert await mine.renew() == [ROOM]
    assert ROOM not in mine.held
    assert await mine.claim(ROOM) == "n3"


async def test_flushall_changes_the_generation_and_renewal_reasserts(
    client: Redis, redis_server: RedisServer
) -> None:
    n1 = await node(client, "n1")
    mine = RedisRoomDirectory(
        RoomLeases(client), RedisClusterHealth(), node_id="n1", boot_id=n1.boot_id
    )
    result = await mine.claim_lease(ROOM, seen_epoch=6)
    assert result == Claimed(7)
    assert not (await n1.heartbeat()).generation_changed
    redis_server.flushall()
    assert (await n1.heartbeat()).generation_changed
    assert not (await n1.heartbeat()).generation_changed
    assert await mine.renew() == []
    lease = await mine.lookup(ROOM)
    assert lease is not None and lease.valid and lease.epoch == 7
    assert await client.get(KEYS.epoch) == "7"  # a later claim elsewhere gets a higher epoch


async def test_an_empty_restart_is_noticed_and_owners_reassert(redis_server: RedisServer) -> None:
    owner = RedisCluster(connect(RedisTarget(url=redis_server.url)), node_id="n1", timing=0.2)
    other = RedisCluster(connect(RedisTarget(url=redis_server.url)), node_id="n2", timing=0.2)
    await owner.start()
    await other.start()
    try:
        assert await owner.rooms.claim(ROOM) == "n1"
        epoch = owner.rooms.held[ROOM]
        redis_server.restart()
        deadline = time.monotonic() + 5
        lease = None
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            try:
                lease = await owner.rooms.lookup(ROOM)
            except ClusterUnavailable:
                continue
            if lease is not None and lease.valid:
                break
        assert lease is not None and lease.valid
        assert (lease.owner, lease.epoch) == ("n1", epoch)
        for _ in range(100):
            if other.registry.generation == owner.registry.generation:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(ClusterUnavailable):  # other nodes hold off claims (6 s × 0.2)
            await other.rooms.claim(RoomKey.parse("chat:9"))
        await asyncio.sleep(1.3)
        assert await other.rooms.claim(ROOM) == "n1"
        assert await other.rooms.claim(RoomKey.parse("chat:9")) == "n2"
    finally:
        await other.close()
        await owner.close()


async def test_the_breaker_fails_fast_and_recovery_asks_for_reconcile(
    redis_server: RedisServer,
) -> None:
    client = connect(RedisTarget(url=redis_server.url))
    health = RedisClusterHealth(probe_interval=0.3)
    registry = RedisNodeRegistry(client, health, node_id="n1")
    try:
        await registry.register()
        assert health.status == OK
        redis_server.stop()
        with pytest.raises(ClusterUnavailable):
            await registry.heartbeat()
        assert health.status == DEGRADED
        started = time.monotonic()
        with pytest.raises(ClusterUnavailable):
            await registry.nodes()
        assert time.monotonic() - started < 0.05  # refused by the open breaker, no I/O
        redis_server.start()
        await asyncio.sleep(0.35)
        await registry.heartbeat()  # the probe goes through
        assert health.status == RECONCILING and health.reconcile_needed.is_set()
        health.reconciled()
        assert health.status == OK
    finally:
        await client.aclose()


async def test_a_node_sees_redis_back_within_a_probe_interval(redis_server: RedisServer) -> None:
    """At the default timing (heartbeat every 2 s) a stopped Redis is probed by the heartbeat
    every 0.5 s, so the node is out of ``degraded`` (and serves joins that need Redis) ~0.5 s
    after Redis answers again, not up to a heartbeat interval later."""
    cluster = RedisCluster(connect(RedisTarget(url=redis_server.url)), node_id="n1")
    await cluster.start()
    try:
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            for _ in range(50):  # the node notices (its heartbeat times out, or goes stale)
                if cluster.health.status == DEGRADED:
                    break
                await asyncio.sleep(0.1)
            assert cluster.health.status == DEGRADED
            failures = cluster.health.failures
            for _ in range(60):  # Redis returns just after a heartbeat timed out
                if cluster.health.failures > failures:
                    break
                await asyncio.sleep(0.05)
            assert cluster.health.failures > failures
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        back = time.monotonic()
        while cluster.health.status == DEGRADED:
            assert time.monotonic() - back < 0.8, "still degraded 0.8 s after Redis returned"
            await asyncio.sleep(0.02)
    finally:
        await cluster.close()


async def test_nodes_and_pick_follow_heartbeats(client: Redis) -> None:
    n1 = await node(client, "n1")
    n2 = await node(client, "n2")
    await node(client, "n3", ttl=0.3)
    n1.load, n2.load = 0.5, 0.1
    n1.addresses = ("127.0.0.1:40001",)
    await n1.heartbeat()
    await n2.heartbeat()
    listed = {info.node_id: info for info in await n1.nodes()}
    assert set(listed) == {"n1", "n2", "n3"}
    assert listed["n1"].load == 0.5 and listed["n1"].addresses == ("127.0.0.1:40001",)
    assert listed["n1"].boot_id == n1.boot_id and listed["n1"].updated_ms > 0
    await asyncio.sleep(0.4)  # n3 stops heartbeating
    assert {info.node_id for info in await n1.nodes()} == {"n1", "n2"}
    assert await n1.pick() == "n2"  # n1 is more than 0.10 above n2
    n1.load = 0.15
    await n1.heartbeat()
    assert await n1.pick() == "n1"  # within 0.10: the edge keeps the room
    n1.state = DRAINING
    await n1.heartbeat()
    assert {await n1.pick() for _ in range(5)} == {"n2"}
    await n2.deregister()
    assert {info.node_id for info in await n1.nodes()} == {"n1"}


async def test_sentinel_resolves_the_master(
    redis_server: RedisServer, redis_sentinel: RedisSentinel
) -> None:
    target = RedisTarget(sentinels=(("127.0.0.1", redis_sentinel.port),), master_name=MASTER_NAME)
    assert target.describe() == f"sentinel://{redis_sentinel.address}/{MASTER_NAME}"
    cluster = RedisCluster(connect(target), node_id="n1", sentinel=True, timing=0.1)
    await cluster.start()
    try:
        assert await cluster.rooms.claim(ROOM) == "n1"
        port = await cluster.client.config_get("port")
        assert port == {"port": str(redis_server.port)}  # the command reached the master
        direct = Redis(port=redis_server.port, decode_responses=True)
        assert await direct.hget(KEYS.room(ROOM), "owner") == "n1"
        await direct.aclose()
    finally:
        await cluster.close()


async def port_of(cluster: RedisCluster) -> str | None:
    """The port of the server the cluster's client talks to now (None while it cannot)."""
    try:
        reply = await cluster.client.config_get("port")
    except (RedisError, OSError):
        return None
    return str(reply["port"])


async def test_a_sentinel_failover_is_followed(redis_server: RedisServer, tmp_path: Path) -> None:
    """``SENTINEL FAILOVER``: the node follows ``+switch-master`` to the new master within
    seconds, before Sentinel turns the old master into a replica (~10 s later), and claims there;
    the lease it held before came across with replication."""
    replica = RedisServer(tmp_path / "replica", replica_of=redis_server.port)
    sentinel = None
    try:
        replica.wait_linked()
        sentinel = RedisSentinel(tmp_path / "sentinel", redis_server)
        sentinel.wait_replicas(1)
        target = RedisTarget(sentinels=(("127.0.0.1", sentinel.port),), master_name=MASTER_NAME)
        cluster = RedisCluster(connect(target), node_id="n1", sentinel=True, timing=0.1)
        await cluster.start()
        try:
            assert await cluster.rooms.claim(ROOM) == "n1"
            sentinel.failover()
            deadline = time.monotonic() + 5
            while await port_of(cluster) != str(replica.port):
                assert time.monotonic() < deadline, "the node never reached the new master"
                await asyncio.sleep(0.1)
            assert redis_server.role() == "master"  # not yet turned: +switch-master moved us
            owner = None
            while owner is None:
                assert time.monotonic() < deadline, "the node cannot claim on the new master"
                with contextlib.suppress(ClusterUnavailable):
                    owner = await cluster.rooms.claim(RoomKey.parse("chat:after"))
                await asyncio.sleep(0.05)
            assert owner == "n1"
            assert await cluster.rooms.renew() == []  # the replicated lease is still ours
        finally:
            await cluster.close()
    finally:
        if sentinel is not None:
            sentinel.stop()
        replica.stop()
