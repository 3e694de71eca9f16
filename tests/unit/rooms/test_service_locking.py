"""RoomService locking: per-session-id and per-room-key locks instead of one service-wide lock.

The directories here are the single-node ones with a yield (``asyncio.sleep(0)``) before each
call, as a Redis round trip would have, and gates (events) that hold one key's call until the
test opens them. Each test would fail on a join without locks (the caps, the one-join-per-session
and the lease of a room being released are raced), and the last ones prove that one room's slow
directory call no longer holds up joins of other rooms or other sessions.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any

import pytest

from zvonok.cluster.base import SessionBinding
from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.errors import SignalError
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.participant import Participant
from zvonok.rooms.service import RoomService

from ..fakes import RecordingSink

ROOM = RoomKey(RoomKind.GROUP, "7")
OTHER = RoomKey(RoomKind.GROUP, "8")


class SlowSessions(LocalSessionDirectory):
    """Session bindings that take a loop turn per call; ``gates`` hold one id's ``bind``."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[SessionId, asyncio.Event] = {}
        #: Set when a gated ``bind`` starts waiting.
        self.waiting = asyncio.Event()

    async def bind(self, session_id: SessionId, binding: SessionBinding) -> SessionBinding:
        await asyncio.sleep(0)
        gate = self.gates.get(session_id)
        if gate is not None:
            self.waiting.set()
            await gate.wait()
        return await super().bind(session_id, binding)

    async def release(
        self, session_id: SessionId, binding: SessionBinding, *, linger: float = 0.0
    ) -> None:
        await asyncio.sleep(0)
        await super().release(session_id, binding, linger=linger)


class SlowRooms(LocalRoomDirectory):
    """Room leases that take a loop turn per call; ``claim_gates`` hold one room's claim and
    ``release_gate`` every release. ``held`` is the set of rooms whose lease is held."""

    def __init__(self) -> None:
        super().__init__()
        self.held: set[RoomKey] = set()
        self.claim_gates: dict[RoomKey, asyncio.Event] = {}
        self.claiming = asyncio.Event()  # set when a gated claim starts waiting
        self.release_gate: asyncio.Event | None = None
        self.releasing = asyncio.Event()  # set when a gated release starts waiting

    async def claim(self, room: RoomKey) -> str:
        await asyncio.sleep(0)
        gate = self.claim_gates.get(room)
        if gate is not None:
            self.claiming.set()
            await gate.wait()
        self.held.add(room)
        return await super().claim(room)

    async def release(self, room: RoomKey) -> None:
        await asyncio.sleep(0)
        if self.release_gate is not None:
            self.releasing.set()
            await self.release_gate.wait()
        self.held.discard(room)
        await super().release(room)


def service(worker: MediaWorker, **kwargs: Any) -> tuple[RoomService, SlowSessions, SlowRooms]:
    sessions, rooms = SlowSessions(), SlowRooms()
    return (
        RoomService(worker=worker, sessions=sessions, rooms=rooms, ice_servers=[], **kwargs),
        sessions,
        rooms,
    )


async def join(
    rooms: RoomService, user: str, session: str, key: RoomKey = ROOM
) -> tuple[Participant, bool]:
    return await rooms.join(key, UserId(user), SessionId(session), 7, RecordingSink())


async def until(event: asyncio.Event) -> None:
    """Wait for a directory call to reach its gate (fails after 1 s)."""
    await asyncio.wait_for(event.wait(), 1.0)


def no_locks_left(rooms: RoomService) -> bool:
    return len(rooms.session_locks) == 0 and len(rooms.room_locks) == 0


