"""Rooms across nodes: ``ClusteredRooms``, the ``CallRooms`` of a node in a Redis cluster.

Shared design ``cluster.md`` §3 ("Join flow", "Relay, not redirect", "On a race") and §4 (node
crash, Redis outage, split brain). Any node accepts a call's WebSocket (the *edge*); the room
lives on one node (its *owner*), which alone claims it in the ``RoomDirectory``. A join:

1. Where does the room live? This node if it holds the room's lease (no Redis round trip: a
   node serves joins to its own rooms while Redis is away); else the node this node already
   relays sessions of the room to, over a link that is open (no Redis round trip either: that
   owner checks its lease itself and answers ``moved`` if it lost it); else the lease's owner if
   the lease is valid; else ``NodeRegistry.pick()`` (this node when it is within the margin).
   The lease lookup goes with the session's binding (``Bindings.bind_for_peer``) in the same
   round trip; a binding that holds is sent along (``bound``) and the owner's own binding then
   costs no round trip (``Bindings.bound_by_peer``). The lookup starts earlier when it can:
   ``look_ahead`` (called when a call's WebSocket is accepted, its token and membership checked:
   the room is in the URL) looks the lease up while the client sends its ``join``, which then
   waits only for the binding (``located`` ``ahead``). A lease looked up ahead serves the joins of
   that room on this node for ``LOOK_AHEAD_TTL`` at most, whatever it said (a stale owner answers
   ``moved``, as after any race); at most ``MAX_LOOK_AHEAD`` rooms are looked up or kept at once
   (more: the join looks the lease up itself), and a join of another room never sees it.
2. Here: claim the lease (an asyncio lock per room serializes this node's joins) and join the
   node's own ``CallRooms`` (``LocalRooms``, or ``RelayedRooms`` over the media workers).
3. Elsewhere: a ``RemoteSession`` asks the owner over the ``SignalBus`` link to that node, with the
   session's ``relay`` id; the owner runs step 2 with a ``RelaySink`` back to the edge. An owner
   that lost the claim race answers ``{"moved": winner}`` and the edge asks the winner (at most
   ``MAX_HOPS`` times).

After the join the edge relays ``offer``/``answer``/``ice``/``track-settings``/``leave`` as
requests and ``detach`` as a note; the owner sends the session's server messages back as notes
``send``/``close``. Media goes straight from the client to the owner's worker port: its
candidates name that port.

Failures: a broken link to an owner (its node died, or no ack progress) tells each session relayed
there ``error`` ``node-lost`` and closes it with 1012: the client resumes with the same
``sessionId`` and the room is claimed again elsewhere. A broken link from an edge detaches the
sessions it carried (they wait ``resume_grace`` for the client). Redis unreachable: joins that need
it get ``cluster-unavailable`` with ``retryAfterMs`` and close 1013; a room whose lease went to
another node (split brain, §4) has its sessions told ``room-moved`` (1012). A relayed join the
edge gives up (no answer within ``JOIN_WAIT``, or its task cancelled) is a ``detach`` to the owner,
which detaches the session once its join ends if it is still running; a join relayed while the
edge shuts down is refused with ``shutdown`` (1012).

Timing (issue 14 "Numbers"): how each relayed join's owner was found (``located``) and how long
its legs took (``timings``, ``cluster.timing``: the lease lookup, the request, the owner's join
and the bus hops between them), also as a debug log line per relayed join. Implements no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..cluster.base import (
    Claimed,
    ClaimResult,
    ClusterFull,
    ClusterUnavailable,
    NodeRegistry,
    RoomLease,
    SessionBinding,
)
from ..cluster.timing import JOIN_LEGS, LegTimes
from ..errors import SignalError
from ..ids import RoomKey, SessionId, UserId
from ..rooms.port import CallRooms, CallSession
from ..rooms.service import KeyedLocks, shutdown_refusal
from ..rooms.sink import SignalSink
from ..signaling.messages import IcePayload, parse_track_settings
from .frames import Frame
from .link import Link, LinkClosed
from .session import LinkedSession
from .sink import RelaySink

if TYPE_CHECKING:  # redis-py loads only with cluster_backend = "redis"
    from ..cluster.bus import RedisSignalBus
    from ..cluster.node import RedisCluster

log = logging.getLogger("zvonok.relay.nodes")

#: A join follows at most this many ``moved`` answers (§3 "On a race").
MAX_HOPS: Final = 3
#: How long an edge waits for the owner's answer to ``join``.
JOIN_WAIT: Final = 10.0
#: ``error`` codes of docs/protocol.md and their WebSocket close codes (RFC 6455 §7.4.1).
NODE_LOST: Final = "node-lost"
ROOM_MOVED: Final = "room-moved"
CLUSTER_UNAVAILABLE: Final = "cluster-unavailable"
CLUSTER_FULL: Final = "cluster-full"
RESTART_CLOSE: Final = 1012  # service restart: join again at once
TRY_LATER_CLOSE: Final = 1013  # try again later
#: How a join's owner node was found (``ClusteredRooms.located``): this node holds the lease, a
#: session of the room is relayed to the owner already, the lease looked up when the WebSocket
#: was accepted (``look_ahead``), the lease in Redis, a new placement.
LOCATED: Final = ("held", "relayed", "ahead", "lease", "pick")
#: Seconds a lease looked up ahead of a join serves the room's joins on this node.
LOOK_AHEAD_TTL: Final = 2.0
#: Rooms whose lease is being looked up ahead, or kept, at most.
MAX_LOOK_AHEAD: Final = 256


def node_lost() -> SignalError:
    return SignalError(
        NODE_LOST,
        "the node that holds this call stopped; join again with the same sessionId",
        fatal=True,
        close_code=RESTART_CLOSE,
    )


def room_moved() -> SignalError:
    return SignalError(
        ROOM_MOVED,
        "this call moved to another node; join again with the same sessionId",
        fatal=True,
        close_code=RESTART_CLOSE,
    )


def full() -> SignalError:
    return SignalError(
        CLUSTER_FULL,
        "every node is at capacity; try again later",
        fatal=True,
        close_code=TRY_LATER_CLOSE,
        retry_after_ms=5000,
    )


class Leases(Protocol):
    """What ``ClusteredRooms`` needs of the node's room directory (``RedisRoomDirectory``)."""

    @property
    def held(self) -> Mapping[RoomKey, int]: ...

    async def claim_lease(self, room: RoomKey, seen_epoch: int = 0) -> ClaimResult: ...

    async def lookup(self, room: RoomKey) -> RoomLease | None: ...

    async def release(self, room: RoomKey) -> None: ...


