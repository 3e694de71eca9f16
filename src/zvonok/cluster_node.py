"""The cluster in a running node (``zvonok serve``): the Redis backend's start, its heartbeat
figures, ``/metrics`` gauges and the status the admin API and ``zvonok cluster status`` show.

Shared design ``cluster.md`` §3 ("Owner selection": a node's ``load`` is that of its least-loaded
worker; the heartbeat carries state, load, rooms, sessions and UDP addresses) and §4.

- ``build_cluster``: ``RedisCluster.from_settings`` when ``cluster_backend = "redis"``, else
  ``None``; redis-py is imported only then (a local node never loads it).
- ``NodeStats``: this node's figures, read from its one process (media worker and room service:
  the largest of CPU fraction, forwarded packets/s ÷ capacity and sessions ÷ cap, the score a
  media worker reports, ``relay.front``) or from the front's ``WorkerPool`` (the least-loaded live
  worker's score); the media addresses are the workers' UDP host candidates (``announce_ips``
  when set: what clients are told).
- ``ClusterView``: what the app holds in either mode: ``start`` (feeds the heartbeats, adds the
  cluster gauges to ``/metrics`` and ``GET /admin/cluster`` to the admin API, starts the
  backend), ``status()`` and ``close()``.
- ``ClusterCollector``: the ``zvonok_cluster_*`` families (redis mode only): health, leases,
  Redis errors, dead nodes reaped, and the relay between nodes (``ClusteredRooms`` joins and
  sessions, lease lookups ahead skipped, the ``RedisSignalBus`` frames and links, how long each
  leg of a relayed join took, the webhook ``RedisEventBus``'s claims and duplicates).

Imports ``cluster`` (``placement``: the load score) and ``relay``/``media``/``rooms`` for types.
Implements no RFC.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .cluster.base import NodeInfo
from .cluster.placement import PPS_CAPACITY, SESSION_CAPACITY
from .cluster.status import local_status
from .config import Settings

if TYPE_CHECKING:
    from .admin.ops import Operations
    from .cluster.bus import RedisSignalBus
    from .cluster.node import RedisCluster
    from .cluster.redis_events import RedisEventBus
    from .cluster.redis_nodes import RedisNodeRegistry
    from .media.worker import MediaWorker
    from .relay.front import WorkerPool
    from .relay.nodes import ClusteredRooms
    from .rooms.service import RoomService

log = logging.getLogger("zvonok.cluster")

#: How long ``status()`` waits for Redis before answering 503.
STATUS_TIMEOUT = 3.0
#: How long a ``/metrics`` scrape waits for the live node count before showing the last one.
METRICS_TIMEOUT = 0.5
#: The shortest interval one process's load is measured over (seconds).
MIN_SAMPLE = 0.5
#: Health states, each a label value of ``zvonok_cluster_health``.
HEALTH_STATES = ("ok", "degraded", "reconciling")


def build_cluster(settings: Settings) -> RedisCluster | None:
    """The node's Redis backend (unstarted; its client connects on first use), or ``None``."""
    if settings.cluster_backend != "redis":
        return None
    from .cluster.node import RedisCluster

    return RedisCluster.from_settings(settings, timing=settings.cluster_timing)


def udp_addresses(candidates: list[str]) -> list[str]:
    """``host:port`` (``[v6]:port``) of the UDP host candidates among ``candidate:`` lines."""
    out = []
    for line in candidates:
        fields = line.split()
        if len(fields) >= 6 and fields[2].lower() == "udp":
            host, port = fields[4], fields[5]
            out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return out


