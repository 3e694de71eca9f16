"""A track sent as one stream (no simulcast, no SVC) is judged by ``RoomAdaptation`` without
the layer snapshots (``_plain_layer``); what the allocator gets must be the ``Layer`` the
snapshots give, tick after tick: a real VP8 producer with and without temporal layers, that
starts, stops (inactive, windows without bytes) and resumes."""

from __future__ import annotations

from typing import cast

import pytest

from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.forwarding.router import ProducerParams, Router
from zvonok.media.sdp.negotiation import PublishedTrack
from zvonok.rooms.adaptive import RoomAdaptation
from zvonok.rooms.participant import Participant
from zvonok.rooms.room import PublishedEntry, Room

from ..media.forwarding_fakes import VP8, FakeClock, FakeSink, rtp
from .test_adaptive import KEYFRAMES, Member

PATTERN = (0, 2, 1, 2)


def vp8(step: int, temporal: bool) -> bytes:
    key = step % 40 == 0
    if not temporal:
        return (KEYFRAMES[1] if key else bytes.fromhex("9080 06 01")).ljust(1000, b"\0")
    tid = 0 if key else PATTERN[step % 4]
    pid = step & 0x7FFF
    desc = bytes((0x90, 0xE0, 0x80 | pid >> 8, pid & 0xFF, step // 4 & 0xFF, tid << 6))
    body = KEYFRAMES[1][3:] if key else bytes.fromhex("01 02 03")
    return (desc + body).ljust(1000 if tid == 0 else 600, b"\0")


@pytest.mark.parametrize("temporal", [False, True])
def test_a_plain_track_is_judged_as_its_snapshot_says(temporal: bool) -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    room: Room[Member] = Room(
        RoomKey(RoomKind.CHAT, "1"), router=router, unsubscribe_tick=lambda: None
    )
    member = Member(SessionId("s-a"), UserId("a"))
    room.participants[member.session_id] = member
    producer = router.produce(
        ProducerParams(
            producer_id="cam",
            kind="video",
            codecs=VP8,
            ssrc=0x4242,
            rtx_ssrc=None,
            rtx_payload_types={},
            mid="1",
        ),
        sink=FakeSink(),
    )
    track = PublishedTrack(
        mid="1", kind="video", ssrc=0x4242, rtx_ssrc=None, codecs={}, rtx={}, extensions={},
        msid=None,
    )  # fmt: skip
    entry = PublishedEntry("cam", producer, member, track)
    room.published["cam"] = entry
    fast = RoomAdaptation(cast(Room[Participant], room))
    snapshot = RoomAdaptation(cast(Room[Participant], room))
    typed = cast(PublishedEntry[Participant], entry)
    seq = step = 0
    seen = set()
    for tick in range(80):  # 20 s: sending, 3 s silent, sending at a third of the rate, ...
        sending = not 20 <= tick < 32
        for _ in range(5):
            clock.now += 0.05
            step += 1
            if sending and (tick < 32 or step % 3 == 0):
                seq += 1
                producer.receive_rtp(rtp(seq, step * 4500, payload=vp8(step, temporal)))
        router.tick(clock.now)
        got = fast._layers(typed, clock.now)
        want = snapshot._snapshot_layers(typed, clock.now)
        assert got == want
        assert fast._measured == snapshot._measured
        assert fast._temporal_seen == snapshot._temporal_seen
        seen.add((got[0].bitrate > 0, bool(got[0].temporal)))
    layer = producer.layers[0]
    assert bool(layer.temporal_bitrates) == temporal
    assert (True, temporal) in seen  # the steps, when there were any, were compared