async def test_concurrent_joins_at_the_limit_let_exactly_the_limit_in(
    worker: MediaWorker,
) -> None:
    rooms, sessions, leases = service(worker, max_participants=3)
    results = await asyncio.gather(
        *(join(rooms, f"user{i}", f"s{i}") for i in range(8)), return_exceptions=True
    )
    joined = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, SignalError)]
    assert len(joined) == 3 and len(refused) == 5
    assert {e.code for e in refused} == {"room-full"}
    assert list(rooms.rooms) == [ROOM] and len(rooms.rooms[ROOM]) == 3
    assert all(p.room is rooms.rooms[ROOM] for p, _ in joined)
    assert worker.transport_count() == 3 and len(sessions) == 3 and leases.held == {ROOM}
    assert no_locks_left(rooms)


async def test_per_user_session_cap_holds_under_concurrent_joins(worker: MediaWorker) -> None:
    rooms, sessions, _ = service(worker, max_sessions_per_user=2)
    results = await asyncio.gather(
        *(join(rooms, "alice", f"s{i}") for i in range(5)), return_exceptions=True
    )
    assert sum(isinstance(r, tuple) for r in results) == 2
    assert [r.code for r in results if isinstance(r, SignalError)] == ["too-many-sessions"] * 3
    assert len(rooms.rooms[ROOM]) == 2 and len(sessions) == 2
    assert no_locks_left(rooms)


async def test_two_joins_with_one_session_id_at_once_make_one_session(
    worker: MediaWorker,
) -> None:
    rooms, sessions, _ = service(worker)
    first, second = await asyncio.gather(join(rooms, "alice", "a"), join(rooms, "alice", "a"))
    assert first[0] is second[0]
    assert sorted([first[1], second[1]]) == [False, True]  # one created it, one resumed it
    assert len(rooms.rooms[ROOM]) == 1 and len(rooms.sessions) == 1 and len(sessions) == 1
    assert worker.transport_count() == 1
    # another user's join with the same id at the same time: one of them gets it
    results = await asyncio.gather(
        join(rooms, "bob", "b"), join(rooms, "mallory", "b"), return_exceptions=True
    )
    assert sum(isinstance(r, tuple) for r in results) == 1
    assert [r.code for r in results if isinstance(r, SignalError)] == ["session-taken"]
    assert len(rooms.rooms[ROOM]) == 2 and worker.transport_count() == 2
    assert no_locks_left(rooms)


async def test_join_racing_the_last_leave_keeps_the_room_and_its_lease(
    worker: MediaWorker,
) -> None:
    rooms, _, leases = service(worker)
    alice, _ = await join(rooms, "alice", "a")
    old_room = alice.room
    leases.release_gate = asyncio.Event()
    leaving = asyncio.create_task(rooms.leave(alice, "leave"))
    await until(leases.releasing)  # the empty room's lease is being released
    joining = asyncio.create_task(join(rooms, "bob", "b"))
    for _ in range(20):
        await asyncio.sleep(0)
    leases.release_gate.set()
    await leaving
    bob, resumed = await joining
    assert not resumed and old_room.closed
    room = rooms.rooms[ROOM]
    assert bob.room is room and not room.closed and list(room.participants) == ["b"]
    assert leases.held == {ROOM}  # the new room holds its lease: the old release came first
    assert no_locks_left(rooms)


async def test_join_before_the_last_leave_drops_its_room_keeps_the_room(
    worker: MediaWorker,
) -> None:
    rooms, _, leases = service(worker)
    alice, _ = await join(rooms, "alice", "a")
    room = alice.room
    leaving = asyncio.create_task(rooms.leave(alice, "leave"))
    bob, _ = await join(rooms, "bob", "b")
    await leaving
    assert rooms.rooms == {ROOM: room} and bob.room is room and not room.closed
    assert list(room.participants) == ["b"] and leases.held == {ROOM}
    await rooms.leave(bob, "leave")
    assert rooms.rooms == {} and leases.held == set() and room.closed
    assert no_locks_left(rooms)


