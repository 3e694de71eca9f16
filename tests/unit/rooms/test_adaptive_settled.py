"""A subscriber without a downlink estimate skips an allocation pass that would change nothing
(``RoomAdaptation._same_pass``), and the room decides exactly as before: a 1:1 call of real
routers, producers and consumers (each side publishes a single-stream VP8 camera and Opus with
RFC 6464 levels and receives the other's), and ``test_adaptive``'s 3-layer simulcast camera,
run tick by tick beside a ``RoomAdaptation`` that never skips (the code before), through wishes
(pause, a size, cleared, the same again), an operator mute, a camera that stops and resumes, an
unpublish and a republish with new consumers, layers the publisher stops, and an estimate that
comes and goes."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.forwarding.consumer import Consumer
from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import ConsumerParams, ProducerParams, Router
from zvonok.media.sdp.codecs import AUDIO_LEVEL_URI
from zvonok.media.sdp.negotiation import PublishedTrack
from zvonok.rooms.adaptive import RoomAdaptation, _Subscriber
from zvonok.rooms.allocation import VideoTrack
from zvonok.rooms.participant import Participant
from zvonok.rooms.room import PublishedEntry, Room
from zvonok.signaling.messages import TrackPaused, TrackSetting

from ..media.forwarding_fakes import VP8, FakeClock, FakeSink, rtp
from .test_adaptive import KEYFRAMES, Call, Member
from .test_speakers import EXT, OPUS
from .test_speakers import rtp as audio_rtp

STEP = 0.05


class NeverSkips(RoomAdaptation):
    """The adaptation as it was before: every due pass allocates."""

    def _same_pass(
        self, participant: Participant, sub: _Subscriber, tracks: dict[str, VideoTrack]
    ) -> bool:
        return False


def counting(adaptation: RoomAdaptation) -> list[str]:
    """The session ids ``adaptation`` runs an allocation pass for, as it runs them."""
    calls: list[str] = []
    allocate = adaptation._allocate

    def counted(now: float, participant: Participant, *args: object) -> None:
        calls.append(participant.session_id)
        allocate(now, participant, *args)  # type: ignore[arg-type]

    adaptation._allocate = counted  # type: ignore[method-assign,assignment]
    return calls


class OneToOne:
    """Two members, each publishing a plain VP8 camera and Opus with levels and receiving the
    other's two tracks, on a fake clock; ``skips`` picks the adaptation."""

    def __init__(self, *, skips: bool) -> None:
        self.clock = FakeClock()
        self.router = Router(clock=self.clock)
        self.room: Room[Member] = Room(
            RoomKey(RoomKind.CHAT, "1"), router=self.router, unsubscribe_tick=lambda: None
        )
        self.members = {n: Member(SessionId(f"s-{n}"), UserId(n)) for n in "ab"}
        for member in self.members.values():
            self.room.participants[member.session_id] = member
        self.producers: dict[str, Producer] = {}
        self.entries: dict[str, PublishedEntry[Member]] = {}
        self.seq: dict[str, int] = {}
        self.sending = {"a": True, "b": True}
        self.step = 0
        for n, member in self.members.items():
            for kind in ("audio", "video"):
                self._publish(n, member, kind)
        adaptation = RoomAdaptation if skips else NeverSkips
        self.adaptation = adaptation(cast(Room[Participant], self.room))
        self.consumers: list[Consumer] = []
        self.subscribe_all()

    def _publish(self, name: str, member: Member, kind: str) -> None:
        track_id = f"{name}-{kind}"
        ssrc = 0x1000 + 16 * (name == "b") + (kind == "video")
        extensions = {AUDIO_LEVEL_URI: EXT} if kind == "audio" else {}
        producer = self.router.produce(
            ProducerParams(
                producer_id=track_id,
                kind=kind,
                codecs=OPUS if kind == "audio" else VP8,
                ssrc=ssrc,
                rtx_ssrc=None,
                rtx_payload_types={},
                mid=str(kind == "video"),
                extensions=extensions,
            ),
            sink=FakeSink(),
        )
        track = PublishedTrack(
            mid=str(kind == "video"), kind=kind, ssrc=ssrc, rtx_ssrc=None, codecs={}, rtx={},
            extensions=extensions, msid=None,
        )  # fmt: skip
        self.producers[track_id] = producer
        self.entries[track_id] = PublishedEntry(track_id, producer, member, track)
        self.room.published[track_id] = self.entries[track_id]
        self.seq.setdefault(track_id, 100)

    def subscribe_all(self) -> None:
        """Every member consumes every track of the other that it does not consume yet."""
        for member in self.members.values():
            for track_id, entry in self.room.published.items():
                if entry.publisher is member or track_id in member.consumers:
                    continue
                consumer = self.router.consume(
                    entry.producer,
                    ConsumerParams(
                        consumer_id=f"{member.session_id}/{track_id}/{len(self.consumers)}",
                        ssrc=0x9000 + len(self.consumers),
                        rtx_ssrc=None,
                        payload_types={111: 111} if entry.track.kind == "audio" else {97: 96},
                        rtx_payload_types={},
                        ext_id_map={EXT: EXT} if entry.track.kind == "audio" else {},
                        cname="x",
                    ),
                    sink=FakeSink(),
                )
                member.consumers[track_id] = consumer
                self.consumers.append(consumer)

    def unpublish_camera(self, name: str) -> None:
        track_id = f"{name}-video"
        del self.room.published[track_id]
        self.producers.pop(track_id).close()
        for member in self.members.values():
            member.consumers.pop(track_id, None)

    def republish_camera(self, name: str) -> None:
        self._publish(name, self.members[name], "video")
        self.subscribe_all()

    def run(self, seconds: float) -> None:
        """30 video and 50 audio packets a second from each side (a keyframe every 2 s; a side
        not ``sending`` sends no video), the router's and the room's tick every 0.25 s."""
        for _ in range(round(seconds / STEP)):
            self.clock.now += STEP
            self.step += 1
            for track_id, producer in self.producers.items():
                name, kind = track_id.split("-")
                if kind == "audio":
                    for _ in range(2 + (self.step % 2)):
                        self.seq[track_id] += 1
                        level = 20 + (self.step + self.seq[track_id]) % 60
                        producer.receive_rtp(audio_rtp(self.seq[track_id], level))
                elif self.sending[name]:
                    for _ in range(1 + (self.step % 2)):
                        self.seq[track_id] += 1
                        key = self.seq[track_id] % 60 == 0
                        payload = KEYFRAMES[1] if key else bytes.fromhex("9080 06 01")
                        producer.receive_rtp(
                            rtp(self.seq[track_id], 3000 * self.step, payload=payload.ljust(900))
                        )
            if self.step % 5 == 0:
                self.router.tick(self.clock.now)
                self.adaptation.tick(self.clock.now)

    def state(self) -> object:
        """Everything the adaptation decides and says, as plain values."""
        return (
            [list(m.sent) for m in self.members.values()],
            [(c.target_layer, c.temporal_target, c.spatial_target) for c in self.consumers],
            [
                (dict(m.held), dict(m.wishes), m.wishes_changed, m.bandwidth_pauses)
                for m in self.members.values()
            ],
            {t: dict(v) for t, v in self.adaptation.targets.items()},
            self.adaptation.speakers.sent,
        )


