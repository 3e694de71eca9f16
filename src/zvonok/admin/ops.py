"""The operations side of a node, built and closed by the app: metrics, quality, webhooks, admin.

Owns ``Operations`` (what ``build_operations`` wires: the ``Metrics`` registry and its room
observer, the ``QualityMonitor`` and the loop-lag probe on the media worker's tick, the
``Webhooks`` senders when ``webhook_urls`` is set and the ``EventBus`` the room observer publishes
their events to (``cluster.events``: straight to the senders on one node, a Redis Stream delivered
once cluster-wide when given a ``RedisCluster``), the admin FastAPI app when ``admin_token`` is
set; on a front split into media workers, ``build_front_operations``: the front's own metrics
with every worker's merged in, webhooks relayed from the workers, the admin API fanned out) and
``LazyAsgi``, which lets the app declare routes before the lifespan has built what
serves them. Imports ``rooms``, ``metrics``, ``media.worker`` (types and the tick interval);
never ``signaling``. Implements no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..cluster.events import Deliver, EventBus, LocalEventBus
from ..config import Settings
from ..ids import RoomKey
from ..media.worker import TICK_INTERVAL, MediaWorker
from ..metrics import Metrics, record, scrape_workers
from ..rooms.events import RoomEvents
from ..rooms.quality import QualityMonitor
from ..rooms.service import RoomService
from .webhook_events import WebhookEvent, WebhookObserver

if TYPE_CHECKING:  # FastAPI (admin) and httpx (webhooks) load only when configured: ~9 MB RSS
    from fastapi import FastAPI

    from ..cluster.node import RedisCluster
    from ..drain import NodeDrain
    from .backend import Call
    from .webhooks import Webhooks

log = logging.getLogger("zvonok.admin")
#: A front's loop-lag probe interval: it carries no media, so it need not wake 4 times a second.
FRONT_TICK_INTERVAL = 1.0


@dataclass(slots=True)
class Operations:
    """Everything operational a node runs; ``close`` undoes ``build_operations``."""

    metrics: Metrics
    #: This process's quality monitor (None on a front: each worker runs its own).
    quality: QualityMonitor | None
    webhooks: Webhooks | None
    admin: FastAPI | None
    #: Where webhook events are published (observers, a front's worker notes); None without URLs.
    event_bus: EventBus[WebhookEvent] | None = None
    unsubscribe: list[Callable[[], None]] = field(default_factory=list)
    #: A front's ``{worker id: call}``: ``/metrics`` then merges every worker's exposition.
    worker_calls: Callable[[], Mapping[str, Call]] | None = None
    _tick: asyncio.Task[None] | None = None

    async def render_metrics(self) -> tuple[bytes, str]:
        """The ``/metrics`` body: this process's metrics, and every worker's on a front."""
        if self.worker_calls is None:
            return self.metrics.render()
        return self.metrics.render_merged(await scrape_workers(self.worker_calls()))

    async def close(self) -> None:
        for unsubscribe in self.unsubscribe:
            unsubscribe()
        self.unsubscribe.clear()
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
            self._tick = None
        if self.event_bus is not None:
            await self.event_bus.close()
        if self.webhooks is not None:
            await self.webhooks.close()


def _webhooks(settings: Settings) -> Webhooks | None:
    """The webhook senders, when ``webhook_urls`` is set."""
    if not settings.webhook_urls:
        return None
    from .webhooks import Webhooks

    webhooks = Webhooks(
        settings.webhook_urls,
        secret=settings.webhook_secret,
        timeout=settings.webhook_timeout,
        max_attempts=settings.webhook_max_attempts,
        backoff=settings.webhook_backoff,
        backoff_max=settings.webhook_backoff_max,
        queue_size=settings.webhook_queue_size,
    )
    if not settings.webhook_secret:
        log.warning("webhook_urls set without webhook_secret: webhooks are not signed")
    return webhooks


def _deliver(webhooks: Webhooks) -> Deliver:
    """A cluster consumer's delivery: a stream entry's JSON body → the senders, all URLs."""

    async def deliver(body: Mapping[str, Any]) -> None:
        try:
            event = WebhookEvent.from_json(body)
        except ValueError as exc:
            log.warning("webhook event from the cluster stream dropped: %s", exc)
            return
        await webhooks.deliver(event)

    return deliver


def _event_bus(
    webhooks: Webhooks, cluster: RedisCluster | None, timing: float
) -> EventBus[WebhookEvent]:
    """One node: the senders' own queues (today's behaviour). A Redis cluster: the stream, which
    this node also consumes with ``webhooks.deliver`` (the senders' queues stay unused)."""
    if cluster is None:
        webhooks.start()
        return LocalEventBus(webhooks.emit)
    from ..cluster.redis_events import redis_event_bus  # redis-py: the redis backend only

    return redis_event_bus(cluster, _deliver(webhooks), timing=timing, on_drop=_count_dropped)


def _count_dropped() -> None:
    """An event the full cluster outbox dropped (Redis unreachable too long)."""
    record("webhook_deliveries", "dropped")


def build_operations(
    settings: Settings,
    *,
    events: RoomEvents,
    rooms: RoomService,
    worker: MediaWorker,
    connections: Callable[[], int],
    cluster: RedisCluster | None = None,
    drain: NodeDrain | None = None,
) -> Operations:
    """Wire metrics, quality, webhooks and the admin API to a running room service; with
    ``cluster`` (the Redis backend) webhook events go through its stream (``cluster_timing``
    scales its claim age like the cluster's other intervals)."""
    webhooks = _webhooks(settings)
    bus = _event_bus(webhooks, cluster, settings.cluster_timing) if webhooks is not None else None
    metrics = Metrics(
        rooms=rooms,
        worker=worker,
        connections=connections,
        tick_interval=TICK_INTERVAL,
        webhook_queue=_queue_depth(webhooks, bus),
    )
    quality = QualityMonitor(
        rooms, interval=settings.stats_interval, observers=[metrics.observe_quality]
    )
    events.add(metrics.observer)
    if bus is not None:
        events.add(WebhookObserver(bus))
        bus.start()
    admin = None
    if settings.admin_token:
        from .api import create_admin_app

        admin = create_admin_app(rooms, quality, settings.admin_token, drain=drain)
    ops = Operations(metrics, quality, webhooks, admin, event_bus=bus)
    ops.unsubscribe.extend(metrics.add_ticks(worker, quality))
    return ops


class LazyAsgi:
    """An ASGI app that forwards to ``get()`` once it exists (404 until then)."""

    def __init__(self, get: Callable[[], ASGIApp | None]) -> None:
        self._get = get

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._get()
        if app is None:
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            return
        await app(scope, receive, send)


def build_front_operations(
    settings: Settings,
    *,
    worker_calls: Callable[[], Mapping[str, Call]],
    locate: Callable[[RoomKey], str | None],
    connections: Callable[[], int],
    cluster: RedisCluster | None = None,
    drain: NodeDrain | None = None,
) -> Operations:
    """A front's operations: its own metrics (connections, signaling, webhooks, loop lag) with
    every worker's merged in, the event bus the workers' webhook events are relayed to (and its
    senders), and the admin API fanned out over the workers (``admin.backend``)."""
    webhooks = _webhooks(settings)
    bus = _event_bus(webhooks, cluster, settings.cluster_timing) if webhooks is not None else None
    metrics = Metrics(
        connections=connections,
        tick_interval=FRONT_TICK_INTERVAL,
        webhook_queue=_queue_depth(webhooks, bus),
    )
    if bus is not None:
        bus.start()
    admin = None
    if settings.admin_token:
        from .api import create_admin_app
        from .backend import FanoutAdminBackend, RelayedWorkers

        backend = FanoutAdminBackend(RelayedWorkers(worker_calls), locate)
        admin = create_admin_app(backend, settings.admin_token, drain=drain)
    ops = Operations(metrics, None, webhooks, admin, worker_calls=worker_calls, event_bus=bus)
    ops._tick = asyncio.get_running_loop().create_task(_tick(metrics), name="front-tick")
    return ops


def _queue_depth(
    webhooks: Webhooks | None, bus: EventBus[WebhookEvent] | None
) -> Callable[[], int] | None:
    """The ``webhook_queue_depth`` gauge: the senders' queues and the bus's outbox."""
    if webhooks is None:
        return None
    if bus is None:
        return webhooks.queue_depth
    return lambda: webhooks.queue_depth() + bus.depth()


async def _tick(metrics: Metrics) -> None:
    """The front has no media tick: feed the loop-lag probe once per ``FRONT_TICK_INTERVAL``."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(FRONT_TICK_INTERVAL)
        metrics.on_tick(loop.time())
