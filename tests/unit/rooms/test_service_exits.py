"""RoomService: every way a join can end before it made a session leaves nothing behind, and a
join under way while the service shuts down is refused or ended with the rest.

The directories are the single-node ones with a loop turn per call and gates (events) that hold
a call until the test opens them (``test_service_locking``); a ``bind`` gated *after* it landed
stands for a Redis reply that never came back to a cancelled join. Each test failed before the
fix: a cancelled join kept its binding (in the local directory for good; with Redis renewed by
the node forever), a join refused by the cluster (``cluster-unavailable`` from the claim) kept
its binding, and a join that passed the ``closing`` check before ``close`` ran entered a room
after ``close`` had ended every session.
"""

from __future__ import annotations

import asyncio
from typing import Any

from zvonok.cluster.base import SessionBinding
from zvonok.errors import SignalError
from zvonok.ids import RoomKey, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.service import RoomService

from .test_service_locking import OTHER, ROOM, SlowRooms, SlowSessions, join, no_locks_left, until

ALICE_A = SessionBinding(UserId("alice"), ROOM)


class LateReplySessions(SlowSessions):
    """``bind`` makes the binding, then waits at ``after_gates`` (the reply still on its way)."""

    def __init__(self) -> None:
        super().__init__()
        self.after_gates: dict[SessionId, asyncio.Event] = {}
        self.bound = asyncio.Event()

    async def bind(self, session_id: SessionId, binding: SessionBinding) -> SessionBinding:
        held = await super().bind(session_id, binding)
        gate = self.after_gates.get(session_id)
        if gate is not None:
            self.bound.set()
            await gate.wait()
        return held


class RefusingRooms(SlowRooms):
    """A claim the cluster refuses (Redis unreachable), as ``relay.nodes.OwnedRooms`` does."""

    async def claim(self, room: RoomKey) -> str:
        await asyncio.sleep(0)
        raise SignalError("cluster-unavailable", "redis unreachable", fatal=True, close_code=1013)


def make(
    worker: MediaWorker,
    sessions: SlowSessions | None = None,
    leases: SlowRooms | None = None,
    **kwargs: Any,
) -> tuple[RoomService, SlowSessions, SlowRooms]:
    sessions = sessions if sessions is not None else SlowSessions()
    leases = leases if leases is not None else SlowRooms()
    service = RoomService(worker=worker, sessions=sessions, rooms=leases, ice_servers=[], **kwargs)
    return service, sessions, leases


async def settle(service: RoomService) -> None:
    """Let the service's own tasks (releases of cancelled joins) run to their end."""
    for _ in range(20):
        await asyncio.sleep(0)
    assert no_locks_left(service)


async def cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


# ---------------------------------------------------------------- cancelled joins
async def test_a_join_cancelled_after_its_bind_releases_the_binding(worker: MediaWorker) -> None:
    rooms, sessions, leases = make(worker)
    leases.claim_gates[ROOM] = asyncio.Event()  # the room's claim never answers
    joining = asyncio.create_task(join(rooms, "alice", "a"))
    await until(leases.claiming)
    assert await sessions.lookup(SessionId("a")) == ALICE_A
    await cancelled(joining)
    await settle(rooms)
    assert await sessions.lookup(SessionId("a")) is None and len(sessions) == 0
    assert rooms.rooms == {} and rooms.sessions == {}
    # the id is the user's again, for another room too; nobody else's meanwhile (it lingers)
    results = await asyncio.gather(
        join(rooms, "mallory", "a", OTHER), join(rooms, "alice", "a", OTHER), return_exceptions=True
    )
    assert isinstance(results[0], SignalError) and results[0].code == "session-taken"
    assert isinstance(results[1], tuple) and results[1][0].room.key == OTHER
    assert no_locks_left(rooms)


async def test_a_join_cancelled_while_its_bind_reply_was_on_the_way_releases_it(
    worker: MediaWorker,
) -> None:
    sessions = LateReplySessions()
    rooms, _, _ = make(worker, sessions)
    sessions.after_gates[SessionId("a")] = asyncio.Event()
    joining = asyncio.create_task(join(rooms, "alice", "a"))
    await until(sessions.bound)
    await cancelled(joining)
    await settle(rooms)
    assert await sessions.lookup(SessionId("a")) is None and len(sessions) == 0


async def test_a_cancelled_join_leaves_the_binding_of_a_newer_join_of_its_id(
    worker: MediaWorker,
) -> None:
    rooms, sessions, leases = make(worker)
    gate = leases.claim_gates[ROOM] = asyncio.Event()
    first = asyncio.create_task(join(rooms, "alice", "a"))
    await until(leases.claiming)
    second = asyncio.create_task(join(rooms, "alice", "a"))  # the client again: waits for the id
    for _ in range(5):
        await asyncio.sleep(0)
    await cancelled(first)
    gate.set()
    participant, resumed = await second
    await settle(rooms)
    assert not resumed and rooms.sessions[SessionId("a")] is participant
    assert await sessions.lookup(SessionId("a")) == ALICE_A and len(sessions) == 1
    await rooms.leave(participant, "leave")
    assert await sessions.lookup(SessionId("a")) is None and no_locks_left(rooms)


