"""The composition root: settings → auth → membership store → cluster → media worker → rooms →
ASGI app, and the process entry point used by ``zvonok serve``.

The only module that knows every layer; each layer gets its collaborators injected here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .admin.ops import LazyAsgi, Operations, build_front_operations, build_operations
from .admin.webhook_events import WEBHOOK_NOTIFICATION, deliver_notification
from .auth.secret import load_or_create_secret
from .auth.tokens import TokenVerifier, issue_token
from .cluster.base import ClusterHealth, RoomDirectory, SessionDirectory
from .cluster.local import LocalClusterHealth, LocalRoomDirectory, LocalSessionDirectory
from .cluster_node import ClusterView, NodeStats, build_cluster
from .compose import build_media, build_room_service, state_snapshot
from .config import Settings
from .drain import SERVING, NodeDrain
from .edge import DevHostPolicy
from .errors import SignalError
from .heap import merge_counts, settle_heap, type_counts
from .httpserver import EdgeLimits, connection_budget, protocol_classes
from .ids import RoomKey, RoomKind
from .logs import configure_logging
from .media.worker import MediaWorker
from .rooms.events import RoomEvents
from .rooms.moderation import send_away
from .rooms.port import CallRooms, LocalRooms
from .rooms.service import RoomService
from .signaling.ws import CallEndpoint, ConnectionLimits
from .store.base import MembershipStore, SqlStore, check_store, create_store
from .web import dev_guarded, web_routes

if TYPE_CHECKING:  # redis-py loads only with cluster_backend = "redis"
    from .cluster.bus import RedisSignalBus
    from .cluster.node import RedisCluster

    # the relay (media worker processes, other nodes) loads only with workers > 1 or Redis
    from .relay.frames import Frame
    from .relay.front import WorkerHandle, WorkerPool
    from .relay.nodes import OwnedRooms

log = logging.getLogger("zvonok.app")
#: At a stop, how long sessions get to receive `error shutdown` (or `node-draining`) and close
#: before uvicorn stops.
GOODBYE_TIMEOUT = 3.0
#: The least time a client has to answer a ping before the silence deadline (see
#: ``_silence_timeout``), when ``inactivity_timeout - resume_grace`` would leave less.
MIN_PONG_WAIT = 2.0


@dataclass(slots=True)
class Components:
    """Everything a running node owns; closed in reverse order of creation."""

    settings: Settings
    store: MembershipStore
    #: Where sessions join: this process's rooms, or the workers' through the pool.
    calls: CallRooms
    endpoint: CallEndpoint
    #: ``/readyz`` shows it (``ok``; with Redis also ``degraded``/``reconciling``): never readiness.
    health: ClusterHealth
    dev_secret: str | None
    ops: Operations | None = None
    #: One process (``workers = 1``): its media worker and room service.
    worker: MediaWorker | None = None
    rooms: RoomService | None = None
    #: Several processes: the media workers behind their links.
    pool: WorkerPool | None = None
    #: ``cluster_backend = "redis"``: the node's Redis backend (None in local mode).
    cluster: RedisCluster | None = None
    #: Either mode: heartbeat figures, /metrics gauges, ``GET /admin/cluster``.
    cluster_view: ClusterView | None = None
    #: ``cluster_backend = "redis"``: the links to the other nodes (relayed sessions).
    signal_bus: RedisSignalBus | None = None
    #: SIGTERM / ``zvonok drain``: no new rooms, stop once the rooms are gone (``drain``).
    drain: NodeDrain | None = None


async def build(settings: Settings) -> Components:
    """Create and start every component of a node."""
    secret = settings.jwt_secret
    hs = any(alg.startswith("HS") for alg in settings.jwt_algorithms)
    if secret is None and hs:
        secret = load_or_create_secret(settings.data_dir)
    verifier = TokenVerifier(settings, secret)
    store = await create_store(settings)
    await check_store(store)  # a membership query the database refuses stops the start here
    cluster = build_cluster(settings)
    # session bindings are cluster-wide with Redis (a session id cannot be taken via another node)
    sessions: SessionDirectory = LocalSessionDirectory() if cluster is None else cluster.sessions
    # with Redis, a room is claimed before it is joined (ClusteredRooms); the rooms layer's own
    # claim then finds the lease held, and its release gives the lease up
    owned: OwnedRooms | None = None
    if cluster is not None:
        from .relay.nodes import OwnedRooms

        owned = OwnedRooms(cluster.rooms, cluster.node_id)
    room_dir: RoomDirectory = LocalRoomDirectory() if owned is None else owned
    worker: MediaWorker | None = None
    rooms: RoomService | None = None
    pool: WorkerPool | None = None
    calls: CallRooms
    events = RoomEvents()
    if settings.worker_count == 1:
        worker = build_media(settings)
        await worker.start()
        rooms = build_room_service(
            settings, worker, sessions=sessions, rooms=room_dir, events=events
        )
        calls = LocalRooms(rooms)
    else:
        from .relay.front import RelayedRooms, WorkerPool

        relayed: list[Operations] = []

        def on_note(handle: WorkerHandle, frame: Frame) -> None:
            bus = relayed[0].event_bus if relayed else None
            if frame.method == WEBHOOK_NOTIFICATION and bus is not None:
                deliver_notification(bus, frame.params)

        pool = WorkerPool(
            settings,
            settings.worker_count,
            sessions=sessions,
            rooms=room_dir,
            on_note=on_note,
        )
        await pool.start()
        calls = RelayedRooms(pool)
    signal_bus = None
    clustered = None
    if cluster is not None and owned is not None:
        from .relay.nodes import build_clustered

        clustered, signal_bus = build_clustered(
            cluster,
            calls,
            owned,
            timing=settings.cluster_timing,
            close_room=_mover(rooms) if rooms is not None else pool.move_room if pool else None,
        )
        calls = clustered
    endpoint = CallEndpoint(
        verifier=verifier,
        store=store,
        rooms=calls,
        look_ahead=clustered.look_ahead if clustered is not None else None,
        limits=ConnectionLimits(
            max_message_bytes=settings.max_message_bytes,
            message_rate=settings.message_rate,
            message_burst=settings.message_burst,
            bad_message_limit=settings.bad_message_limit,
            send_queue_size=settings.send_queue_size,
            connect_rate=settings.connect_rate,
            connect_burst=settings.connect_burst,
            join_timeout=settings.join_timeout,
            forwarded_allow_ips=tuple(settings.forwarded_allow_ips),
        ),
    )
    drain = NodeDrain(calls, settings.drain_timeout)
    if cluster is not None:  # a draining node is not picked for new rooms (a heartbeat at once)
        drain.listeners.append(cluster.set_state)
    ops = None
    if rooms is not None and worker is not None:
        ops = build_operations(
            settings,
            events=events,
            rooms=rooms,
            worker=worker,
            connections=lambda: endpoint.connections,
            cluster=cluster,
            drain=drain,
        )
    elif pool is not None:
        ops = build_front_operations(
            settings,
            worker_calls=pool.calls,
            locate=pool.locate,
            connections=lambda: endpoint.connections,
            cluster=cluster,
            drain=drain,
        )
        relayed.append(ops)
    stats = NodeStats(worker=worker, rooms=rooms, pool=pool)
    view = ClusterView(settings, cluster, stats, relay=clustered, bus=signal_bus)
    await view.start(ops)
    if signal_bus is not None:
        await signal_bus.start()
    return Components(
        settings,
        store,
        calls,
        endpoint,
        LocalClusterHealth() if cluster is None else cluster.health,
        secret if hs else None,
        ops,
        worker=worker,
        rooms=rooms,
        pool=pool,
        cluster=cluster,
        cluster_view=view,
        signal_bus=signal_bus,
        drain=drain,
    )


async def shutdown(components: Components) -> None:
    if components.drain is not None:
        components.drain.stop()
    await components.calls.close()
    if components.ops is not None:
        await components.ops.close()
    if components.worker is not None:
        await components.worker.close()
    if components.signal_bus is not None:
        await components.signal_bus.close()
    if components.cluster_view is not None:
        await components.cluster_view.close()
    await components.store.close()


def _mover(rooms: RoomService) -> Callable[[RoomKey, SignalError], Coroutine[Any, Any, None]]:
    """How a one-process node moves a room whose lease another node took (split brain, shared
    design cluster.md §4): each session is told the error (``room-moved``) and its socket closed
    with 1012; the client joins again with its sessionId and reaches the room's owner."""

    async def move(key: RoomKey, error: SignalError) -> None:
        send_away(rooms, key, error.code, error.message, error.close_code)

    return move


