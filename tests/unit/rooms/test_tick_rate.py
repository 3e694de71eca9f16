"""The media worker's tick rate follows what the rooms publish: a real ``RoomService`` on a real
``MediaWorker`` (127.0.0.1, port 0): joined sessions with nothing published leave the tick at its
slow rate (``IDLE_TICK_INTERVAL``); the first published track brings it to ``TICK_INTERVAL`` at
once (its room's router holds ``MediaWorker.hurry``); the last track's end (its publisher
leaving) lets it slow down again."""

from __future__ import annotations

import asyncio

from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import IDLE_TICK_INTERVAL, TICK_INTERVAL, MediaWorker
from zvonok.rooms.participant import Participant
from zvonok.rooms.service import RoomService

from ..fakes import RecordingSink
from ..sdp_answers import answer_to


async def join(rooms: RoomService, room: str, user: str, sink: RecordingSink) -> Participant:
    key = RoomKey(RoomKind.GROUP, room)
    participant, _ = await rooms.join(key, UserId(user), SessionId(user), int(room), sink)
    return participant


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_first_published_track_hurries_the_tick_and_the_last_lets_it_slow(
    rooms: RoomService, worker: MediaWorker
) -> None:
    sinks = {name: RecordingSink() for name in ("alice", "bob", "carol")}
    alice = await join(rooms, "1", "alice", sinks["alice"])
    bob = await join(rooms, "1", "bob", sinks["bob"])
    carol = await join(rooms, "2", "carol", sinks["carol"])
    for participant in (bob, carol):  # answers that publish nothing
        participant.handle_answer(answer_to(sinks[participant.session_id].last("offer")["sdp"]))
    await settle()
    assert worker.tick_interval == IDLE_TICK_INTERVAL
    alice.handle_answer(answer_to(sinks["alice"].last("offer")["sdp"], publish={"0": 71, "1": 72}))
    await settle()
    assert alice.published
    assert worker.tick_interval == TICK_INTERVAL
    await rooms.leave(alice, "leave")
    await settle()
    assert worker.tick_interval == IDLE_TICK_INTERVAL
