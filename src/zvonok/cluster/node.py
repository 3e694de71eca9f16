"""``RedisCluster``: one node's Redis-backed cluster parts, built together and kept alive.

Shared design ``cluster.md`` §2 (the interfaces it hands out: ``sessions``, ``rooms``, ``registry``,
``health``), §3 (heartbeat every 2 s, and at once when ``set_state`` starts or ends a drain; every
0.5 s while Redis does not answer, as the breaker's probe; lease renewal every 10 s, one batch per
node) and §4 ("Graceful drain"; "Reconcile": after an outage, wait 0-1 s, re-register, re-assert
rooms and session bindings; when ``zv:gen`` changed, hold off new claims for 6 s so owners re-assert
first; under Sentinel, drop the pool on a failed call so the next one asks Sentinel for the master).

It owns its tasks (one ``TaskGroup``, cancelled by ``close()``) and the client. Redis being
down at start is not fatal: the node starts ``degraded`` and heals by itself. Lost rooms (a
renewal found another owner) go to ``on_rooms_lost``; the front tells those rooms' clients
``room-moved``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import RedisError

from ..config import Settings
from ..ids import RoomKey
from .base import ClusterUnavailable
from .connection import RedisTarget, connect, drop_connections
from .health import RedisClusterHealth
from .keys import Keys
from .redis_nodes import HEARTBEAT_INTERVAL, NodeIdConflict, RedisNodeRegistry
from .redis_rooms import RENEW_INTERVAL, RedisRoomDirectory, RoomLeases
from .redis_sessions import RedisSessionDirectory

log = logging.getLogger(__name__)

#: §4: after ``zv:gen`` changed, claims of rooms not held wait this long.
GENERATION_HOLD_OFF = 6.0
#: §4: reconcile starts after a random wait up to this long (spreads the nodes out).
RECONCILE_JITTER = 1.0


class RedisCluster:
    """The Redis backend of one node: build with ``from_settings`` (or the constructor), then
    ``await start()``; ``await close()`` releases its rooms and deregisters."""

    def __init__(
        self,
        client: Redis,
        *,
        node_id: str,
        keys: Keys | None = None,
        session_ttl: float = 60.0,
        sentinel: bool = False,
        timing: float = 1.0,
        on_rooms_lost: Callable[[list[RoomKey]], None] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys or Keys()
        self._timing = timing
        self._sentinel = sentinel
        self.health = RedisClusterHealth(on_failure=self._on_failure)
        self.registry = RedisNodeRegistry(
            client, self.health, node_id=node_id, keys=self.keys, ttl=6.0 * timing
        )
        self.rooms = RedisRoomDirectory(
            RoomLeases(client, keys=self.keys, ttl=30.0 * timing),
            self.health,
            node_id=node_id,
            boot_id=self.registry.boot_id,
        )
        self.sessions = RedisSessionDirectory(client, self.health, keys=self.keys, ttl=session_ttl)
        self.on_rooms_lost = on_rooms_lost
        #: Called before every heartbeat (and registration) to set what it publishes
        #: (``registry.load``, ``rooms``, ``sessions``, ``addresses``): the app's node stats.
        self.before_heartbeat: Callable[[RedisNodeRegistry], None] | None = None
        #: For metrics: lease renewal rounds that reached Redis / failed, rooms lost to another
        #: owner, and when (``time.monotonic``) a heartbeat last reached Redis.
        self.renewals = 0
        self.renewal_failures = 0
        self.rooms_lost = 0
        self.heartbeat_at: float | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._dropping: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._beat_now = asyncio.Event()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        timing: float = 1.0,
        on_rooms_lost: Callable[[list[RoomKey]], None] | None = None,
    ) -> RedisCluster:
        target = RedisTarget.from_settings(settings)
        return cls(
            connect(target),
            node_id=settings.cluster_node_id,
            session_ttl=settings.resume_grace + 30.0,
            sentinel=target.url is None,
            timing=timing,
            on_rooms_lost=on_rooms_lost,
        )

    @property
    def node_id(self) -> str:
        return self.registry.node_id

    async def start(self) -> None:
        """Register (or start degraded if Redis is unreachable) and run the loops."""
        try:
            await self._register()
        except ClusterUnavailable as exc:
            log.warning("cluster: redis unreachable at start (%s); running degraded", exc)
        self._runner = asyncio.create_task(self._run(), name="cluster")
        await self._started.wait()

    async def close(self) -> None:
        """Release every room, deregister, stop the loops, close the client."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        for room in list(self.rooms.rooms()):
            await self.rooms.release(room)
        with contextlib.suppress(ClusterUnavailable):
            await self.registry.deregister()
        await self.client.aclose()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._heartbeats(), name="cluster-heartbeat")
            tasks.create_task(self._renewals(), name="cluster-renew")
            tasks.create_task(self._reconciles(), name="cluster-reconcile")
            if isinstance(self.client.connection_pool, SentinelConnectionPool):
                tasks.create_task(self._follow_master(), name="cluster-switch-master")
            self._started.set()

    def set_state(self, state: str) -> None:
        """``serving`` or ``draining`` (§4 "Graceful drain"), published by a heartbeat at once:
        other nodes stop placing rooms here within a Redis round trip, not a heartbeat interval."""
        self.registry.set_state(state)
        self._beat_now.set()

    async def _heartbeats(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), HEARTBEAT_INTERVAL * self._timing)
            self._beat_now.clear()
            self._publish()
            try:
                beat = await self.registry.heartbeat()
            except ClusterUnavailable:
                # Redis away: the heartbeat doubles as the breaker's probe and comes again at
                # the probe interval, so the node sees Redis back (and serves joins that need
                # it) within ~0.5 s of its return, not a heartbeat interval later
                await asyncio.sleep(
                    min(self.health.probe_interval, HEARTBEAT_INTERVAL * self._timing)
                )
                self._beat_now.set()
                continue
            except NodeIdConflict as exc:
                log.error("cluster: %s", exc)
                continue
            self.heartbeat_at = time.monotonic()
            if beat.generation_changed:
                log.warning("cluster: redis lost its data (zv:gen changed); re-asserting")
                self.rooms.hold_claims(GENERATION_HOLD_OFF * self._timing)
                await self.renew()

    async def _renewals(self) -> None:
        while True:
            await asyncio.sleep(RENEW_INTERVAL * self._timing)
            await self.renew()

    async def _reconciles(self) -> None:
        while True:
            await self.health.reconcile_needed.wait()
            await asyncio.sleep(random.uniform(0, RECONCILE_JITTER * self._timing))
            if await self.reconcile():
                self.health.reconciled()
            else:
                await asyncio.sleep(0.5 * self._timing)

    async def reconcile(self) -> bool:
        """Re-register and re-assert rooms and bindings; whether it all reached Redis."""
        try:
            await self._register()
        except ClusterUnavailable:
            return False
        return await self.renew()

    async def _register(self) -> None:
        self._publish()
        await self.registry.register()
        self.heartbeat_at = time.monotonic()

    def _publish(self) -> None:
        """Set what the next heartbeat carries: leases and bindings held, then the app's own
        figures (``before_heartbeat``)."""
        self.registry.rooms = len(self.rooms)
        self.registry.sessions = len(self.sessions)
        if self.before_heartbeat is not None:
            try:
                self.before_heartbeat(self.registry)
            except Exception:  # stats must never stop the heartbeat
                log.exception("cluster: node stats failed")

    async def renew(self) -> bool:
        """One renewal of rooms and session bindings; lost rooms go to ``on_rooms_lost``."""
        try:
            lost = await self.rooms.renew()
            await self.sessions.renew()
        except ClusterUnavailable:
            self.renewal_failures += 1
            return False
        self.renewals += 1
        self.rooms_lost += len(lost)
        if lost:
            log.warning("cluster: lost %d room(s) to other owners", len(lost))
            if self.on_rooms_lost is not None:
                self.on_rooms_lost(lost)
        return True

    async def _follow_master(self) -> None:
        """§4: listen to ``+switch-master`` on the Sentinels (one at a time, in turn) and drop
        the pool when our master moved; redis-py alone keeps writing to the old master until it
        is turned into a replica (redis-py #3867; ~10 s later, measured with Redis 7.0)."""
        pool = self.client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        sentinels = pool.sentinel_manager.sentinels
        turn = 0
        while True:
            pubsub = sentinels[turn % len(sentinels)].pubsub()
            turn += 1
            try:
                await pubsub.subscribe("+switch-master")
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    data = message["data"]
                    text = data.decode() if isinstance(data, bytes) else str(data)
                    if text.split(" ")[0] == pool.service_name:
                        log.warning("cluster: sentinel switched the master (%s)", text)
                        await drop_connections(self.client)
            except (RedisError, OSError):
                await asyncio.sleep(1.0 * self._timing)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _on_failure(self, exc: BaseException) -> None:
        """Under Sentinel a failed call may mean a failover: reconnect through Sentinel."""
        if self._sentinel and (self._dropping is None or self._dropping.done()):
            self._dropping = asyncio.get_running_loop().create_task(drop_connections(self.client))
