"""A room with nothing published skips its adaptive-media work on the housekeeping tick, and
decides exactly as before once something is: the same real router, producers and consumers as
``test_adaptive`` (a 3-layer simulcast camera) plus an Opus track with RFC 6464 levels, run
tick by tick beside a ``RoomAdaptation`` that never skips (the code before), through joins,
wishes sent while nothing is published, a publish, speakers, an unpublish and an estimate."""

from __future__ import annotations

from typing import cast

from zvonok.media.forwarding.consumer import Consumer
from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import CodecInfo
from zvonok.media.sdp.codecs import AUDIO_LEVEL_URI
from zvonok.media.sdp.negotiation import PublishedTrack
from zvonok.rooms.adaptive import RoomAdaptation
from zvonok.rooms.participant import Participant
from zvonok.rooms.room import PublishedEntry, Room
from zvonok.signaling.messages import ServerMessage, Speakers, TrackSetting

from ..media.forwarding_fakes import FakeSink
from .test_adaptive import STEP, Call, Member
from .test_speakers import EXT
from .test_speakers import rtp as audio_rtp

OPUS = {111: CodecInfo("opus", 48000)}


class AlwaysAwake(RoomAdaptation):
    """The adaptation as it was before the idle skip: every tick does the whole pass."""

    def _quiet(self) -> bool:
        return False


class IdleCall(Call):
    """``Call``'s room, but the camera (and an Opus track of the publisher's) are published
    only on ``publish()`` and withdrawn on ``unpublish()``; ``awake`` picks the adaptation."""

    def __init__(self, *subscribers: str, awake: bool) -> None:
        super().__init__(*subscribers)
        self.cam = self.room.published.pop("cam")
        self.cam_consumers = {n: s.consumers.pop("cam") for n, s in self.subs.items()}
        self.sending = [False, False, False]
        self.mic = self._mic()
        self.audio_seq = 1000
        kind = AlwaysAwake if awake else RoomAdaptation
        self.adaptation = kind(cast(Room[Participant], self.room))
        self.loud = False

    def _mic(self) -> PublishedEntry[Member]:
        track = PublishedTrack(
            mid="0", kind="audio", ssrc=0x3300, rtx_ssrc=None, codecs={}, rtx={},
            extensions={AUDIO_LEVEL_URI: EXT}, msid=None,
        )  # fmt: skip
        producer: Producer = self.router.create_producer(
            producer_id="mic",
            sink=FakeSink(),
            kind="audio",
            codecs=OPUS,
            ssrc=0x3300,
            rtx_ssrc=None,
            rtx_payload_types={},
        )
        return PublishedEntry("mic", producer, self.publisher, track)

    def publish(self) -> None:
        self.room.published["cam"] = self.cam
        self.room.published["mic"] = self.mic
        for name, consumer in self.cam_consumers.items():
            self.subs[name].consumers["cam"] = consumer
        self.sending = [True, True, True]
        self.loud = True

    def unpublish(self) -> None:
        del self.room.published["cam"], self.room.published["mic"]
        for sub in self.subs.values():
            sub.consumers.pop("cam", None)
        self.sending = [False, False, False]
        self.loud = False

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            if self.loud:
                self.audio_seq += 1
                self.mic.producer.receive_rtp(audio_rtp(self.audio_seq, 20))
            super().run(STEP)

    def state(self) -> object:
        """Everything the adaptation decides and says, as plain values."""
        members = [self.publisher, *self.subs.values()]

        def told(member: Member) -> list[ServerMessage]:
            return list(member.sent)

        consumers: list[Consumer] = list(self.cam_consumers.values())
        return (
            [told(m) for m in members],
            [(c.target_layer, c.temporal_target) for c in consumers],
            [(dict(m.held), dict(m.wishes), m.wishes_changed) for m in members],
            {t: dict(v) for t, v in self.adaptation.targets.items()},
            self.adaptation.speakers.sent,
        )


def lockstep(script: list[tuple[str, float]]) -> tuple[IdleCall, IdleCall]:
    """Run ``script`` (action, then seconds of media) on both adaptations, comparing every
    decision and message after each tick."""
    new, old = IdleCall("a", "b", awake=False), IdleCall("a", "b", awake=True)
    for action, seconds in script:
        for call in (new, old):
            sub = call.subs["a"]
            if action == "publish":
                call.publish()
            elif action == "unpublish":
                call.unpublish()
            elif action == "wish":
                sub.wishes = {"cam": TrackSetting("cam", max_width=640)}
                sub.wishes_changed = True
            elif action == "estimate":
                sub.media.downlink.estimate_bps = 400_000
            elif action == "no-estimate":
                sub.media.downlink.estimate_bps = None
        for _ in range(round(seconds / 0.25)):
            new.run(0.25)
            old.run(0.25)
            assert new.state() == old.state()
    return new, old


def test_an_idle_room_decides_as_before_through_publish_and_unpublish() -> None:
    new, _old = lockstep(
        [
            ("", 2.0),
            ("wish", 1.0),  # wishes for a track not published yet are dropped, as before
            ("publish", 3.0),
            ("wish", 1.0),
            ("unpublish", 2.0),  # the speakers list goes empty, the held tracks are forgotten
            ("publish", 0.25),  # published again: decided on the very next tick
            ("", 2.0),
            ("unpublish", 1.0),
            ("estimate", 1.0),  # a member with an estimate keeps the pass running
            ("no-estimate", 1.0),
            ("publish", 2.0),
        ]
    )
    told = [m for m in new.subs["b"].sent if isinstance(m, Speakers)]
    assert [[s.session_id for s in m.speakers] for m in told] == [["s-pub"], []] * 2 + [["s-pub"]]
    assert new.cam_consumers["b"].target_layer == 2


def test_a_published_track_is_allocated_on_the_next_tick() -> None:
    call = IdleCall("a", awake=False)
    call.run(3.0)
    assert call.adaptation.targets == {}
    call.publish()
    call.run(0.25)
    assert call.adaptation.targets == {"cam": {"s-a": 2}}  # no estimate: the top layer
    assert call.cam_consumers["a"].target_layer == 2


def test_a_settled_idle_room_does_no_work_on_its_tick() -> None:
    call = IdleCall("a", "b", awake=False)
    adaptation = call.adaptation
    calls: list[str] = []
    speakers_tick, allocate = adaptation.speakers.tick, adaptation._allocate

    def counted_speakers(now: float) -> None:
        calls.append("speakers")
        speakers_tick(now)

    def counted_allocate(*args: object) -> None:
        calls.append("allocate")
        allocate(*args)  # type: ignore[arg-type]

    adaptation.speakers.tick = counted_speakers  # type: ignore[method-assign]
    adaptation._allocate = counted_allocate  # type: ignore[method-assign,assignment]
    call.run(0.25)  # the first tick looks (and allocates nothing: no video)
    assert calls == ["speakers"] + ["allocate"] * 3  # the publisher, a and b
    calls.clear()
    call.run(5.0)
    assert calls == []
    # a member's wishes (for a track not published: dropped by the pass) are looked at on the
    # next tick
    call.subs["a"].wishes = {"cam": TrackSetting("cam", paused=True)}
    call.subs["a"].wishes_changed = True
    call.run(0.25)
    assert calls[0] == "speakers" and "allocate" in calls
    assert not call.subs["a"].wishes_changed and not call.subs["a"].wishes
    calls.clear()
    call.run(1.0)
    assert calls == []
