"""RoomService state machine: join, resume, ownership, caps, detach/grace, shutdown.

Runs on a real MediaWorker bound to 127.0.0.1 port 0 (no client ever connects to it) and a sink
that records what each session would have been sent. Grace expiry is driven by calling the timer
callback directly, so no test waits for wall-clock time.
"""

from __future__ import annotations

from typing import Any

import pytest

from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.errors import SignalError
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.service import RoomService

from ..fakes import RecordingSink

ROOM = RoomKey(RoomKind.GROUP, "7")


def service(worker: MediaWorker, **kwargs: Any) -> RoomService:
    return RoomService(
        worker=worker,
        sessions=LocalSessionDirectory(),
        rooms=LocalRoomDirectory(),
        ice_servers=[],
        **kwargs,
    )


async def join(rooms: RoomService, user: str, session: str, sink: RecordingSink) -> Any:
    return await rooms.join(ROOM, UserId(user), SessionId(session), 7, sink)


async def test_join_offers_and_tells_the_others(worker: MediaWorker) -> None:
    rooms = service(worker)
    a, b = RecordingSink(), RecordingSink()
    await join(rooms, "alice", "a", a)
    await join(rooms, "bob", "b", b)
    assert a.types()[:3] == ["joined", "tracks", "offer"]
    assert "participant-joined" in a.types()
    joined = b.sent[0][1] or {}
    assert joined["participants"] == [{"sessionId": "a", "userId": "alice"}]
    assert worker.transport_count() == 2


async def test_session_bound_to_user_and_resume(worker: MediaWorker) -> None:
    rooms = service(worker)
    first, second = RecordingSink(), RecordingSink()
    participant, resumed = await join(rooms, "alice", "a", first)
    with pytest.raises(SignalError) as taken:
        await join(rooms, "mallory", "a", RecordingSink())
    assert taken.value.code == "session-taken"
    again, resumed = await join(rooms, "alice", "a", second)
    assert again is participant and resumed
    assert first.closed == (4001, "replaced")
    assert second.types()[0] == "joined" and (second.sent[0][1] or {})["resumed"] is True
    # the server's unanswered first offer is sent again on the new connection
    assert "offer" in second.types()


async def test_room_cap_and_room_deleted_when_empty(worker: MediaWorker) -> None:
    rooms = service(worker, max_participants=1)
    participant, _ = await join(rooms, "alice", "a", RecordingSink())
    with pytest.raises(SignalError) as full:
        await join(rooms, "bob", "b", RecordingSink())
    assert full.value.code == "room-full"
    await rooms.leave(participant, "leave")
    assert rooms.rooms == {} and rooms.sessions == {} and worker.transport_count() == 0


async def test_grace_expiry_ends_a_silent_session_but_not_one_with_media(
    worker: MediaWorker,
) -> None:
    rooms = service(worker, resume_grace=30)
    a, b = RecordingSink(), RecordingSink()
    alice, _ = await join(rooms, "alice", "a", a)
    await join(rooms, "bob", "b", b)
    rooms.detach(alice, a)
    assert alice.session_id in rooms._grace
    rooms._grace[alice.session_id].cancel()
    # Media arrived since the drop: not inactive, look again later.
    rooms._grace_expired(alice, alice.transport.rx_packets - 1)
    assert not alice.closed and alice.session_id in rooms._grace
    rooms._grace[alice.session_id].cancel()
    # No media since: the session ends as 'disconnect'.
    rooms._grace_expired(alice, alice.transport.rx_packets)
    for task in list(rooms._tasks):
        await task
    assert alice.closed
    left = [p for t, p in b.sent if t == "participant-left"]
    assert left == [{"sessionId": "a", "userId": "alice", "reason": "disconnect"}]


async def test_detach_from_a_stale_socket_is_ignored(worker: MediaWorker) -> None:
    rooms = service(worker)
    old, new = RecordingSink(), RecordingSink()
    alice, _ = await join(rooms, "alice", "a", old)
    await join(rooms, "alice", "a", new)  # resumed on a new socket
    rooms.detach(alice, old)  # the old socket's reader ends afterwards
    assert alice.sink is new and alice.session_id not in rooms._grace


async def test_shutdown_tells_everyone_and_refuses_joins(worker: MediaWorker) -> None:
    rooms = service(worker)
    a = RecordingSink()
    await join(rooms, "alice", "a", a)
    rooms.begin_shutdown()
    assert a.closed == (1012, "server shutting down")
    assert (a.sent[-1][1] or {})["code"] == "shutdown"
    with pytest.raises(SignalError) as refused:
        await join(rooms, "bob", "b", RecordingSink())
    assert refused.value.code == "shutdown" and refused.value.close_code == 1012
    await rooms.close()
    assert rooms.sessions == {} and worker.transport_count() == 0