class Bindings(Protocol):
    """What ``ClusteredRooms`` needs of the node's session directory (``RedisSessionDirectory``)
    to bind a relayed join's session on the edge, for the owner."""

    async def bind_for_peer(
        self, session_id: SessionId, binding: SessionBinding
    ) -> SessionBinding: ...

    def bound_by_peer(self, session_id: SessionId, binding: SessionBinding) -> None: ...


class Bus(Protocol):
    """What ``ClusteredRooms`` needs of the ``SignalBus``: the one link to a peer node."""

    def link(self, peer: str) -> Link: ...


@dataclass(frozen=True, slots=True)
class _Moved:
    owner: str


class OwnedRooms:
    """The ``RoomDirectory`` the node's own rooms use in a cluster: the room was claimed by
    ``ClusteredRooms`` before the join reached the rooms, so ``claim`` costs no Redis round trip
    then; it remembers which rooms exist here, and ``release`` gives the lease up."""

    def __init__(self, leases: Leases, node_id: str) -> None:
        self._leases = leases
        self._node_id = node_id
        #: Rooms the node's rooms layer created and has not released.
        self.live: set[RoomKey] = set()

    async def claim(self, room: RoomKey) -> str:
        self.live.add(room)
        if room in self._leases.held:
            return self._node_id
        try:
            result = await self._leases.claim_lease(room)
        except ClusterUnavailable as exc:
            self.live.discard(room)
            raise exc.refusal() from None
        except BaseException:  # cancelled: the room was not made
            self.live.discard(room)
            raise
        if not isinstance(result, Claimed):
            self.live.discard(room)
            raise room_moved()
        return self._node_id

    async def release(self, room: RoomKey) -> None:
        self.live.discard(room)
        await self._leases.release(room)


class RemoteSession(LinkedSession):
    """The edge's ``CallSession`` of a session whose room lives on another node."""

    def __init__(
        self, rooms: ClusteredRooms, node: str, link: Link, relay: int, session_id: SessionId,
        sink: SignalSink, room: RoomKey,
    ) -> None:  # fmt: skip
        super().__init__(link, relay, session_id, sink)
        self._rooms = rooms
        self.node = node
        self.room = room

    def lost_error(self) -> SignalError:
        return node_lost()

    def forget(self) -> bool:
        return self._rooms.forget(self)


