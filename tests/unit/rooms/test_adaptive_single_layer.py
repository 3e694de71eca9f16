"""A single-layer camera (no simulcast: what a client without our SDK publishes) on real media
objects: before its first bitrate window closes the allocator has no measurement of it, and
must not hold it back on a guess (it used to be judged as a full-size 1.5 Mbit/s stream, so a
1 Mbit/s start estimate that fell to ~850 kbit/s froze the first 2.5 s of most calls)."""

from __future__ import annotations

from typing import cast

from zvonok.ids import RoomKey, RoomKind
from zvonok.media.forwarding.endpoint import MediaEndpoint
from zvonok.media.forwarding.router import ConsumerParams, ProducerParams, Router
from zvonok.media.forwarding.types import MID_URI
from zvonok.media.sdp.negotiation import PublishedTrack
from zvonok.rooms.adaptive import RoomAdaptation
from zvonok.rooms.participant import Participant
from zvonok.rooms.room import PublishedEntry, Room

from ..media.forwarding_fakes import VP8, VP8_DELTA, FakeClock, FakeSink, rtp
from .test_adaptive import KEYFRAMES, MID_ID, STEP, Member

SSRC = 0x5100
#: Payload bytes per packet at 20 packets/s: about 500 kbit/s.
SIZE = 3100


class SingleLayerCall:
    """One publisher of a single-layer VP8 camera and one subscriber, on a fake clock."""

    def __init__(self, estimate_bps: int) -> None:
        self.clock = FakeClock()
        self.router = Router(clock=self.clock)
        self.room: Room[Member] = Room(
            RoomKey(RoomKind.CHAT, "1"), router=self.router, unsubscribe_tick=lambda: None
        )
        self.publisher = self.member("pub")
        extensions = {MID_URI: MID_ID}
        self.producer = self.router.produce(
            ProducerParams(
                producer_id="cam", kind="video", codecs=VP8, ssrc=SSRC, rtx_ssrc=None,
                rtx_payload_types={}, mid="1", rids=(), extensions=extensions,
            ),
            sink=FakeSink(),
        )  # fmt: skip
        self.endpoint = MediaEndpoint(clock=self.clock)
        self.endpoint.add_producer(self.producer)
        track = PublishedTrack(
            mid="1", kind="video", ssrc=SSRC, rtx_ssrc=None, codecs={}, rtx={},
            extensions=extensions, msid=None, rids=(),
        )  # fmt: skip
        self.room.published["cam"] = PublishedEntry("cam", self.producer, self.publisher, track)
        self.sub = self.member("sub")
        self.sub.media.downlink.estimate_bps = estimate_bps
        self.sub.consumers["cam"] = self.router.consume(
            self.producer,
            ConsumerParams(
                consumer_id="s-sub/cam", ssrc=0x7000, rtx_ssrc=None, payload_types={97: 96},
                rtx_payload_types={}, ext_id_map={}, cname="x",
            ),
            sink=FakeSink(),
        )  # fmt: skip
        self.adaptation = RoomAdaptation(cast(Room[Participant], self.room))
        self.seq = 100
        self.steps = 0

    def member(self, name: str) -> Member:
        from zvonok.ids import SessionId, UserId

        member = Member(SessionId(f"s-{name}"), UserId(name))
        self.room.participants[member.session_id] = member
        return member

    def run(self, seconds: float) -> None:
        """20 packets/s with a keyframe every second; the media tick and the room's adaptation
        every 0.25 s, from the first packet on."""
        for _ in range(round(seconds / STEP)):
            self.clock.now += STEP
            key = self.steps % 20 == 0
            payload = (KEYFRAMES[2] if key else VP8_DELTA).ljust(SIZE, b"\0")
            ts = 90_000 * self.steps // 20
            self.endpoint.on_rtp(rtp(self.seq, ts, ssrc=SSRC, payload=payload))
            self.seq += 1
            self.steps += 1
            if self.steps % 5 == 0:
                self.router.tick(self.clock.now)
                self.adaptation.tick(self.clock.now)


def test_an_unmeasured_single_layer_camera_is_not_held_back_on_a_guess() -> None:
    call = SingleLayerCall(estimate_bps=850_000)
    call.run(0.75)  # before the first bitrate window closes
    assert call.sub.paused_told() == []
    assert call.sub.consumers["cam"].target_layer == 0
    call.run(3.0)  # measured (~500 kbit/s): it fits 850 kbit/s
    assert call.sub.paused_told() == []
    assert call.sub.consumers["cam"].current_layer == 0


def test_a_measured_single_layer_camera_the_link_cannot_carry_is_held_back() -> None:
    call = SingleLayerCall(estimate_bps=200_000)
    call.run(3.0)
    assert call.sub.paused_told() == [(True, "bandwidth")]
