"""``ClusteredRooms`` (relay/nodes.py): a relayed join the edge gives up (no answer in time, or
its task cancelled) leaves no session on the owner attached to a relay nobody reads, a join
relayed while the edge shuts down is refused with ``shutdown``, and a cancelled claim leaves no
room marked live. Nodes over real ``Link``s, as in ``tests/unit/relay/test_nodes.py`` (whose
harness this reuses). Each test failed before the fix: the owner kept the session attached
(never detached, so it never ended), the join returned a session after ``begin_shutdown``.
"""

from __future__ import annotations

import asyncio

import pytest

from zvonok.cluster.base import ClaimResult
from zvonok.errors import SignalError
from zvonok.ids import RoomKey, SessionId, UserId
from zvonok.relay.nodes import OwnedRooms
from zvonok.rooms.sink import SignalSink

from ..relay.test_nodes import ROOM, Cluster, Inner, Leases, Session, Sink, join, until
from ..relay.test_nodes import cluster as cluster  # noqa: F401  (the fixture)


class GatedInner(Inner):
    """The owner's rooms, holding each join at ``gate`` (a slow join there)."""

    def __init__(self, node: str, owned: OwnedRooms) -> None:
        super().__init__(node, owned)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def join(
        self,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
    ) -> Session:
        self.waiting.set()
        await self.gate.wait()
        return await super().join(key, user_id, session_id, raw_room_id, sink)


def gate_owner(cluster: Cluster, name: str) -> GatedInner:
    node = cluster.nodes[name]
    inner = GatedInner(name, node.rooms.owned)
    node.inner = inner
    node.rooms.inner = inner
    return inner


async def test_a_relayed_join_that_timed_out_is_detached_on_the_owner(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("zvonok.relay.nodes.JOIN_WAIT", 0.1)
    a = cluster.add("a", picks=["b"])
    b = cluster.add("b")
    owner = gate_owner(cluster, "b")
    await cluster.connect()
    sink = Sink()
    with pytest.raises(SignalError) as refused:
        await join(a, "alice", "s1", sink)
    assert refused.value.code == "node-lost" and not a.rooms.remote
    owner.gate.set()  # the owner's join completes after the edge gave up
    await until(lambda: "s1" in owner.sessions and owner.sessions[SessionId("s1")].detached)
    assert not b.rooms.served  # nothing relays to a relay id the edge forgot


async def test_a_relayed_join_cancelled_at_the_edge_is_detached_on_the_owner(
    cluster: Cluster,
) -> None:
    a = cluster.add("a", picks=["b"])
    b = cluster.add("b")
    owner = gate_owner(cluster, "b")
    await cluster.connect()
    joining = asyncio.create_task(join(a, "alice", "s1", Sink()))
    await until(owner.waiting.is_set)
    joining.cancel()
    await asyncio.gather(joining, return_exceptions=True)
    assert joining.cancelled() and not a.rooms.remote
    await asyncio.sleep(0.05)  # the edge's detach reaches the owner before its join ends
    owner.gate.set()
    await until(lambda: "s1" in owner.sessions and owner.sessions[SessionId("s1")].detached)
    assert not b.rooms.served


async def test_a_join_relayed_while_the_edge_shuts_down_is_refused(cluster: Cluster) -> None:
    a = cluster.add("a", picks=["b"])
    b = cluster.add("b")
    owner = gate_owner(cluster, "b")
    await cluster.connect()
    joining = asyncio.create_task(join(a, "alice", "s1", Sink()))
    await until(owner.waiting.is_set)
    a.rooms.begin_shutdown()
    owner.gate.set()
    error = (await asyncio.gather(joining, return_exceptions=True))[0]
    assert isinstance(error, SignalError) and error.code == "shutdown"
    assert error.close_code == 1012 and not a.rooms.remote
    await until(lambda: "s1" in owner.sessions and owner.sessions[SessionId("s1")].detached)
    assert not b.rooms.served
    # a join that finds the edge closing before it asks anyone is refused at once
    with pytest.raises(SignalError) as refused:
        await join(a, "bob", "s2", Sink())
    assert refused.value.code == "shutdown" and "s2" not in owner.sessions


class HangingLeases(Leases):
    """A claim that never answers (a Redis call cut short by a cancellation)."""

    async def claim_lease(self, room: RoomKey, seen_epoch: int = 0) -> ClaimResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_cancelled_claim_leaves_no_room_marked_live(cluster: Cluster) -> None:
    owned = OwnedRooms(HangingLeases(cluster.store, "a"), "a")
    claiming = asyncio.create_task(owned.claim(ROOM))
    await asyncio.sleep(0.01)
    claiming.cancel()
    await asyncio.gather(claiming, return_exceptions=True)
    assert owned.live == set()