async def test_rejoin_with_the_id_of_a_leaving_session_keeps_its_binding(
    worker: MediaWorker,
) -> None:
    rooms, sessions, _ = service(worker)
    alice, _ = await join(rooms, "alice", "a")
    await join(rooms, "bob", "b")
    leaving = asyncio.create_task(rooms.leave(alice, "disconnect"))
    again, resumed = await join(rooms, "alice", "a")  # a new session with the same id
    await leaving
    assert again is not alice and not resumed and rooms.sessions[SessionId("a")] is again
    assert await sessions.lookup(SessionId("a")) == SessionBinding(UserId("alice"), ROOM)
    assert no_locks_left(rooms)


async def test_a_slow_claim_does_not_hold_up_other_rooms(worker: MediaWorker) -> None:
    rooms, _, leases = service(worker)
    gate = leases.claim_gates[ROOM] = asyncio.Event()
    slow = asyncio.create_task(join(rooms, "alice", "a", ROOM))
    await until(leases.claiming)
    # another room's joins, and a leave there, complete while the first claim waits
    bob, _ = await asyncio.wait_for(join(rooms, "bob", "b", OTHER), 1.0)
    await asyncio.wait_for(join(rooms, "carol", "c", OTHER), 1.0)
    await asyncio.wait_for(rooms.leave(bob, "leave"), 1.0)
    assert not slow.done() and set(rooms.rooms) == {OTHER}
    gate.set()
    alice, _ = await slow
    assert set(rooms.rooms) == {ROOM, OTHER} and leases.held == {ROOM, OTHER}
    assert no_locks_left(rooms)


async def test_a_slow_bind_does_not_hold_up_other_sessions_of_its_room(
    worker: MediaWorker,
) -> None:
    rooms, sessions, _ = service(worker)
    gate = sessions.gates[SessionId("a")] = asyncio.Event()
    slow = asyncio.create_task(join(rooms, "alice", "a"))
    await until(sessions.waiting)
    await asyncio.wait_for(join(rooms, "bob", "b"), 1.0)
    assert not slow.done()
    gate.set()
    await slow
    assert set(rooms.rooms[ROOM].participants) == {"a", "b"}
    assert no_locks_left(rooms)


async def test_lock_table_is_empty_after_a_flood_with_cancellations(worker: MediaWorker) -> None:
    rooms, _, leases = service(worker, max_participants=4)
    leases.claim_gates[ROOM] = asyncio.Event()  # never opened
    rng = random.Random(7)
    keys = [ROOM, OTHER, RoomKey(RoomKind.CHAT, "7")]
    tasks = [
        asyncio.create_task(join(rooms, f"u{i % 5}", f"{rng.getrandbits(64):x}", keys[i % 3]))
        for i in range(60)
    ]
    await until(leases.claiming)
    assert len(rooms.room_locks) >= 1
    stuck = [t for t, i in zip(tasks, range(60), strict=True) if i % 3 == 0]
    for task in stuck:  # the joins of the room whose claim hangs: the holder and its waiters
        task.cancel()
    others = [t for t in tasks if t not in stuck]
    results = await asyncio.gather(*others, return_exceptions=True)
    assert sum(isinstance(r, tuple) for r in results) == 8  # 4 in each of the two other rooms
    await asyncio.gather(*stuck, return_exceptions=True)
    assert all(t.cancelled() for t in stuck) and ROOM not in rooms.rooms
    assert no_locks_left(rooms)
    for participant in list(rooms.sessions.values()):
        await rooms.leave(participant, "leave")
    assert rooms.rooms == {} and no_locks_left(rooms)


@pytest.mark.parametrize("reason", ["leave", "disconnect"])
async def test_two_leaves_of_one_session_at_once_end_it_once(
    worker: MediaWorker, reason: str
) -> None:
    rooms, sessions, leases = service(worker)
    alice, _ = await join(rooms, "alice", "a")
    ends: list[Awaitable[None]] = [rooms.leave(alice, reason), rooms.leave(alice, reason)]
    await asyncio.gather(*ends)
    assert rooms.rooms == {} and rooms.sessions == {} and len(sessions) == 0
    assert leases.held == set() and no_locks_left(rooms)
