"""``ClusteredRooms`` (relay/nodes.py): joins placed on the room's owner node, relayed from the
edge over real ``Link``s (socketpairs between in-process "nodes"), the claim race answered with
``moved``, a broken link turned into ``node-lost`` at the edge and a detach at the owner, Redis
trouble into ``cluster-unavailable``; a room already relayed to its owner found without a lease
lookup, the edge binding the session for the owner in the lookup's round trip, the lease looked up
when the WebSocket was accepted (used by the join, bounded and the skipped ones on ``/metrics``,
kept to its room, a stale one followed), and each relayed join's legs timed. The lease store is
an in-memory model of the Lua claim (the real one is tested against redis-server in
tests/integration/cluster)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from zvonok.cluster.base import (
    Claimed,
    ClaimResult,
    ClusterFull,
    ClusterUnavailable,
    NodeInfo,
    Owned,
    RoomLease,
    SessionBinding,
)
from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.node import RedisCluster
from zvonok.cluster_node import ClusterCollector
from zvonok.errors import SignalError
from zvonok.ids import RoomKey, SessionId, UserId
from zvonok.relay import nodes
from zvonok.relay.frames import Frame
from zvonok.relay.link import Link
from zvonok.relay.nodes import ClusteredRooms, OwnedRooms
from zvonok.rooms.sink import SignalSink
from zvonok.signaling.messages import IcePayload, Joined, ServerMessage, TrackSetting

ROOM = RoomKey.parse("group:7")


# ---------------------------------------------------------------- an in-memory lease store
@dataclass
class Store:
    records: dict[RoomKey, tuple[str, int]] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)
    epoch: int = 0
    down: bool = False
    claims: list[str] = field(default_factory=list)
    bindings: dict[SessionId, SessionBinding] = field(default_factory=dict)


class Leases:
    def __init__(self, store: Store, node: str) -> None:
        self.store = store
        self.node = node
        self._held: dict[RoomKey, int] = {}
        self.lookups = 0

    @property
    def held(self) -> Mapping[RoomKey, int]:
        return self._held

    def _check(self) -> None:
        if self.store.down:
            raise ClusterUnavailable("redis unreachable", retry_after=2.0)

    async def claim_lease(self, room: RoomKey, seen_epoch: int = 0) -> ClaimResult:
        self._check()
        await asyncio.sleep(0.001)  # a round trip: lets racing joins interleave
        self.store.claims.append(self.node)
        record = self.store.records.get(room)
        if record is not None and record[0] != self.node and record[0] in self.store.alive:
            self._held.pop(room, None)
            return Owned(record[0], record[1])
        if record is not None and record[0] == self.node:
            self._held[room] = record[1]
            return Claimed(record[1])
        self.store.epoch += 1
        self.store.records[room] = (self.node, self.store.epoch)
        self._held[room] = self.store.epoch
        return Claimed(self.store.epoch)

    async def lookup(self, room: RoomKey) -> RoomLease | None:
        self._check()
        self.lookups += 1
        record = self.store.records.get(room)
        if record is None:
            return None
        return RoomLease(record[0], "boot", record[1], valid=record[0] in self.store.alive)

    async def release(self, room: RoomKey) -> None:
        epoch = self._held.pop(room, None)
        if self.store.records.get(room) == (self.node, epoch):
            del self.store.records[room]


class Bindings:
    """The node's session directory, as ``ClusteredRooms`` uses it: binds for the owner (on the
    edge) and notes of such binds (on the owner)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.for_peer = 0
        self.peer_bound: list[tuple[SessionId, SessionBinding]] = []

    async def bind_for_peer(self, session_id: SessionId, binding: SessionBinding) -> SessionBinding:
        if self.store.down:
            raise ClusterUnavailable("redis unreachable", retry_after=2.0)
        self.for_peer += 1
        return self.store.bindings.setdefault(session_id, binding)

    def bound_by_peer(self, session_id: SessionId, binding: SessionBinding) -> None:
        self.peer_bound.append((session_id, binding))


class Registry:
    def __init__(self, node: str, picks: list[str]) -> None:
        self._node = node
        self.picks = picks

    @property
    def node_id(self) -> str:
        return self._node

    async def nodes(self) -> Sequence[NodeInfo]:
        return [NodeInfo(self._node, "boot")]

    def set_state(self, state: str) -> None:
        pass

    async def pick(self) -> str:
        if not self.picks:
            raise ClusterFull()
        return self.picks[0]