async def test_a_cancelled_resume_leaves_the_live_sessions_binding(worker: MediaWorker) -> None:
    sessions = LateReplySessions()
    rooms, _, _ = make(worker, sessions)
    alice, _ = await join(rooms, "alice", "a")
    sessions.after_gates[SessionId("a")] = asyncio.Event()
    resuming = asyncio.create_task(join(rooms, "alice", "a"))
    await until(sessions.bound)
    await cancelled(resuming)
    await settle(rooms)
    assert rooms.sessions[SessionId("a")] is alice and not alice.closed
    assert await sessions.lookup(SessionId("a")) == ALICE_A


async def test_a_join_the_cluster_refuses_at_the_claim_releases_the_binding(
    worker: MediaWorker,
) -> None:
    rooms, sessions, _ = make(worker, leases=RefusingRooms())
    try:
        await join(rooms, "alice", "a")
    except SignalError as exc:
        assert exc.code == "cluster-unavailable"
    else:
        raise AssertionError("the join was not refused")
    assert await sessions.lookup(SessionId("a")) is None and len(sessions) == 0
    assert rooms.rooms == {} and no_locks_left(rooms)


# ---------------------------------------------------------------- joins while closing
async def test_a_join_waiting_on_its_bind_when_close_runs_is_refused(worker: MediaWorker) -> None:
    rooms, sessions, leases = make(worker)
    await join(rooms, "bob", "b")
    gate = sessions.gates[SessionId("a")] = asyncio.Event()
    joining = asyncio.create_task(join(rooms, "alice", "a"))
    await until(sessions.waiting)
    closing = asyncio.create_task(rooms.close())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not closing.done()  # close waits for the join under way
    gate.set()
    await closing
    error = (await asyncio.gather(joining, return_exceptions=True))[0]
    assert isinstance(error, SignalError) and error.code == "shutdown"
    assert error.close_code == 1012
    assert rooms.rooms == {} and rooms.sessions == {} and leases.held == set()
    assert worker.transport_count() == 0 and len(sessions) == 0
    assert no_locks_left(rooms)


async def test_a_join_waiting_on_its_claim_when_close_runs_leaves_no_room(
    worker: MediaWorker,
) -> None:
    rooms, sessions, leases = make(worker)
    gate = leases.claim_gates[ROOM] = asyncio.Event()
    joining = asyncio.create_task(join(rooms, "alice", "a"))
    await until(leases.claiming)
    closing = asyncio.create_task(rooms.close())
    for _ in range(5):
        await asyncio.sleep(0)
    gate.set()
    await closing
    error = (await asyncio.gather(joining, return_exceptions=True))[0]
    assert isinstance(error, SignalError) and error.code == "shutdown"
    assert rooms.rooms == {} and rooms.sessions == {} and leases.held == set()
    assert worker.transport_count() == 0 and len(sessions) == 0


async def test_close_cancels_a_join_whose_directory_never_answers(
    worker: MediaWorker, monkeypatch: Any
) -> None:
    monkeypatch.setattr("zvonok.rooms.service.JOIN_SETTLE", 0.05)
    rooms, sessions, leases = make(worker)
    leases.claim_gates[ROOM] = asyncio.Event()  # never opened
    joining = asyncio.create_task(join(rooms, "alice", "a"))
    await until(leases.claiming)
    await asyncio.wait_for(rooms.close(), 1.0)
    assert joining.cancelled()
    assert rooms.rooms == {} and rooms.sessions == {} and len(sessions) == 0
    assert no_locks_left(rooms)


async def test_a_join_entering_after_begin_shutdown_is_refused(worker: MediaWorker) -> None:
    rooms, sessions, _ = make(worker)
    bob, _ = await join(rooms, "bob", "b")
    gate = sessions.gates[SessionId("a")] = asyncio.Event()
    joining = asyncio.create_task(join(rooms, "alice", "a"))
    await until(sessions.waiting)
    rooms.begin_shutdown()
    gate.set()
    error = (await asyncio.gather(joining, return_exceptions=True))[0]
    assert isinstance(error, SignalError) and error.code == "shutdown"
    assert list(rooms.sessions) == ["b"] and len(sessions) == 1
    # a resume that passed the check before begin_shutdown is refused too (it was not told)
    gate = sessions.gates[SessionId("b")] = asyncio.Event()
    sessions.waiting.clear()
    rooms.closing = False
    resuming = asyncio.create_task(join(rooms, "bob", "b"))
    await until(sessions.waiting)
    rooms.closing = True
    gate.set()
    error = (await asyncio.gather(resuming, return_exceptions=True))[0]
    assert isinstance(error, SignalError) and error.code == "shutdown"
    assert rooms.sessions[SessionId("b")] is bob and await sessions.lookup(SessionId("b"))