def act(call: OneToOne, action: str) -> None:
    a = call.members["a"]
    if action == "pause":
        a.wishes = {"b-video": TrackSetting("b-video", paused=True)}
    elif action == "small":
        a.wishes = {"b-video": TrackSetting("b-video", max_width=320)}
    elif action == "clear":
        a.wishes = {}
    elif action == "mute":
        call.room.muted.add("b-video")
    elif action == "unmute":
        call.room.muted.discard("b-video")
    elif action == "stop":
        call.sending["b"] = False
    elif action == "resume":
        call.sending["b"] = True
    elif action == "unpublish":
        call.unpublish_camera("b")
    elif action == "republish":
        call.republish_camera("b")
    elif action == "estimate":
        a.media.downlink.estimate_bps = 150_000
    elif action == "no-estimate":
        a.media.downlink.estimate_bps = None
    if action in ("pause", "small", "clear", "same"):
        a.wishes_changed = True


SCRIPT = [
    ("", 3.0),
    ("same", 1.0),  # track-settings that change nothing
    ("pause", 1.5),
    ("same", 1.0),
    ("small", 1.5),
    ("clear", 1.5),
    ("mute", 1.5),
    ("unmute", 1.5),
    ("stop", 3.0),  # the camera goes silent (inactive), then comes back
    ("resume", 2.0),
    ("estimate", 3.0),  # too small for the camera: held back, told
    ("no-estimate", 2.0),  # resumed, told
    ("pause", 0.25),
    ("unpublish", 1.5),  # the wish and the targets of a track that is gone are dropped
    ("republish", 2.0),  # new consumers: decided on the next pass
    ("", 2.0),
]