# ---------------------------------------------------------------- the node's own rooms
class Sink:
    def __init__(self) -> None:
        self.sent: list[ServerMessage] = []
        self.closed: tuple[int, str] | None = None

    def send(self, message: ServerMessage) -> None:
        self.sent.append(message)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class Session:
    def __init__(self, inner: Inner, session_id: SessionId, sink: SignalSink) -> None:
        self.inner = inner
        self._id = session_id
        self.sink = sink
        self.offers: list[str] = []
        self.ices: list[IcePayload] = []
        self.settings: list[tuple[TrackSetting, ...]] = []
        self.detached = 0
        self.left = False

    @property
    def session_id(self) -> SessionId:
        return self._id

    @property
    def closed(self) -> bool:
        return self.left

    async def offer(self, sdp: str) -> None:
        self.offers.append(sdp)

    async def answer(self, sdp: str) -> None:
        raise SignalError("bad-message", "no server offer is outstanding")

    async def ice(self, ice: IcePayload) -> None:
        self.ices.append(ice)

    async def track_settings(self, tracks: tuple[TrackSetting, ...]) -> None:
        self.settings.append(tracks)

    async def leave(self) -> None:
        self.left = True
        self.sink.close(1000, "left")

    def detach(self, sink: SignalSink) -> None:
        self.detached += 1


class Inner:
    """The node's own rooms: records joins, tells each session ``joined``."""

    def __init__(self, node: str, owned: OwnedRooms) -> None:
        self.node = node
        self.owned = owned
        self.sessions: dict[SessionId, Session] = {}
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def empty(self) -> bool:
        return not self.sessions

    def set_drain(self, until: float | None) -> None:
        pass

    def begin_shutdown(self, code: str = "shutdown") -> None:
        self._closing = True

    async def close(self) -> None:
        self._closing = True

    async def join(
        self,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
    ) -> Session:
        if user_id == "mallory":
            raise SignalError("forbidden", "not a member")
        if user_id == "late":
            raise SignalError(
                "room-full", "try later", fatal=True, close_code=1013, retry_after_ms=750
            )
        await self.owned.claim(key)
        session = Session(self, session_id, sink)
        self.sessions[session_id] = session
        sink.send(Joined(session_id, user_id, str(key), (), (), False))
        return session


# ---------------------------------------------------------------- nodes over real links
@dataclass
class Node:
    name: str
    rooms: ClusteredRooms
    inner: Inner
    leases: Leases
    bindings: Bindings
    links: dict[str, Link] = field(default_factory=dict)

    def link(self, peer: str) -> Link:
        return self.links[peer]


class Cluster:
    def __init__(self) -> None:
        self.store = Store()
        self.nodes: dict[str, Node] = {}
        self.all_links: list[Link] = []

    def add(self, name: str, picks: list[str] | None = None) -> Node:
        leases = Leases(self.store, name)
        owned = OwnedRooms(leases, name)
        inner = Inner(name, owned)
        bindings = Bindings(self.store)
        rooms = ClusteredRooms(
            inner, leases, owned, Registry(name, [name] if picks is None else picks), node_id=name,
            bindings=bindings,
        )  # fmt: skip
        node = Node(name, rooms, inner, leases, bindings)
        rooms.attach(node)
        self.nodes[name] = node
        self.store.alive.add(name)
        return node

    async def connect(self) -> None:
        names = sorted(self.nodes)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                for me, peer, end in ((a, b, ends[0]), (b, a, ends[1])):
                    link = await self._link(self.nodes[me], peer, end)
                    self.nodes[me].links[peer] = link

    async def _link(self, node: Node, peer: str, end: socket.socket) -> Link:
        reader, writer = await asyncio.open_unix_connection(sock=end)

        async def on_request(frame: Frame) -> Any:
            return await node.rooms.on_request(peer, frame)

        def on_close(link: Link) -> None:
            node.rooms.on_link_closed(peer, link)

        link = Link(
            reader,
            writer,
            name=f"{node.name}->{peer}",
            on_request=on_request,
            on_note=lambda frame: node.rooms.on_note(peer, frame),
            on_close=on_close,
            request_timeout=2.0,
        )
        link.start()
        self.all_links.append(link)
        return link


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    yield c
    for link in c.all_links:
        await link.close()


