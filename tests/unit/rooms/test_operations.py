"""Room events, operator actions (kick, close, mute refusals) and the quality monitor.

Same setup as test_service.py: a real MediaWorker on 127.0.0.1 port 0 that no client reaches,
and sinks that record what each session would have been sent.
"""

from __future__ import annotations

from typing import Any

from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms import moderation
from zvonok.rooms.events import BaseRoomObserver, RoomEvents
from zvonok.rooms.participant import Participant
from zvonok.rooms.quality import QualityMonitor, QualitySample
from zvonok.rooms.room import Room
from zvonok.rooms.service import RoomService

from ..fakes import RecordingSink

ROOM = RoomKey(RoomKind.CHAT, "5")


class Recorder(BaseRoomObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    def room_started(self, room: Room[Participant]) -> None:
        self.seen.append(("room_started", str(room.key)))

    def room_finished(self, room: Room[Participant]) -> None:
        self.seen.append(("room_finished", str(room.key)))

    def participant_joined(self, participant: Participant) -> None:
        self.seen.append(("participant_joined", participant.user_id))

    def participant_left(self, participant: Participant, reason: str) -> None:
        self.seen.append(("participant_left", participant.user_id, reason))

    def session_closing(self, participant: Participant) -> None:
        self.seen.append(("session_closing", participant.user_id))


class Broken(BaseRoomObserver):
    def room_started(self, room: Room[Participant]) -> None:
        raise RuntimeError("observer bug")


def make(worker: MediaWorker, *observers: Any) -> RoomService:
    return RoomService(
        worker=worker,
        sessions=LocalSessionDirectory(),
        rooms=LocalRoomDirectory(),
        ice_servers=[],
        events=RoomEvents(list(observers)),
    )


async def join(rooms: RoomService, user: str, sink: RecordingSink) -> Participant:
    participant, _ = await rooms.join(ROOM, UserId(user), SessionId(f"s-{user}"), 5, sink)
    return participant


async def test_lifecycle_events_in_order_and_a_broken_observer_is_skipped(
    worker: MediaWorker,
) -> None:
    recorder = Recorder()
    rooms = make(worker, Broken(), recorder)
    alice = await join(rooms, "alice", RecordingSink())
    await join(rooms, "bob", RecordingSink())
    await rooms.leave(alice, "leave")
    await rooms.close()
    assert recorder.seen == [
        ("room_started", "chat:5"),
        ("participant_joined", "alice"),
        ("participant_joined", "bob"),
        ("session_closing", "alice"),
        ("participant_left", "alice", "leave"),
        ("session_closing", "bob"),
        ("participant_left", "bob", "shutdown"),
        ("room_finished", "chat:5"),
    ]


async def test_kick_tells_the_client_closes_4003_and_tells_the_room(worker: MediaWorker) -> None:
    rooms = make(worker)
    a, b = RecordingSink(), RecordingSink()
    await join(rooms, "alice", a)
    bob = await join(rooms, "bob", b)
    assert await moderation.kick(rooms, "s-bob")
    assert bob.closed and b.closed == (moderation.KICKED_CLOSE_CODE, "kicked")
    assert [p for t, p in b.sent if t == "error"][-1]["code"] == "kicked"  # type: ignore[index]
    left = [p for t, p in a.sent if t == "participant-left"]
    assert left == [{"sessionId": "s-bob", "userId": "bob", "reason": "kicked"}]
    assert not await moderation.kick(rooms, "s-bob")
    assert not await moderation.kick(rooms, "nobody")


async def test_close_room_ends_everyone(worker: MediaWorker) -> None:
    rooms = make(worker)
    sinks = [RecordingSink(), RecordingSink()]
    await join(rooms, "alice", sinks[0])
    await join(rooms, "bob", sinks[1])
    assert await moderation.close_room(rooms, ROOM) == 2
    assert rooms.rooms == {} and rooms.sessions == {}
    assert all(s.closed == (moderation.ROOM_CLOSED_CLOSE_CODE, "room-closed") for s in sinks)
    assert await moderation.close_room(rooms, ROOM) is None


async def test_mute_of_an_unknown_session_or_track(worker: MediaWorker) -> None:
    rooms = make(worker)
    await join(rooms, "alice", RecordingSink())
    assert moderation.set_muted(rooms, "nobody", "t1", True) is None
    assert moderation.set_muted(rooms, "s-alice", "t-not-published", True) is None


async def test_quality_monitor_sends_stats_each_interval(worker: MediaWorker) -> None:
    rooms = make(worker)
    sink = RecordingSink()
    await join(rooms, "alice", sink)
    samples: list[QualitySample] = []
    monitor = QualityMonitor(rooms, interval=5.0, observers=[samples.append])
    monitor.tick(100.0)
    monitor.tick(101.0)  # too soon
    monitor.tick(105.0)
    stats = [p for t, p in sink.sent if t == "stats"]
    assert len(stats) == 2
    first, second = stats
    assert first is not None and second is not None
    assert first["bitrateIn"] is None and second["bitrateIn"] == 0
    assert second["state"] == "new" and second["published"] == [] and second["receiving"] == []
    assert monitor.latest["s-alice"] == second
    assert samples == []  # nothing received, nothing reported
    QualityMonitor(rooms, interval=0).tick(1.0)  # disabled: nothing sent
    assert len([t for t, _ in sink.sent if t == "stats"]) == 2