class ClusteredRooms:
    """``CallRooms`` of a node in a cluster: joins go to the room's owner node (see module)."""

    def __init__(
        self,
        inner: CallRooms,
        leases: Leases,
        owned: OwnedRooms,
        registry: NodeRegistry,
        *,
        node_id: str,
        close_room: Callable[[RoomKey, SignalError], Coroutine[Any, Any, None]] | None = None,
        degraded: Callable[[], bool] = lambda: False,
        bindings: Bindings | None = None,
    ) -> None:
        self.inner = inner
        self.bindings = bindings
        #: Redis is known to be unreachable: a join that needs it is refused without trying
        #: (the breaker's probe is left to the node's own heartbeats, so no join waits on it).
        self._degraded = degraded
        self.leases = leases
        self.owned = owned
        self.registry = registry
        self.node_id = node_id
        self._close_room = close_room
        self.bus: Bus | None = None
        self._relay_ids = itertools.count(1)
        #: Edge side: sessions relayed to another node, by (node, relay) (``_track``/``_untrack``
        #: keep ``_by_room`` in step).
        self.remote: dict[tuple[str, int], RemoteSession] = {}
        #: Edge side: the same sessions by room, to find a room's owner without Redis.
        self._by_room: dict[RoomKey, set[RemoteSession]] = {}
        #: Owner side: sessions an edge node relays here, by (edge node, relay).
        self.served: dict[tuple[str, int], tuple[CallSession, RelaySink]] = {}
        #: Owner side: joins being served, by (edge node, relay) → whether the edge gave the
        #: join up meanwhile (its ``detach`` came first: the session is detached once made).
        self._serving: dict[tuple[str, int], bool] = {}
        #: Per room being joined here: serializes this node's joins of it (the claim, then the
        #: join); a room's lock is forgotten when no join holds or awaits it.
        self._locks: KeyedLocks[RoomKey] = KeyedLocks()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Joins relayed to other nodes and served for other nodes, for metrics.
        self.relayed_joins = 0
        self.served_joins = 0
        #: Joins by how their owner node was found (``LOCATED``), and the legs' times.
        self.located = dict.fromkeys(LOCATED, 0)
        self.timings = LegTimes(JOIN_LEGS)
        #: Leases looked up ahead of a join (``look_ahead``): room → (when started, the lookup).
        self._ahead: dict[RoomKey, tuple[float, asyncio.Task[RoomLease | None]]] = {}
        #: Lookups ahead not started because ``MAX_LOOK_AHEAD`` rooms had one.
        self.look_ahead_skipped = 0

    def attach(self, bus: Bus) -> None:
        self.bus = bus

    # ------------------------------------------------------------------ CallRooms
    @property
    def closing(self) -> bool:
        return self.inner.closing

    @property
    def empty(self) -> bool:
        return self.inner.empty

    def set_drain(self, until: float | None) -> None:
        self.inner.set_drain(until)

    def begin_shutdown(self, code: str = "shutdown") -> None:
        self.inner.begin_shutdown(code)
        error = SignalError(code, "the server is shutting down; join again", close_code=1012)
        for session in list(self.remote.values()):
            session.lost(error)
        self.remote.clear()
        self._by_room.clear()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.inner.close()

    async def join(
        self,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
    ) -> CallSession:
        if self.closing:
            raise shutdown_refusal()
        target: str | None = None
        bound = False
        for _ in range(MAX_HOPS + 1):
            if target is None:
                target, bound = await self._locate(key, session_id, SessionBinding(user_id, key))
            if target == self.node_id:
                result = await self._join_here(key, user_id, session_id, raw_room_id, sink)
            elif self.closing:  # begin_shutdown ran while the owner was looked up
                raise shutdown_refusal()
            else:
                result = await self._join_remote(
                    target, key, user_id, session_id, raw_room_id, sink, bound=bound
                )
            if not isinstance(result, _Moved):
                return result
            log.info("room %s: moved to node %s", key, result.owner)
            target = result.owner
        raise SignalError(
            CLUSTER_UNAVAILABLE,
            "the room's owner keeps changing; try again",
            fatal=True,
            close_code=TRY_LATER_CLOSE,
            retry_after_ms=1000,
        )

    def look_ahead(self, key: RoomKey) -> None:
        """A call's WebSocket for ``key`` was accepted (token and membership checked): look the
        room's lease up now, while its client sends ``join`` (see the module). Nothing when the
        join will not need Redis to find the owner, or a lookup of the room is fresh already."""
        if self.closing or key in self.leases.held or self._degraded():
            return
        if self._relayed_owner(key) is not None:
            return
        now = time.monotonic()
        kept = self._ahead.get(key)
        if kept is not None and now - kept[0] < LOOK_AHEAD_TTL:
            return
        for room, (started, _) in list(self._ahead.items()):
            if now - started >= LOOK_AHEAD_TTL:
                del self._ahead[room]  # its task, if still running, ends by itself
        if len(self._ahead) >= MAX_LOOK_AHEAD:
            self.look_ahead_skipped += 1
            return
        task = asyncio.get_running_loop().create_task(self.leases.lookup(key))
        self._tasks.add(task)
        task.add_done_callback(self._looked_ahead)
        self._ahead[key] = (now, task)

    def _looked_ahead(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed lookup is the join's to repeat, not a log line

    def _looked_up(self, key: RoomKey) -> asyncio.Task[RoomLease | None] | None:
        """The lookup ahead of ``key``'s lease if it is fresh (``LOOK_AHEAD_TTL``) and did not
        fail; a stale or failed one is dropped."""
        kept = self._ahead.get(key)
        if kept is None:
            return None
        started, task = kept
        failed = task.done() and (task.cancelled() or task.exception() is not None)
        if failed or time.monotonic() - started >= LOOK_AHEAD_TTL:
            del self._ahead[key]
            return None
        return task

    def _cluster_down(self) -> SignalError:
        return ClusterUnavailable("redis unreachable").refusal()

    async def _locate(
        self, key: RoomKey, session_id: SessionId, binding: SessionBinding
    ) -> tuple[str, bool]:
        """The node to ask, and whether the session's binding was made here on the way."""
        if key in self.leases.held:
            self.located["held"] += 1
            return self.node_id, False
        if self._degraded():
            raise self._cluster_down()
        owner = self._relayed_owner(key)
        if owner is not None:
            self.located["relayed"] += 1
            return owner, False
        ahead = self._looked_up(key)
        try:
            started = time.perf_counter()
            lookup = self.leases.lookup(key) if ahead is None else asyncio.shield(ahead)
            lease, bound = await asyncio.gather(lookup, self._bind_for_owner(session_id, binding))
            self.timings.observe("locate", time.perf_counter() - started)
            if lease is not None and lease.valid:
                self.located["lease" if ahead is None else "ahead"] += 1
                return lease.owner, bound
            owner = await self.registry.pick()
            self.located["pick"] += 1
            return owner, bound
        except ClusterUnavailable as exc:
            raise exc.refusal() from None
        except ClusterFull:
            raise full() from None

    async def _bind_for_owner(self, session_id: SessionId, binding: SessionBinding) -> bool:
        """Bind the session for the owner (in the round trip of the lease lookup): True if the
        binding holds; False if it is someone else's (the owner refuses) or Redis failed."""
        if self.bindings is None:
            return False
        try:
            return await self.bindings.bind_for_peer(session_id, binding) == binding
        except ClusterUnavailable:
            return False

    def _relayed_owner(self, key: RoomKey) -> str | None:
        """The node this node relays sessions of ``key`` to now, over a link that is open: the
        room's owner when they joined (it still checks its lease when the join comes). None if
        there is none, or more than one (the room is moving)."""
        sessions = self._by_room.get(key, ())
        nodes = {s.node for s in sessions if not s.closed and not s.link.closed.is_set()}
        return nodes.pop() if len(nodes) == 1 else None

    def _track(self, session: RemoteSession) -> None:
        self.remote[(session.node, session.relay)] = session
        self._by_room.setdefault(session.room, set()).add(session)

    def _untrack(self, node: str, relay: int) -> RemoteSession | None:
        session = self.remote.pop((node, relay), None)
        if session is not None:
            sessions = self._by_room.get(session.room)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self._by_room[session.room]
        return session

    async def _join_here(
        self,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
    ) -> CallSession | _Moved:
        async with self._locks.hold(key):
            claimed = False
            if key not in self.leases.held:
                if self.inner.closing:
                    raise shutdown_refusal()
                if self._degraded():
                    raise self._cluster_down()
                try:
                    result = await self.leases.claim_lease(key)
                except ClusterUnavailable as exc:
                    raise exc.refusal() from None
                if not isinstance(result, Claimed):
                    return _Moved(result.owner)
                claimed = True
            try:
                return await self.inner.join(key, user_id, session_id, raw_room_id, sink)
            except BaseException as exc:
                if claimed and key not in self.owned.live:  # refused before the room existed
                    with contextlib.suppress(Exception):
                        await self.leases.release(key)
                if isinstance(exc, ClusterUnavailable):  # a session binding needed Redis
                    raise exc.refusal() from None
                raise

    async def _join_remote(
        self,
        node: str,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
        *,
        bound: bool = False,
    ) -> CallSession | _Moved:
        """Ask ``node`` to serve the join; ``bound``: the session's binding was made here."""
        assert self.bus is not None, "ClusteredRooms.attach(bus) first"
        link = self.bus.link(node)
        relay = next(self._relay_ids)
        session = RemoteSession(self, node, link, relay, session_id, sink, key)
        self._track(session)
        params: dict[str, Any] = {
            "room": str(key),
            "user": user_id,
            "session": session_id,
            "rawRoomId": raw_room_id,
        }
        if bound:
            params["bound"] = True
        started = time.perf_counter()
        try:
            value = await link.request("join", params, relay=relay, wait=JOIN_WAIT)
        except SignalError:  # refused by the owner: it made no session
            self._untrack(node, relay)
            raise
        except LinkClosed:  # no answer in time, or the link broke
            self._untrack(node, relay)
            self._abandon(link, relay)
            raise node_lost() from None
        except BaseException:  # cancelled (the edge closes), or the answer did not decode
            self._untrack(node, relay)
            self._abandon(link, relay)
            raise
        if isinstance(value, dict) and "moved" in value:
            self._untrack(node, relay)
            return _Moved(str(value["moved"]))
        if self.closing:  # begin_shutdown ran while the owner served the join
            self._untrack(node, relay)
            self._abandon(link, relay)
            raise shutdown_refusal()
        self.relayed_joins += 1
        self._time_request(node, session_id, time.perf_counter() - started, value)
        return session

    @staticmethod
    def _abandon(link: Link, relay: int) -> None:
        """The edge gave up a join it relayed (no answer in time, or cancelled): tell the owner,
        which may still be serving it, that its client is gone (``detach``: the session waits
        ``resume_grace`` for the client there, as after any dropped socket, then ends)."""
        if not link.closed.is_set():
            with contextlib.suppress(LinkClosed):
                link.notify("detach", {}, relay=relay)

    def _time_request(self, node: str, session_id: SessionId, took: float, value: Any) -> None:
        """Count a relayed join's request and, when the owner said how long it took
        (``servedUs``), the bus hops: the rest."""
        self.timings.observe("request", took)
        served = value.get("servedUs") if isinstance(value, dict) else None
        if isinstance(served, int) and 0 <= served <= took * 1e6:
            self.timings.observe("bus", took - served / 1e6)
        log.debug(
            "session %s: join relayed to node %s in %.1f ms (owner %s ms)",
            session_id,
            node,
            took * 1e3,
            f"{served / 1e3:.1f}" if isinstance(served, int) else "?",
        )

    def forget(self, session: RemoteSession) -> bool:
        """Stop relaying ``session`` (it left or its socket dropped); False if already gone."""
        return self._untrack(session.node, session.relay) is not None

    # ------------------------------------------------------------------ the bus's side
    async def on_request(self, peer: str, frame: Frame) -> Any:
        """A request of edge node ``peer`` about one of the sessions it relays here."""
        params = frame.params
        key = (peer, frame.relay)
        if frame.method == "join":
            return await self._serve_join(peer, frame.relay, params)
        served = self.served.get(key)
        if served is None:
            raise SignalError("not-joined", "the session has ended; join again")
        session, _sink = served
        if frame.method == "offer":
            await session.offer(str(params["sdp"]))
        elif frame.method == "answer":
            await session.answer(str(params["sdp"]))
        elif frame.method == "ice":
            await session.ice(IcePayload.parse(params.get("ice"), "ice"))
        elif frame.method == "track-settings":
            await session.track_settings(parse_track_settings(params))
        elif frame.method == "leave":
            self.served.pop(key, None)
            await session.leave()
        else:
            raise SignalError("internal", f"unknown node request {frame.method!r}")
        return None

    async def _serve_join(self, peer: str, relay: int, params: dict[str, Any]) -> Any:
        """The owner's side of a relayed join: ``{"servedUs": n}`` (how long it took here, for
        the edge's ``bus`` leg), or ``{"moved": node}``."""
        assert self.bus is not None
        started = time.perf_counter()
        key = RoomKey.parse(str(params["room"]))
        user_id, session_id = UserId(str(params["user"])), SessionId(str(params["session"]))
        if params.get("bound") is True and self.bindings is not None:
            self.bindings.bound_by_peer(session_id, SessionBinding(user_id, key))
        sink = RelaySink(self.bus.link(peer), relay)
        self._serving[(peer, relay)] = False
        try:
            result = await self._join_here(key, user_id, session_id, params["rawRoomId"], sink)
        finally:
            abandoned = self._serving.pop((peer, relay), False)
        if isinstance(result, _Moved):
            return {"moved": result.owner}
        if abandoned:  # the edge gave the join up meanwhile: its client is gone
            result.detach(sink)
            return {"servedUs": round((time.perf_counter() - started) * 1e6)}
        self.served[(peer, relay)] = (result, sink)
        self.served_joins += 1
        took = time.perf_counter() - started
        self.timings.observe("serve", took)
        return {"servedUs": round(took * 1e6)}

    def on_note(self, peer: str, frame: Frame) -> None:
        method = frame.method
        if method == "detach":  # edge → owner: the client's socket dropped, or the edge gave up
            served = self.served.pop((peer, frame.relay), None)
            if served is not None:
                session, sink = served
                session.detach(sink)
            elif (peer, frame.relay) in self._serving:
                self._serving[(peer, frame.relay)] = True
            return
        remote = self.remote.get((peer, frame.relay))  # owner → edge: send, close, ended
        if remote is not None:
            remote.on_note(method, frame.params)
            if remote.closed and method == "close":
                self._untrack(peer, frame.relay)

    def on_link_closed(self, peer: str, link: Link) -> None:
        """The link to ``peer`` broke: its relayed sessions are lost, its served ones detach."""
        lost = [s for (node, _), s in self.remote.items() if node == peer and s.link is link]
        for session in lost:
            self._untrack(peer, session.relay)
            session.lost(node_lost())
        served = [(k, v) for k, v in self.served.items() if k[0] == peer and v[1].link is link]
        for k, (call, sink) in served:
            self.served.pop(k, None)
            call.detach(sink)
        if lost or served:
            log.warning(
                "link to node %s closed (%s): %d relayed sessions lost, %d served detached",
                peer,
                link.close_reason,
                len(lost),
                len(served),
            )

    # ------------------------------------------------------------------ leases lost
    def rooms_lost(self, rooms: Iterable[RoomKey]) -> None:
        """Renewal found these rooms owned elsewhere (§4 split brain): their sessions here are
        told ``room-moved`` and re-join the winner."""
        for key in rooms:
            log.warning("room %s: lease lost to another node; moving its sessions", key)
            self.owned.live.discard(key)
            if self._close_room is not None:
                task = asyncio.get_running_loop().create_task(self._close_room(key, room_moved()))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)