async def until(predicate: Any, within: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def join(node: Node, user: str, session: str, sink: Sink) -> Any:
    return await node.rooms.join(ROOM, UserId(user), SessionId(session), 7, sink)


# ---------------------------------------------------------------- tests
async def test_a_new_room_is_claimed_where_pick_says_and_the_edge_relays_to_it(
    cluster: Cluster,
) -> None:
    a = cluster.add("a", picks=["b"])
    b = cluster.add("b")
    await cluster.connect()
    sink = Sink()
    session = await join(a, "alice", "s1", sink)
    assert cluster.store.records[ROOM][0] == "b"
    assert cluster.store.claims == ["b"]  # the owner claims; its rooms find the lease held
    assert not a.inner.sessions and "s1" in b.inner.sessions
    await until(lambda: len(sink.sent) == 1)
    assert isinstance(sink.sent[0], Joined) and sink.sent[0].user_id == "alice"
    # the edge relays the session's messages; the owner's answers and refusals come back
    await session.offer("v=0 offer")
    await session.ice(IcePayload.parse({"candidate": "", "sdpMid": "0"}, "ice"))
    assert b.inner.sessions[SessionId("s1")].offers == ["v=0 offer"]
    wishes = (TrackSetting("t1", max_width=320), TrackSetting("t2", paused=True))
    await session.track_settings(wishes)
    assert b.inner.sessions[SessionId("s1")].settings == [wishes]
    with pytest.raises(SignalError) as refused:
        await session.answer("v=0 answer")
    assert refused.value.code == "bad-message"
    # a join through the owner itself stays local
    await join(b, "bob", "s2", Sink())
    assert set(b.inner.sessions) == {"s1", "s2"}
    assert b.rooms.served_joins == 1 and a.rooms.relayed_joins == 1
    await session.leave()
    await until(lambda: sink.closed == (1000, "left"))
    assert b.inner.sessions[SessionId("s1")].left and not a.rooms.remote and not b.rooms.served


async def test_a_refused_join_travels_back_and_leaves_no_lease(cluster: Cluster) -> None:
    a = cluster.add("a", picks=["b"])
    cluster.add("b")
    await cluster.connect()
    with pytest.raises(SignalError) as refused:
        await join(a, "mallory", "s1", Sink())
    assert refused.value.code == "forbidden"
    assert ROOM not in cluster.store.records and not a.rooms.remote
    with pytest.raises(SignalError) as later:
        await join(a, "late", "s2", Sink())
    assert (later.value.code, later.value.fatal, later.value.close_code) == (
        "room-full",
        True,
        1013,
    )
    assert later.value.retry_after_ms == 750


async def test_racing_edges_end_in_one_owner(cluster: Cluster) -> None:
    """Each edge's pick names a different node: one claim wins, the others answer ``moved``."""
    names = ["a", "b", "c"]
    for name in names:
        cluster.add(name, picks=[name])
    await cluster.connect()
    sinks = [Sink() for _ in range(12)]
    await asyncio.gather(
        *(join(cluster.nodes[names[i % 3]], f"u{i}", f"s{i}", sinks[i]) for i in range(len(sinks)))
    )
    owner = cluster.store.records[ROOM][0]
    assert len(cluster.nodes[owner].inner.sessions) == 12
    assert all(not cluster.nodes[n].inner.sessions for n in names if n != owner)
    await until(lambda: all(len(s.sent) == 1 for s in sinks))


async def test_a_broken_link_is_node_lost_at_the_edge_and_a_detach_at_the_owner(
    cluster: Cluster,
) -> None:
    a = cluster.add("a", picks=["b"])
    b = cluster.add("b")
    await cluster.connect()
    sink = Sink()
    session = await join(a, "alice", "s1", sink)
    await b.links["a"].close()  # the owner's side goes away: both ends see the link close
    await until(lambda: sink.closed is not None)
    assert sink.closed == (1012, "node-lost")
    assert sink.sent[-1].to_json()["code"] == "node-lost"
    assert session.closed and not a.rooms.remote
    assert b.inner.sessions[SessionId("s1")].detached == 1 and not b.rooms.served


async def test_a_dropped_socket_detaches_the_session_on_the_owner(cluster: Cluster) -> None:
    a = cluster.add("a", picks=["b"])
    b = cluster.add("b")
    await cluster.connect()
    sink = Sink()
    session = await join(a, "alice", "s1", sink)
    session.detach(sink)
    await until(lambda: b.inner.sessions[SessionId("s1")].detached == 1)
    assert not a.rooms.remote and not b.rooms.served


async def test_redis_away_refuses_new_rooms_but_serves_rooms_held_here(cluster: Cluster) -> None:
    a = cluster.add("a")
    await cluster.connect()
    await join(a, "alice", "s1", Sink())
    cluster.store.down = True
    await join(a, "bob", "s2", Sink())  # the room is held here: no Redis needed
    other = RoomKey.parse("group:8")
    with pytest.raises(SignalError) as refused:
        await a.rooms.join(other, UserId("carol"), SessionId("s3"), 8, Sink())
    assert refused.value.code == "cluster-unavailable"
    assert refused.value.close_code == 1013 and refused.value.retry_after_ms == 2000


async def test_no_node_with_room_is_cluster_full(cluster: Cluster) -> None:
    a = cluster.add("a", picks=[])
    with pytest.raises(SignalError) as refused:
        await join(a, "alice", "s1", Sink())
    assert refused.value.code == "cluster-full" and refused.value.fatal


async def test_a_room_relayed_already_is_found_without_redis_and_each_leg_is_timed(
    cluster: Cluster,
) -> None:
    a = cluster.add("a", picks=["b"])
    b = cluster.add("b")
    await cluster.connect()
    await join(a, "alice", "s1", Sink())
    await join(a, "bob", "s2", Sink())  # s1 is relayed to b: b is asked without a lookup
    assert a.leases.lookups == 1 and set(b.inner.sessions) == {"s1", "s2"}
    assert a.rooms.located == {"held": 0, "relayed": 1, "ahead": 0, "lease": 0, "pick": 1}
    await join(b, "carol", "s3", Sink())
    assert b.rooms.located["held"] == 1
    assert a.rooms.timings.count("locate") == 1  # only the join that asked Redis
    assert a.rooms.timings.count("request") == a.rooms.timings.count("bus") == 2
    assert b.rooms.timings.count("serve") == 2 and b.rooms.timings.count("request") == 0
    # once no session of the room is relayed any more, the lease is asked again
    for session in list(a.rooms.remote.values()):
        await session.leave()
    await join(a, "dave", "s4", Sink())
    assert a.leases.lookups == 2 and a.rooms.located["lease"] == 1


async def test_a_relayed_room_that_moved_meanwhile_is_followed(cluster: Cluster) -> None:
    """The node a session of the room is relayed to lost the room (split brain, §4): it answers
    ``moved`` and the join goes on to the winner."""
    a = cluster.add("a", picks=["b"])
    b = cluster.add("b")
    c = cluster.add("c")
    await cluster.connect()
    await join(a, "alice", "s1", Sink())
    cluster.store.epoch += 1
    cluster.store.records[ROOM] = ("c", cluster.store.epoch)
    b.leases._held.pop(ROOM)  # b's renewal found the room lost
    await c.leases.claim_lease(ROOM)
    await join(a, "bob", "s2", Sink())
    assert a.rooms.located["relayed"] == 1 and a.leases.lookups == 1
    assert "s2" in c.inner.sessions and "s2" not in b.inner.sessions


async def test_the_edge_binds_for_the_owner_in_the_lookups_round_trip(cluster: Cluster) -> None:
    a = cluster.add("a", picks=["b"])
    b = cluster.add("b")
    await cluster.connect()
    await join(a, "alice", "s1", Sink())
    alice = SessionBinding(UserId("alice"), ROOM)
    assert a.bindings.for_peer == 1 and b.bindings.peer_bound == [(SessionId("s1"), alice)]
    await join(a, "bob", "s2", Sink())  # no lookup (the room is relayed already): b binds
    assert a.bindings.for_peer == 1 and len(b.bindings.peer_bound) == 1
    # an id bound to someone else is not vouched for: the owner binds, and refuses
    other = RoomKey.parse("group:8")
    cluster.store.bindings[SessionId("s3")] = SessionBinding(UserId("mallory"), other)
    await a.rooms.join(other, UserId("carol"), SessionId("s3"), 8, Sink())
    assert a.bindings.for_peer == 2 and len(b.bindings.peer_bound) == 1


async def test_a_lease_looked_up_ahead_serves_the_join(cluster: Cluster) -> None:
    """``look_ahead`` (the WebSocket was accepted) looks the lease up; the join that follows
    waits for that lookup instead of asking again, and still binds for the owner."""
    a, b = cluster.add("a"), cluster.add("b")
    await cluster.connect()
    await join(b, "alice", "s1", Sink())  # b owns the room
    a.rooms.look_ahead(ROOM)
    await asyncio.sleep(0)
    assert a.leases.lookups == 1
    await join(a, "bob", "s2", Sink())
    assert a.leases.lookups == 1 and "s2" in b.inner.sessions
    assert a.rooms.located["ahead"] == 1 and a.rooms.located["lease"] == 0
    assert a.bindings.for_peer == 1 and a.rooms.timings.count("locate") == 1
    # nothing to look up for a room held here, or one relayed to its owner already
    held_here = b.leases.lookups
    b.rooms.look_ahead(ROOM)
    a.rooms.look_ahead(ROOM)
    await asyncio.sleep(0)
    assert b.leases.lookups == held_here and a.leases.lookups == 1


async def test_a_lookup_ahead_is_kept_to_its_room_and_bounded(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodes, "MAX_LOOK_AHEAD", 2)
    a, b = cluster.add("a"), cluster.add("b")
    await cluster.connect()
    await join(b, "alice", "s1", Sink())
    other = RoomKey.parse("group:8")
    a.rooms.look_ahead(other)
    a.rooms.look_ahead(other)  # one lookup per room while it is fresh
    await asyncio.sleep(0)
    assert a.leases.lookups == 1
    await join(a, "bob", "s2", Sink())  # another room's lookup is not this join's
    assert a.leases.lookups == 2 and a.rooms.located["lease"] == 1
    assert a.rooms.located["ahead"] == 0
    a.rooms.look_ahead(RoomKey.parse("group:9"))
    a.rooms.look_ahead(RoomKey.parse("group:10"))  # two rooms are kept already
    await asyncio.sleep(0)
    assert a.leases.lookups == 3 and a.rooms.look_ahead_skipped == 1
    assert await scraped(a.rooms, "zvonok_cluster_relay_look_ahead_skipped_total") == 1


async def scraped(relay: ClusteredRooms, name: str) -> float | None:
    """``name``'s sample on the ``/metrics`` of a node whose relay is ``relay`` (the cluster's
    own client never connects: the collector reads counters only)."""
    cluster = RedisCluster(connect(RedisTarget(url="redis://127.0.0.1:9/0")), node_id="a")
    try:
        registry = CollectorRegistry()
        registry.register(ClusterCollector(cluster, relay=relay))
        return registry.get_sample_value(name)
    finally:
        await cluster.client.aclose()


async def test_a_stale_lookup_ahead_is_dropped_or_followed(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = cluster.add("a"), cluster.add("b"), cluster.add("c")
    await cluster.connect()
    await join(b, "alice", "s1", Sink())
    a.rooms.look_ahead(ROOM)
    await asyncio.sleep(0)
    # the room moved to c after the lookup (b lost it): b answers moved, the join goes on
    cluster.store.epoch += 1
    cluster.store.records[ROOM] = ("c", cluster.store.epoch)
    b.leases._held.pop(ROOM)
    await c.leases.claim_lease(ROOM)
    await join(a, "bob", "s2", Sink())
    assert a.rooms.located["ahead"] == 1 and "s2" in c.inner.sessions
    # one older than LOOK_AHEAD_TTL is not used: the join looks the lease up itself
    for session in list(a.rooms.remote.values()):
        await session.leave()
    monkeypatch.setattr(nodes, "LOOK_AHEAD_TTL", 0.0)
    a.rooms.look_ahead(ROOM)
    await asyncio.sleep(0)
    lookups = a.leases.lookups
    await join(a, "carol", "s3", Sink())
    assert a.leases.lookups == lookups + 1 and a.rooms.located["lease"] == 1
