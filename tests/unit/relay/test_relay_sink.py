"""``RelaySink``: a relayed session's ``joined`` leaves at once (the carrier is asked to flush),
its other server messages with the link's next write."""

from __future__ import annotations

import random

from zvonok.relay.sink import RelaySink
from zvonok.signaling.messages import Joined, ParticipantJoined

from .test_lossy_link import pair


async def test_joined_is_flushed_and_other_messages_are_not() -> None:
    a, b, _, _, ta, _ = pair(random.Random(3))
    try:
        ta.down = True  # recorded, not delivered: b has no handler for "send"
        sink = RelaySink(a, relay=7)
        sink.send(ParticipantJoined("s-b", "bob"))
        assert ta.flushes == []
        sink.send(Joined("s-a", "alice", "chat:1", (), (), False))
        assert ta.flushes == [2]
        assert [f.params["m"]["type"] for f in ta.written] == ["participant-joined", "joined"]
        assert all(f.relay == 7 and f.method == "send" for f in ta.written)
    finally:
        await a.close()
        await b.close()