class NodeStats:
    """This node's load, rooms, sessions and media addresses, from one process or a pool."""

    def __init__(
        self,
        *,
        worker: MediaWorker | None = None,
        rooms: RoomService | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self._worker = worker
        self._rooms = rooms
        self._pool = pool
        self._cpu = (time.monotonic(), time.process_time())
        self._sent = 0
        self._last = 0.0

    def reset(self) -> None:
        """Start measuring now (the busy start-up is not the node's load)."""
        self._cpu = (time.monotonic(), time.process_time())
        self._last = 0.0

    def load(self) -> float:
        """0-1 (above 1 when overloaded): the least-loaded worker's score; one process measures
        its own since the last call, as a media worker's load report does (over at least
        ``MIN_SAMPLE`` seconds: a call sooner answers the last figure)."""
        if self._pool is not None:
            live = self._pool.live_workers()
            return min((h.score() for h in live), default=1.0)
        if self._worker is None or self._rooms is None:
            return 0.0
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu
        wall = now - then
        if wall < MIN_SAMPLE:
            return self._last
        self._cpu = (now, cpu)
        sent = sum(t.tx_packets for t in self._worker.transports.values())
        pps = max(sent - self._sent, 0) / wall
        self._sent = sent
        self._last = max(
            (cpu - cpu_then) / wall,
            pps / PPS_CAPACITY,
            len(self._rooms.sessions) / SESSION_CAPACITY,
        )
        return self._last

    def room_keys(self) -> list[str]:
        if self._pool is not None:
            return sorted({str(key) for h in self._pool.live_workers() for key in h.claimed})
        return sorted(str(key) for key in self._rooms.rooms) if self._rooms is not None else []

    def rooms(self) -> int:
        if self._pool is not None:
            return sum(int(h.load.get("rooms", 0)) for h in self._pool.live_workers())
        return len(self._rooms.rooms) if self._rooms is not None else 0

    def sessions(self) -> int:
        if self._pool is not None:
            return sum(int(h.load.get("sessions", 0)) for h in self._pool.live_workers())
        return len(self._rooms.sessions) if self._rooms is not None else 0

    def addresses(self) -> tuple[str, ...]:
        if self._pool is not None:
            handles = sorted(self._pool.live_workers(), key=lambda h: h.index)
            return tuple(a for h in handles for a in udp_addresses(h.info.get("candidates", [])))
        if self._worker is None:
            return ()
        return tuple(udp_addresses(self._worker.local_candidates()))

    def publish(self, registry: RedisNodeRegistry) -> None:
        """``RedisCluster.before_heartbeat``: what this heartbeat carries."""
        registry.load = self.load()
        registry.rooms = self.rooms()
        registry.sessions = self.sessions()
        registry.addresses = self.addresses()


#: ``zvonok_cluster_nodes`` is counted again at most this often (seconds).
NODES_COUNT_TTL = 1.0


class ClusterCollector(Collector):
    """``zvonok_cluster_*``: health, live nodes, leases, renewals, Redis errors, heartbeat age,
    dead nodes reaped; with ``relay``/``bus`` the joins and sessions relayed between nodes (and
    the lease lookups ahead of a join skipped) and the bus's frames and links; with ``events``
    the webhook stream's claimed entries and duplicates."""

    def __init__(
        self,
        cluster: RedisCluster,
        *,
        relay: ClusteredRooms | None = None,
        bus: RedisSignalBus | None = None,
        events: RedisEventBus | None = None,
    ) -> None:
        self._cluster = cluster
        self._relay = relay
        self._bus = bus
        self._events = events
        self._started = time.monotonic()
        #: Live nodes seen at the last scrape (``refresh``); NaN before any answer.
        self.nodes_live = math.nan
        #: When ``refresh`` last asked Redis (``time.monotonic()``); None before it did.
        self._counted_at: float | None = None

    async def refresh(self) -> None:
        """Before a scrape: count the live nodes (one Redis call, through the breaker), at
        most once per ``NODES_COUNT_TTL``: scrapes in a burst cost Redis one call."""
        from .cluster.base import ClusterUnavailable

        now = time.monotonic()
        if self._counted_at is not None and now - self._counted_at < NODES_COUNT_TTL:
            return
        self._counted_at = now
        try:
            async with asyncio.timeout(METRICS_TIMEOUT):
                self.nodes_live = len(await self._cluster.registry.nodes())
        except (ClusterUnavailable, TimeoutError):
            pass  # the last count stays; zvonok_cluster_health says why

    def collect(self) -> Iterator[Metric]:
        cluster = self._cluster
        health = GaugeMetricFamily(
            "zvonok_cluster_health",
            "1 for the node's cluster state (ok, degraded: Redis unreachable, reconciling).",
            labels=["state"],
        )
        status = cluster.health.status
        for state in HEALTH_STATES:
            health.add_metric([state], 1 if status == state else 0)
        yield health
        yield GaugeMetricFamily(
            "zvonok_cluster_nodes", "Live nodes in the cluster (at this scrape).",
            value=self.nodes_live,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "zvonok_cluster_rooms_owned", "Rooms this node holds a lease on.",
            value=len(cluster.rooms),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "zvonok_cluster_node_load", "The load this node's heartbeat publishes (0-1).",
            value=cluster.registry.load,
        )  # fmt: skip
        at = cluster.heartbeat_at
        yield GaugeMetricFamily(
            "zvonok_cluster_heartbeat_age_seconds",
            "Time since this node's heartbeat last reached Redis (since start if never).",
            value=time.monotonic() - (self._started if at is None else at),
        )
        renewals = CounterMetricFamily(
            "zvonok_cluster_lease_renewals",
            "Lease renewal rounds (rooms and session bindings), by result.",
            labels=["result"],
        )
        renewals.add_metric(["ok"], cluster.renewals)
        renewals.add_metric(["failed"], cluster.renewal_failures)
        yield renewals
        yield CounterMetricFamily(
            "zvonok_cluster_rooms_lost", "Rooms a renewal found owned by another node.",
            value=cluster.rooms_lost,
        )  # fmt: skip
        yield CounterMetricFamily(
            "zvonok_cluster_redis_errors", "Redis calls that failed or timed out.",
            value=cluster.health.failures,
        )  # fmt: skip
        yield CounterMetricFamily(
            "zvonok_cluster_redis_refused",
            "Redis calls refused at once by the open circuit breaker (while degraded).",
            value=cluster.health.refused,
        )
        yield CounterMetricFamily(
            "zvonok_cluster_nodes_reaped",
            "Dead nodes whose key this node removed (the peer check: no subscriber, no heartbeat).",
            value=cluster.registry.reaped,
        )
        yield from self._relay_families()

    def _relay_families(self) -> Iterator[Metric]:
        relay, bus, events = self._relay, self._bus, self._events
        if relay is not None:
            joins = CounterMetricFamily(
                "zvonok_cluster_relay_joins",
                "Joins relayed between nodes: to another node's room (relayed), or served here "
                "for a session connected to another node (served).",
                labels=["direction"],
            )
            joins.add_metric(["relayed"], relay.relayed_joins)
            joins.add_metric(["served"], relay.served_joins)
            yield joins
            located = CounterMetricFamily(
                "zvonok_cluster_relay_located",
                "Joins by how the room's owner node was found: held (here), relayed (a session "
                "of the room is relayed to it already), lease (looked up in Redis), pick (new).",
                labels=["source"],
            )
            for source, count in relay.located.items():
                located.add_metric([source], count)
            yield located
            yield CounterMetricFamily(
                "zvonok_cluster_relay_look_ahead_skipped",
                "Lease lookups at WebSocket accept not started: too many rooms had one already.",
                value=relay.look_ahead_skipped,
            )
            sessions = GaugeMetricFamily(
                "zvonok_cluster_relay_sessions",
                "Sessions now relayed to another node (relayed) or served for one (served).",
                labels=["direction"],
            )
            sessions.add_metric(["relayed"], len(relay.remote))
            sessions.add_metric(["served"], len(relay.served))
            yield sessions
        if bus is not None:
            frames = CounterMetricFamily(
                "zvonok_cluster_bus_frames",
                "Signal bus frames between nodes: out (published, resends included), in.",
                labels=["direction"],
            )
            frames.add_metric(["out"], bus.frames_out)
            frames.add_metric(["in"], bus.frames_in)
            yield frames
            yield GaugeMetricFamily(
                "zvonok_cluster_bus_links", "Open signal bus links to other nodes.",
                value=len(bus.links()),
            )  # fmt: skip
            broken = CounterMetricFamily(
                "zvonok_cluster_bus_links_closed",
                "Signal bus links closed, by reason (closed: at shutdown; others: broken).",
                labels=["reason"],
            )
            for reason, count in sorted(bus.links_broken.items()):
                broken.add_metric([reason], count)
            yield broken
            yield CounterMetricFamily(
                "zvonok_cluster_bus_dropped",
                "Signal bus messages dropped: malformed, for a gone link, or a full send queue.",
                value=bus.messages_dropped + bus.send_dropped,
            )
        legs = HistogramMetricFamily(
            "zvonok_cluster_relay_leg_seconds",
            "Legs of the signaling relayed between nodes: locate (the edge's lease lookup), "
            "request (the edge's join request to the owner), serve (that join on the owner), bus "
            "(request minus serve: the pub/sub hops), send_wait and publish (the signal bus's "
            "send queue and PUBLISH batches).",
            labels=["leg"],
        )
        for timings in (t.timings for t in (relay, bus) if t is not None):
            for leg, buckets, total in timings.histograms():
                legs.add_metric([leg], buckets, total)
        if relay is not None or bus is not None:
            yield legs
        if events is not None:
            yield CounterMetricFamily(
                "zvonok_cluster_events_claimed",
                "Webhook stream entries claimed from a silent node's consumer.",
                value=events.claimed,
            )
            yield CounterMetricFamily(
                "zvonok_cluster_events_duplicates",
                "Webhook stream entries this node had delivered already (not posted again).",
                value=events.duplicates,
            )


class ClusterView:
    """The cluster as this node's app sees it, in either mode."""

    def __init__(
        self,
        settings: Settings,
        cluster: RedisCluster | None,
        stats: NodeStats,
        *,
        relay: ClusteredRooms | None = None,
        bus: RedisSignalBus | None = None,
    ) -> None:
        self.settings = settings
        self.cluster = cluster
        self.stats = stats
        self.relay = relay
        self.bus = bus
        self.collector: ClusterCollector | None = None
        #: A local node's boot id (a Redis node's is its registry's).
        self._boot = secrets.token_hex(8)

    @property
    def node_id(self) -> str:
        return self.settings.cluster_node_id if self.cluster is None else self.cluster.node_id

    async def start(self, ops: Operations | None) -> None:
        """Feed the heartbeats, add the gauges and the admin endpoint, start the backend."""
        self.stats.reset()
        if ops is not None and ops.admin is not None and self.settings.admin_token:
            from .admin.cluster import add_cluster_route

            add_cluster_route(ops.admin, self.status, self.settings.admin_token)
        if self.cluster is None:
            return
        self.cluster.before_heartbeat = self.stats.publish
        if ops is not None:
            from .cluster.redis_events import RedisEventBus

            events = ops.event_bus if isinstance(ops.event_bus, RedisEventBus) else None
            self.collector = ClusterCollector(
                self.cluster, relay=self.relay, bus=self.bus, events=events
            )
            ops.metrics.registry.register(self.collector)
        await self.cluster.start()
        from .cluster.connection import RedisTarget

        log.info(
            "node %s (boot %s) in the cluster on %s (%s)",
            self.cluster.node_id,
            self.cluster.registry.boot_id,
            RedisTarget.from_settings(self.settings).describe(),
            self.cluster.health.status,
        )

    async def refresh_metrics(self) -> None:
        if self.collector is not None:
            await self.collector.refresh()

    def local_node(self) -> NodeInfo:
        return NodeInfo(
            node_id=self.node_id,
            boot_id=self._boot,
            load=self.stats.load(),
            addresses=self.stats.addresses(),
            rooms=self.stats.rooms(),
            sessions=self.stats.sessions(),
        )

    async def status(self) -> dict[str, Any]:
        """``GET /admin/cluster``: every live node and room owner (``cluster.status``); in local
        mode this node and its rooms. ``ClusterUnavailable`` when Redis does not answer."""
        if self.cluster is None:
            return local_status(self.local_node(), self.stats.room_keys())
        from redis.exceptions import RedisError

        from .cluster.base import ClusterUnavailable
        from .cluster.status import read_status

        try:
            async with asyncio.timeout(STATUS_TIMEOUT):
                return await read_status(
                    self.cluster.client,
                    keys=self.cluster.keys,
                    me=self.cluster.node_id,
                    health=self.cluster.health.status,
                )
        except (RedisError, OSError, TimeoutError) as exc:
            raise ClusterUnavailable(f"redis unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self.cluster is not None:
            await self.cluster.close()