def create_app(settings: Settings, *, settle: bool = False) -> Starlette:
    """The ASGI application; components are built in its lifespan. ``settle``: a serving
    process of its own (``run``), whose start-up objects are then frozen (``heap``)."""
    state: dict[str, Components] = {}
    # An explicit dev_mode = true also lets the bind and announced addresses in as Host.
    explicit = settings.dev_mode is True
    dev_policy = DevHostPolicy([settings.host, *settings.announce_ips] if explicit else [])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        components = await build(settings)
        if settle:
            settled = settle_heap()
            log.debug(
                "start-up heap settled: %d objects frozen, %d collected (%.1f ms)",
                settled.frozen,
                settled.collected,
                settled.seconds * 1e3,
            )
        state["c"] = components
        app.state.zvonok = components
        log.info(
            "zvonok listening on http://%s:%d (WebSocket /api/v1/{chat|group}/{id}/call); "
            "media UDP %s:%s announcing %s (%s forwarding loop); data dir %s",
            settings.host,
            settings.port,
            settings.media_host,
            _media_ports(components),
            ",".join(settings.announce_ips) or "local addresses",
            _forwarding(components)
            + ("" if components.pool is None else f", {components.pool.count} workers"),
            settings.data_dir,
        )
        if settings.dev_on_network:
            log.warning(
                "DEVELOPMENT MODE ON A NETWORK ADDRESS: dev_mode = true and the HTTP server "
                "listens on %s, so /dev/token, /dev/join and /debug/state (tokens and memberships "
                "for anyone who asks) are reachable from the network (Host names allowed: "
                "loopback, %s); never do this on a shared or public network",
                settings.host,
                ", ".join(sorted(dev_policy.extra_hosts)) or "nothing else",
            )
        elif settings.dev_enabled:
            log.warning(
                "development mode: /dev/token and /dev/join hand out tokens and memberships to "
                "anyone who asks; set ZVONOK_DEV_MODE=false (or configure real keys) in production"
            )
        try:
            yield
        finally:
            await shutdown(components)
            log.info("zvonok stopped")

    async def call(websocket: WebSocket) -> None:
        if websocket.path_params.get("kind") not in ("chat", "group"):
            await websocket.close(1008)
            return
        await state["c"].endpoint(websocket)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        components = state.get("c")
        drain = components.drain if components is not None else None
        if components is None or components.calls.closing or (drain and drain.state != SERVING):
            status = "draining" if components is not None else "not-ready"
            return JSONResponse({"status": status}, status_code=503)
        return JSONResponse({"status": "ready", "cluster": components.health.status})

    async def metrics(request: Request) -> Response:
        ops = state["c"].ops
        if ops is None:
            return Response(status_code=404)
        view = state["c"].cluster_view
        if view is not None:
            await view.refresh_metrics()
        body, content_type = await ops.render_metrics()
        return Response(body, media_type=content_type)

    def admin_app() -> Any:
        components = state.get("c")
        return components.ops.admin if components is not None and components.ops else None

    async def debug_state(request: Request) -> Response:
        components = state["c"]
        collect = bool(request.query_params.get("gc"))
        snapshot = await _state_snapshot(components, collect)
        if collect:
            # Leak checks: what is still alive after a full collection (dev mode only), in this
            # process and, on a front, in every worker too (the sums).
            snapshot["gcCollected"] = snapshot.get("gcCollected", 0) + gc.collect()
            snapshot["gcObjects"] = snapshot.get("gcObjects", 0) + len(gc.get_objects())
            # start-up objects the collector skips (heap.settle_heap), not in gcObjects
            snapshot["gcFrozen"] = snapshot.get("gcFrozen", 0) + gc.get_freeze_count()
            snapshot["gcTypes"] = merge_counts(snapshot.get("gcTypes", {}), type_counts())
        return JSONResponse(snapshot)

    def issue_dev_token(user_id: str) -> str:
        secret = state["c"].dev_secret
        if secret is None:
            raise ValueError("dev tokens need an HS256 secret")
        return issue_token(
            secret,
            user_id,
            3600.0,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )

    async def dev_ensure_member(kind: str, room_id: str, user_id: str) -> None:
        store = state["c"].store
        if not isinstance(store, SqlStore):
            raise ValueError("/dev/join works with the embedded SQL membership store only")
        await store.ensure_member(RoomKey(RoomKind(kind), room_id), user_id)

    routes: list[Any] = [
        *web_routes(
            dev_mode=settings.dev_enabled,
            issue_dev_token=issue_dev_token,
            dev_ensure_member=dev_ensure_member,
            dev_policy=dev_policy,
        ),
        WebSocketRoute("/api/v1/{kind}/{room_id}/call", call),
        Route("/healthz", healthz),
        Route("/livez", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    if settings.admin_token:  # else the admin API does not exist (404)
        admin = LazyAsgi(admin_app)
        for path in ("/admin/{rest:path}", "/docs", "/openapi.json"):
            routes.append(Route(path, admin))
    if settings.dev_enabled:
        routes.append(Route("/debug/state", dev_guarded(dev_policy, debug_state)))
    return Starlette(routes=routes, lifespan=lifespan)


def _media_ports(components: Components) -> str:
    if components.worker is not None:
        return str(components.worker.port)
    assert components.pool is not None
    return ",".join(
        str(h.info.get("mediaPort"))
        for h in sorted(components.pool.workers.values(), key=lambda h: h.index)
    )


def _forwarding(components: Components) -> str:
    if components.worker is not None:
        return components.worker.forwarding
    assert components.pool is not None
    kinds = {str(h.info.get("forwarding")) for h in components.pool.workers.values()}
    return kinds.pop() if len(kinds) == 1 else "mixed"


async def _state_snapshot(components: Components, collect: bool = False) -> dict[str, Any]:
    """This node's rooms for ``/debug/state``: this process's, or every worker's merged."""
    if components.rooms is not None and components.worker is not None:
        snapshot = state_snapshot(components.rooms, components.worker)
        snapshot["connections"] = components.endpoint.connections
        return snapshot
    assert components.pool is not None
    answers = await components.pool.ask_all("state", {"gc": collect})
    merged: dict[str, Any] = {
        "rooms": {},
        "sessions": 0,
        "connections": components.endpoint.connections,
        "tasks": len(asyncio.all_tasks()),
        "transports": 0,
        "forwarding": _forwarding(components),
        "iceTcp": None,
        "workers": {},
        "workerRestarts": components.pool.restarts,
    }
    for name, answer in answers.items():
        handle = components.pool.workers.get(int(name))
        info = {"pid": None if handle is None else handle.info.get("pid")}
        if answer is not None:
            for k in ("sessions", "tasks", "transports", "forwarding", "iceTcp"):
                info[k] = answer[k]
        merged["workers"][name] = info
        if answer is None:
            continue
        for key, room in answer["rooms"].items():
            merged["rooms"][key] = {**room, "worker": name}
        merged["sessions"] += answer["sessions"]
        for key in ("gcCollected", "gcObjects", "gcFrozen"):
            if key in answer:
                merged[key] = merged.get(key, 0) + answer[key]
        if "gcTypes" in answer:
            merged["gcTypes"] = merge_counts(merged.get("gcTypes", {}), answer["gcTypes"])
        merged["tasks"] += answer["tasks"]
        merged["transports"] += answer["transports"]
    return merged


class _Server(uvicorn.Server):
    """uvicorn, plus the graceful drain (``drain.NodeDrain``) and a fast stop.

    SIGTERM (or ``POST /admin/drain``) starts the drain: no new rooms, ``/readyz`` 503; the node
    stops once its rooms are empty, or at ``drain_timeout``, when the sessions still here get
    ``error`` ``node-draining``. SIGINT, or a second SIGTERM while a SIGTERM's drain runs, stops
    at once: every session gets ``error`` ``shutdown``. Either way the sessions are told and their
    sockets closed first (bounded by ``GOODBYE_TIMEOUT``): uvicorn's own shutdown closes every
    WebSocket with 1012 at once, which would race those messages; only then does uvicorn's
    shutdown start. A signal after that goes straight to uvicorn (force exit on a further Ctrl-C).

    uvicorn's main loop wakes ten times a second only to see whether it should exit; this one
    wakes once a second (the ``Date`` header's resolution) and at once when told to exit, so an
    idle node (above all a front, which carries no media) sleeps.
    """

    _stop_task: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        components = self._components()
        if components is not None and components.drain is not None:
            drain = components.drain

            def drained(reason: str) -> None:  # a SIGTERM's drain exits as SIGTERM did before
                sig = signal.SIGTERM if drain.by_signal else None
                self._stop(components, "node-draining", sig, None)

            drain.on_done = drained
        counter = 0  # on_tick refreshes the Date header when counter % 10 == 0: every pass
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    def _wake_main_loop(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _components(self) -> Components | None:
        components = getattr(getattr(self.config.app, "state", None), "zvonok", None)
        return components if isinstance(components, Components) else None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        components = self._components()
        if components is not None and self._stop_task is None:
            loop = asyncio.get_event_loop()
            loop.call_soon_threadsafe(self._on_signal, components, sig, frame)
            return
        super().handle_exit(sig, frame)
        self._wake_main_loop()

    def _on_signal(self, components: Components, sig: int, frame: FrameType | None) -> None:
        drain = components.drain
        if self._stop_task is not None:  # stopping already: uvicorn's own handling
            super().handle_exit(sig, frame)
            self._wake_main_loop()
        elif sig == signal.SIGTERM and drain is not None and not drain.by_signal:
            drain.start(by_signal=True)  # or, if `zvonok drain` began it, that drain goes on
        else:  # SIGINT, or a second SIGTERM: stop now
            self._stop(components, "shutdown", sig, frame)

    def _stop(
        self, components: Components, code: str, sig: int | None, frame: FrameType | None
    ) -> None:
        if self._stop_task is not None:
            return
        if components.drain is not None:
            components.drain.stop()
        self._stop_task = asyncio.get_running_loop().create_task(
            self._tell_and_exit(components, code, sig, frame)
        )

    async def _tell_and_exit(
        self, components: Components, code: str, sig: int | None, frame: FrameType | None
    ) -> None:
        try:
            components.calls.begin_shutdown(code)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(components.endpoint.idle.wait(), GOODBYE_TIMEOUT)
        finally:
            if sig is None:
                self.should_exit = True  # the drain `zvonok drain` began is over: exit 0
            else:
                super().handle_exit(sig, frame)
            self._wake_main_loop()


def _silence_timeout(settings: Settings) -> float:
    """How long a call WebSocket may stay silent (no message, no pong) before it is failed.

    ``httpserver.EdgeWebSocketProtocol`` fails a socket exactly this long after the client's last
    message or pong, wherever that falls between two pings (close 1011 and the socket closed at
    once: no closing handshake is waited for); the session then waits ``resume_grace`` for a
    resume (longer only while its media still flows). The two add up to ``inactivity_timeout``.
    A live client is pinged every ``ping_interval``, so the deadline leaves it at least
    ``MIN_PONG_WAIT`` to answer; then (a warning at start) sessions outlive the timeout.
    """
    return max(
        settings.inactivity_timeout - settings.resume_grace,
        settings.ping_interval + MIN_PONG_WAIT,
    )


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM (``zvonok serve``)."""
    configure_logging(settings)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep serving without it
        log.warning("uvloop not available; using the default event loop")
    silence = _silence_timeout(settings)
    if silence + settings.resume_grace > settings.inactivity_timeout:
        log.warning(
            "inactivity_timeout %.0f s cannot be met with resume_grace %.0f s and ping_interval "
            "%.0f s: a silent client's session ends %.0f s after its last sign of life",
            settings.inactivity_timeout,
            settings.resume_grace,
            settings.ping_interval,
            silence + settings.resume_grace,
        )
    budget = connection_budget(settings.max_connections)
    if budget < settings.max_connections:
        log.warning(
            "max_connections lowered from %d to %d by the open-files limit (ulimit -n)",
            settings.max_connections,
            budget,
        )
    http_protocol, ws_protocol = protocol_classes(
        EdgeLimits(
            max_connections=budget,
            max_connections_per_ip=settings.max_connections_per_ip,
            header_timeout=settings.header_timeout,
            silence_timeout=silence,
            proxies=tuple(settings.forwarded_allow_ips),
        )
    )
    config = uvicorn.Config(
        create_app(settings, settle=True),
        host=settings.host,
        port=settings.port,
        http=http_protocol,
        ws=ws_protocol,
        ws_max_size=4 * settings.max_message_bytes,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=None,  # the silence deadline of ws_protocol replaces the pong deadline
        # permessage-deflate keeps a zlib compressor and decompressor per connection (~64 kB
        # each at the library's settings) and compresses every message; signaling is small.
        ws_per_message_deflate=settings.ws_compression,
        log_config=None,
        access_log=False,
        # The client address is the socket peer; X-Forwarded-For counts only from the proxies
        # of forwarded_allow_ips, and zvonok reads it itself (signaling/ws.py, zvonok.edge).
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