def lockstep(script: list[tuple[str, float]]) -> tuple[OneToOne, list[str], list[str]]:
    new, old = OneToOne(skips=True), OneToOne(skips=False)
    new_calls, old_calls = counting(new.adaptation), counting(old.adaptation)
    for action, seconds in script:
        for call in (new, old):
            act(call, action)
        for _ in range(round(seconds / 0.25)):
            new.run(0.25)
            old.run(0.25)
            assert new.state() == old.state()
    return new, new_calls, old_calls


def test_a_call_without_estimates_decides_as_before_with_fewer_passes() -> None:
    new, new_calls, old_calls = lockstep(SCRIPT)
    assert len(new_calls) < len(old_calls) / 3  # most passes changed nothing
    told = [
        (m.track_id, m.paused, m.reason)
        for m in new.members["a"].sent
        if isinstance(m, TrackPaused)
    ]
    assert ("b-video", True, "subscriber") in told and ("b-video", True, "bandwidth") in told
    assert new.members["a"].consumers["b-video"].target_layer == 0


def test_a_steady_call_runs_no_allocation_pass() -> None:
    call = OneToOne(skips=True)
    calls = counting(call.adaptation)
    call.run(1.0)
    assert sorted(set(calls)) == ["s-a", "s-b"]  # the first passes decide
    calls.clear()
    call.run(10.0)
    assert calls == []
    act(call, "pause")
    call.run(0.25)
    assert calls == ["s-a"]  # a wish that changes something: at once
    calls.clear()
    call.members["a"].consumers["b-video"].target_layer = 0  # set by something else
    call.run(0.5)
    assert calls == ["s-a"]  # looked at again, and set back
    assert call.members["a"].consumers["b-video"].target_layer is None  # paused by its wish
    act(call, "clear")
    call.run(0.25)
    assert call.members["a"].consumers["b-video"].target_layer == 0


class SimulcastCall(Call):
    """``test_adaptive``'s simulcast call; the layers in ``stopped`` are not sent whatever
    dynacast says (the publisher's encoder dropped them)."""

    def __init__(self, *subscribers: str) -> None:
        super().__init__(*subscribers)
        self.stopped: set[int] = set()

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            for layer in self.stopped:
                self.sending[layer] = False
            super().run(STEP)


#: The layers subscriber b was given in the last ``simulcast_lockstep``.
seen_b: set[int | None] = set()


def simulcast_lockstep(
    script: list[tuple[Callable[[SimulcastCall], None], float]],
) -> tuple[SimulcastCall, list[str], list[str]]:
    """The simulcast call (publisher pub, subscribers a and b), once with each adaptation."""
    new, old = SimulcastCall("a", "b"), SimulcastCall("a", "b")
    old.adaptation = NeverSkips(cast(Room[Participant], old.room))
    new_calls, old_calls = counting(new.adaptation), counting(old.adaptation)
    seen_b.clear()
    for action, seconds in script:
        for call in (new, old):
            action(call)
        for _ in range(round(seconds / 0.25)):
            new.run(0.25)
            old.run(0.25)
            assert [m.sent for m in (new.publisher, *new.subs.values())] == [
                m.sent for m in (old.publisher, *old.subs.values())
            ]
            assert [(new.target(n), old.target(n)) for n in "ab"] == [
                (old.target(n), old.target(n)) for n in "ab"
            ]
            assert new.adaptation.targets == old.adaptation.targets
            assert new.sending == old.sending
            seen_b.add(new.target("b"))
    return new, new_calls, old_calls


def test_a_simulcast_track_without_estimates_decides_as_before() -> None:
    def wish(call: SimulcastCall) -> None:
        call.subs["a"].wishes = {"cam": TrackSetting("cam", max_width=320)}
        call.subs["a"].wishes_changed = True

    def stop_top(call: SimulcastCall) -> None:
        call.stopped = {2}  # the publisher's encoder drops its top layer

    def restart_top(call: SimulcastCall) -> None:
        call.stopped = set()

    def estimate(call: SimulcastCall) -> None:
        call.subs["b"].media.downlink.estimate_bps = 700_000

    def nothing(call: SimulcastCall) -> None:
        return None

    new, new_calls, old_calls = simulcast_lockstep(
        [
            (nothing, 3.0),
            (wish, 8.0),  # a on q, b on f; dynacast keeps h off after OFF_AFTER
            (stop_top, 3.0),
            (restart_top, 3.0),
            (estimate, 4.0),
        ]
    )
    assert len(new_calls) < len(old_calls)
    assert new.target("a") == 0
    assert 1 in seen_b and 2 in seen_b  # b moved off the stopped top layer and back
