"""A participant's media lives in its ``MediaSession`` and the room's router, nowhere else.

Real RoomService, real MediaWorker on 127.0.0.1, browser-shaped answers: what a participant
publishes and receives is what its media session holds, the room's router holds the same objects,
and leaving frees both.
"""

from __future__ import annotations

import asyncio

from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.participant import Participant
from zvonok.rooms.service import RoomService

from ..fakes import RecordingSink
from ..sdp_answers import answer_to

ROOM = RoomKey(RoomKind.GROUP, "9")


async def join(rooms: RoomService, user: str, sink: RecordingSink) -> Participant:
    participant, _ = await rooms.join(ROOM, UserId(user), SessionId(user[0]), 9, sink)
    return participant


async def test_published_and_received_tracks_are_the_media_sessions(
    rooms: RoomService, worker: MediaWorker
) -> None:
    alice_sink, bob_sink = RecordingSink(), RecordingSink()
    alice = await join(rooms, "alice", alice_sink)
    alice.handle_answer(answer_to(alice_sink.last("offer")["sdp"], publish={"0": 71, "1": 72}))
    room = alice.room
    router = room.router
    assert set(alice.published) == {"0", "1"}
    tracks = set(alice.published.values())
    assert set(alice.media.producers) == tracks == set(room.published) == set(router.producers)
    for track_id, producer in alice.media.producers.items():
        assert router.producers[track_id] is producer is room.published[track_id].producer
        assert producer.mid is not None and alice.published[producer.mid] == track_id

    bob = await join(rooms, "bob", bob_sink)
    bob.handle_answer(answer_to(bob_sink.last("offer")["sdp"]))
    assert set(bob.consumers) == tracks and not bob.published
    assert set(router.consumers) == {f"b/{t}" for t in tracks}
    for track_id, consumer in bob.consumers.items():
        assert router.consumers[f"b/{track_id}"] is consumer
        assert consumer in router.producers[track_id].consumers

    await rooms.leave(alice, "leave")
    await asyncio.sleep(0)
    assert not alice.media.producers and not alice.published
    assert not router.producers and not room.published
    assert all(c.closed for c in bob.consumers.values())
    assert not router.consumers  # a closed producer closes its consumers

    bob.handle_answer(answer_to(bob_sink.last("offer")["sdp"]))  # the offer without alice
    assert not bob.consumers and not bob.media.consumers
    await rooms.leave(bob, "leave")
    assert worker.transport_count() == 0
