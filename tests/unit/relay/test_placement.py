"""Room placement on the front (``WorkerHandle.score``, ``WorkerPool.place``) and the pool's
bookkeeping of worker notes, with handles over real idle links and a real ``sleep`` process (no
worker program runs: placement never talks to one)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.config import Settings
from zvonok.errors import SignalError
from zvonok.ids import RoomKey, RoomKind
from zvonok.relay.frames import Frame
from zvonok.relay.front import (
    PPS_CAPACITY,
    RAMP_UP,
    SESSION_CAPACITY,
    WORKER_LOST,
    WORKER_LOST_CLOSE_CODE,
    WorkerHandle,
    WorkerPool,
)
from zvonok.relay.worker import LOAD_STEP, changed

from .conftest import LinkPair, Spawn

Pool = Callable[[int], Awaitable[WorkerPool]]


def room(n: int) -> RoomKey:
    return RoomKey(RoomKind.GROUP, str(n))


@pytest.fixture
async def pool(sleeper: Spawn, idle_links: LinkPair) -> AsyncIterator[Pool]:
    async def make(count: int) -> WorkerPool:
        made = WorkerPool(
            Settings(), count, sessions=LocalSessionDirectory(), rooms=LocalRoomDirectory()
        )
        process = await sleeper()
        for index in range(count):
            link, _ = await idle_links()
            handle = WorkerHandle(index, process, link, time.monotonic())
            handle.ready.set()
            made.workers[index] = handle
        return made

    yield make


async def test_the_score_is_the_busiest_resource_plus_the_ramp(pool: Pool) -> None:
    handle = (await pool(1)).workers[0]
    assert handle.score() == 0.0
    handle.load = {"cpu": 0.5, "pps": PPS_CAPACITY / 10, "sessions": 100}
    assert handle.score() == 0.5
    handle.load = {"cpu": 0.1, "pps": PPS_CAPACITY * 0.75, "sessions": 100}
    assert handle.score() == 0.75
    handle.load = {"cpu": 0.1, "pps": 0.0, "sessions": SESSION_CAPACITY}
    assert handle.score() == 1.0
    handle.placed_since_report = 3
    assert handle.score() == pytest.approx(1.0 + 3 * RAMP_UP)


async def test_a_new_room_goes_to_the_least_loaded_worker_and_stays(pool: Pool) -> None:
    p = await pool(3)
    p.workers[0].load = {"cpu": 0.6}
    p.workers[1].load = {"cpu": 0.2}
    p.workers[2].load = {"cpu": 0.4}
    chosen = p.place(room(1))
    assert chosen is p.workers[1] and p.locate(room(1)) == "1"
    assert room(1) in chosen.rooms and chosen.placed_since_report == 1
    p.workers[1].load = {"cpu": 0.9}  # a pinned room stays where it is
    assert p.place(room(1)) is chosen and chosen.placed_since_report == 1
    assert p.place(room(2)) is p.workers[2]


async def test_a_burst_of_rooms_spreads_between_two_reports(pool: Pool) -> None:
    p = await pool(2)
    placed = [p.place(room(n)).index for n in range(8)]
    assert placed == [0, 1, 0, 1, 0, 1, 0, 1]
    assert [len(h.rooms) for h in p.workers.values()] == [4, 4]
    p = await pool(2)
    p.workers[0].load = {"cpu": 0.5}
    p.workers[1].load = {"cpu": 0.1}
    # the idle worker takes rooms until its ramp reaches the busy one's load
    assert [p.place(room(n)).index for n in range(10)] == [1] * 10


async def test_a_load_report_resets_the_ramp(pool: Pool) -> None:
    p = await pool(1)
    handle = p.workers[0]
    for n in range(3):
        p.place(room(n))
    assert handle.placed_since_report == 3
    p._note(handle, Frame("note", method="load", params={"cpu": 0.3, "sessions": 4}))
    assert handle.placed_since_report == 0 and handle.score() == 0.3


async def test_only_live_workers_are_chosen(pool: Pool) -> None:
    p = await pool(3)
    p.workers[0].ready.clear()  # still starting
    p.workers[1].lost = True  # crashed
    p.workers[2].load = {"cpu": 0.99}
    assert [h.index for h in p.live_workers()] == [2]
    assert {p.place(room(n)).index for n in range(5)} == {2}


async def test_a_room_pinned_to_a_lost_worker_is_placed_again(pool: Pool) -> None:
    p = await pool(2)
    first = p.place(room(1))
    first.lost = True
    again = p.place(room(1))
    assert again is not first and again.live and p.locate(room(1)) == again.name


async def test_no_live_worker_refuses_with_worker_lost(pool: Pool) -> None:
    p = await pool(2)
    for handle in p.workers.values():
        handle.lost = True
    with pytest.raises(SignalError) as refused:
        p.place(room(1))
    error = refused.value
    assert (error.code, error.fatal, error.close_code) == (
        WORKER_LOST,
        True,
        WORKER_LOST_CLOSE_CODE,
    )
    assert p.locate(room(1)) is None


async def test_a_released_room_is_unpinned_unless_a_join_is_on_its_way(pool: Pool) -> None:
    p = await pool(1)
    handle = p.workers[0]
    p.place(room(1))
    handle.joining[room(1)] = 1
    released = Frame("note", method="room-released", params={"room": str(room(1))})
    p._note(handle, released)
    assert p.locate(room(1)) == "0"  # a join placed it there meanwhile: it stays
    del handle.joining[room(1)]
    p._note(handle, released)
    assert p.locate(room(1)) is None and not handle.rooms


async def test_a_claim_pins_the_room_to_the_claiming_worker(pool: Pool) -> None:
    p = await pool(2)
    p.place(room(1))  # on worker 0
    claim = Frame("req", method="claim", params={"room": str(room(1))})
    assert await p._serve(p.workers[1], claim) == "local"
    assert p.locate(room(1)) == "1" and room(1) in p.workers[1].rooms


async def test_a_ready_note_makes_a_worker_live(pool: Pool) -> None:
    p = await pool(1)
    handle = p.workers[0]
    handle.ready.clear()
    assert not handle.live
    info = {"pid": 1, "mediaPort": 40000, "candidates": [], "forwarding": "python"}
    p._note(handle, Frame("note", method="ready", params=info))
    assert handle.live and handle.info == info


async def test_a_claim_takes_the_room_from_the_worker_it_was_pinned_to(pool: Pool) -> None:
    p = await pool(2)
    p.place(room(1))  # on worker 0
    await p._serve(p.workers[1], Frame("req", method="claim", params={"room": str(room(1))}))
    assert room(1) not in p.workers[0].rooms


def test_a_worker_reports_its_load_when_it_moves_the_score() -> None:
    base = {"cpu": 0.02, "pps": 1000.0, "sessions": 4, "rooms": 1}
    assert changed(None, base)  # the first measurement is always reported
    assert not changed(base, dict(base))
    assert not changed(base, {**base, "cpu": 0.02 + LOAD_STEP / 2})  # noise of an idle worker
    assert changed(base, {**base, "cpu": 0.02 + LOAD_STEP * 1.5})
    assert not changed(base, {**base, "pps": 1000.0 + PPS_CAPACITY * LOAD_STEP / 2})
    assert changed(base, {**base, "pps": 1000.0 + PPS_CAPACITY * LOAD_STEP * 1.5})
    assert changed(base, {**base, "sessions": 5}) and changed(base, {**base, "rooms": 0})