def build_clustered(
    cluster: RedisCluster,
    inner: CallRooms,
    owned: OwnedRooms,
    *,
    timing: float = 1.0,
    close_room: Callable[[RoomKey, SignalError], Coroutine[Any, Any, None]] | None = None,
) -> tuple[ClusteredRooms, RedisSignalBus]:
    """The node's ``ClusteredRooms`` over ``inner`` and its ``RedisSignalBus`` (unstarted): the
    bus serves the owner side, lost leases move their rooms' sessions (``room-moved``)."""
    from ..cluster.bus import RedisSignalBus
    from ..cluster.health import DEGRADED

    rooms = ClusteredRooms(
        inner,
        cluster.rooms,
        owned,
        cluster.registry,
        node_id=cluster.node_id,
        close_room=close_room,
        degraded=lambda: cluster.health.status == DEGRADED,
        bindings=cluster.sessions,
    )

    # a peer's key missing right after Redis lost its data is no dead peer: every node
    # re-registers at its next heartbeat, and rooms are re-asserted while claims are held off
    cluster.registry.unsure = lambda: cluster.rooms.holding
    bus = RedisSignalBus(
        cluster.client,
        cluster.node_id,
        cluster.registry.boot_id,
        cluster.health,
        keys=cluster.keys,
        on_request=rooms.on_request,
        on_note=rooms.on_note,
        on_link_closed=rooms.on_link_closed,
        peers=cluster.registry,
        peer_settle=cluster.registry.ttl,
        timing=timing,
    )
    rooms.attach(bus)
    cluster.on_rooms_lost = rooms.rooms_lost
    leases = cluster.rooms
    cluster.sessions.serves_offline = lambda room: room in leases.held
    return rooms, bus
