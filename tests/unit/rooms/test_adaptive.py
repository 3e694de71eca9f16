"""A room's adaptive media on real media objects: a 3-layer simulcast producer fed RTP with rid
extensions, real consumers switching at keyframes, and subscribers whose downlink estimates and
wishes differ. The subscribers' signaling side is a small stand-in (what ``RoomAdaptation``
reads of a ``Participant``); the downlink estimate is the ``MediaSession.downlink`` surface the
media layer exposes (``estimate_bps``)."""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import Any, cast

from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.forwarding.bwe import Usage
from zvonok.media.forwarding.consumer import Consumer
from zvonok.media.forwarding.endpoint import MediaEndpoint
from zvonok.media.forwarding.router import ConsumerParams, ProducerParams, Router
from zvonok.media.forwarding.types import MID_URI, RID_URI
from zvonok.media.sdp.negotiation import PublishedTrack
from zvonok.rooms.adaptive import ALLOCATE_EVERY, RoomAdaptation
from zvonok.rooms.allocation import OFF_AFTER, PauseReason
from zvonok.rooms.participant import Participant
from zvonok.rooms.room import PublishedEntry, Room
from zvonok.signaling.messages import (
    PublishLayers,
    ServerMessage,
    TrackPaused,
    TrackSetting,
)

from ..media.forwarding_fakes import VP8, VP8_DELTA, FakeClock, FakeSink, rtp

RIDS = ("q", "h", "f")
RID_ID, MID_ID = 10, 4
SSRCS = (0x5100, 0x5200, 0x5300)
#: A libvpx 320x180 keyframe's first bytes, and its twins at 640x360 and 1280x720.
VP8_320 = bytes.fromhex("90808228f04e009d012a4001b400390900031c2216162266")
KEYFRAMES = (
    VP8_320,
    VP8_320[:10] + struct.pack("<HH", 640, 360) + VP8_320[14:],
    VP8_320[:10] + struct.pack("<HH", 1280, 720) + VP8_320[14:],
)
#: Payload bytes per packet at 20 packets/s: about 150 kbit/s, 500 kbit/s and 1.5 Mbit/s.
SIZES = (900, 3100, 9350)
STEP = 0.05


@dataclass
class Estimator:
    acked_bps: int | None = None
    usage: Usage = Usage.NORMAL


@dataclass
class Downlink:
    """``MediaSession.downlink`` as the rooms layer reads it."""

    estimate_bps: int | None = None
    loss: float = 0.0
    estimator: Estimator = field(default_factory=Estimator)


@dataclass
class Media:
    downlink: Downlink = field(default_factory=Downlink)


@dataclass
class Negotiator:
    """The ``SessionNegotiator`` calls dynacast makes: which layers our descriptions mark ``~``."""

    paused: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def pause_layers(self, mid: str, rids: frozenset[str] | None) -> bool:
        changed = self.paused.get(mid) != rids
        self.paused[mid] = rids
        return changed


@dataclass
class Member:
    """What ``RoomAdaptation`` reads and writes of a ``Participant``."""

    session_id: SessionId
    user_id: UserId
    consumers: dict[str, Consumer] = field(default_factory=dict)
    media: Media = field(default_factory=Media)
    wishes: dict[str, TrackSetting] = field(default_factory=dict)
    wishes_changed: bool = False
    held: dict[str, PauseReason] = field(default_factory=dict)
    bandwidth_pauses: int = 0
    closed: bool = False
    sent: list[ServerMessage] = field(default_factory=list)
    log: Any = field(default_factory=lambda: logging.getLogger("test.adaptive"))
    negotiator: Negotiator = field(default_factory=Negotiator)

    def send(self, message: ServerMessage) -> None:
        self.sent.append(message)

    def request_sync(self) -> None:
        return None

    def paused_told(self) -> list[tuple[bool, str]]:
        return [(m.paused, m.reason) for m in self.sent if isinstance(m, TrackPaused)]

    def layers_told(self) -> list[list[bool]]:
        return [[x.active for x in m.layers] for m in self.sent if isinstance(m, PublishLayers)]


class Call:
    """One simulcast publisher and subscribers in a room, on a fake clock."""

    def __init__(self, *subscribers: str) -> None:
        self.clock = FakeClock()
        self.router = Router(clock=self.clock)
        self.room: Room[Member] = Room(
            RoomKey(RoomKind.GROUP, "1"), router=self.router, unsubscribe_tick=lambda: None
        )
        self.publisher = self.member("pub")
        extensions = {RID_URI: RID_ID, MID_URI: MID_ID}
        self.producer = self.router.produce(
            ProducerParams(
                producer_id="cam",
                kind="video",
                codecs=VP8,
                ssrc=None,
                rtx_ssrc=None,
                rtx_payload_types={},
                mid="1",
                rids=RIDS,
                extensions=extensions,
            ),
            sink=FakeSink(),
        )
        self.endpoint = MediaEndpoint(clock=self.clock)
        self.endpoint.add_producer(self.producer)
        track = PublishedTrack(
            mid="1", kind="video", ssrc=None, rtx_ssrc=None, codecs={}, rtx={},
            extensions=extensions, msid=None, rids=RIDS,
        )  # fmt: skip
        self.room.published["cam"] = PublishedEntry("cam", self.producer, self.publisher, track)
        self.subs = {name: self.member(name) for name in subscribers}
        for n, sub in enumerate(self.subs.values()):
            sub.consumers["cam"] = self.router.consume(
                self.producer,
                ConsumerParams(
                    consumer_id=f"{sub.session_id}/cam",
                    ssrc=0x7000 + n,
                    rtx_ssrc=None,
                    payload_types={97: 96},
                    rtx_payload_types={},
                    ext_id_map={},
                    cname="x",
                ),
                sink=FakeSink(),
            )
        self.adaptation = RoomAdaptation(cast(Room[Participant], self.room))
        self.seqs = [100, 2000, 30000]
        self.sending = [True, True, True]
        self.steps = 0

    def member(self, name: str) -> Member:
        member = Member(SessionId(f"s-{name}"), UserId(name))
        self.room.participants[member.session_id] = member
        return member

    def run(self, seconds: float) -> None:
        """Media for ``seconds``: each sending layer 20 packets/s, a keyframe every second; the
        media tick and the room's adaptation every 0.25 s; the publisher obeys publish-layers."""
        for _ in range(round(seconds / STEP)):
            self.clock.now += STEP
            for layer in range(3):
                if not self.sending[layer]:
                    continue
                payload = self.payload(layer, self.steps)
                ext = [(MID_ID, b"1"), (RID_ID, RIDS[layer].encode())]
                ts = 90_000 * self.steps // 20
                self.endpoint.on_rtp(
                    rtp(self.seqs[layer], ts, ssrc=SSRCS[layer], payload=payload, ext=ext)
                )
                self.seqs[layer] += 1
            self.steps += 1
            if self.steps % 5 == 0:
                self.router.tick(self.clock.now)
                self.adaptation.tick(self.clock.now)
                told = self.publisher.layers_told()
                if told:
                    self.sending = told[-1]

    def payload(self, layer: int, step: int) -> bytes:
        """The VP8 payload ``layer`` sends at ``step``: a keyframe every 20 steps."""
        key = step % 20 == 0
        return (KEYFRAMES[layer] if key else VP8_DELTA).ljust(SIZES[layer], b"\0")

    def target(self, name: str) -> int | None:
        return self.subs[name].consumers["cam"].target_layer


def test_each_subscriber_gets_what_its_downlink_carries_and_a_weak_one_is_told() -> None:
    call = Call("wide", "narrow", "starved")
    call.subs["narrow"].media.downlink.estimate_bps = 300_000
    call.subs["starved"].media.downlink.estimate_bps = 64_000
    call.run(2.0)
    assert [call.target(n) for n in ("wide", "narrow", "starved")] == [2, 0, None]
    assert call.subs["starved"].paused_told() == [(True, "bandwidth")]
    assert call.subs["wide"].paused_told() == call.subs["narrow"].paused_told() == []
    assert call.subs["starved"].bandwidth_pauses == 1
    assert call.subs["wide"].consumers["cam"].current_layer == 2
    assert call.subs["narrow"].consumers["cam"].current_layer == 0
    assert call.subs["starved"].consumers["cam"].current_layer is None
    # dynacast: nobody gets "h" for 5 s: the publisher is told to stop it
    call.run(OFF_AFTER + 1)
    assert call.publisher.layers_told() == [[True, False, True]]
    # and our next descriptions mark "h" paused, so a re-offer does not turn it back on
    assert call.publisher.negotiator.paused == {"1": frozenset({"h"})}
    # the starved one's downlink recovers to 700 kbit/s: after the 2 s hold it resumes on "h",
    # which the publisher is told to send again at once
    call.subs["starved"].media.downlink.estimate_bps = 700_000
    call.run(1.0)
    assert call.target("starved") is None
    call.run(2.0)
    assert call.target("starved") == 1
    assert call.subs["starved"].paused_told() == [(True, "bandwidth"), (False, "bandwidth")]
    assert call.publisher.layers_told()[-1] == [True, True, True]
    assert call.publisher.negotiator.paused == {"1": frozenset()}
    call.run(2.0)
    assert call.subs["starved"].consumers["cam"].current_layer == 1


def test_an_estimate_drop_moves_down_at_once() -> None:
    call = Call("sub")
    call.run(1.5)
    assert call.target("sub") == 2
    call.subs["sub"].media.downlink.estimate_bps = 400_000
    call.run(0.25)  # the next tick, not the next allocation pass
    assert call.target("sub") == 0


def test_wishes_limit_the_layer_and_pause_the_track() -> None:
    call = Call("sub")
    call.run(1.5)
    sub = call.subs["sub"]
    sub.wishes = {"cam": TrackSetting("cam", max_width=640)}
    sub.wishes_changed = True
    call.run(0.25)
    assert call.target("sub") == 1
    sub.wishes = {"cam": TrackSetting("cam", paused=True)}
    sub.wishes_changed = True
    call.run(0.25)
    assert call.target("sub") is None
    assert sub.paused_told() == [(True, "subscriber")]
    sub.wishes = {}
    sub.wishes_changed = True
    call.run(ALLOCATE_EVERY)
    assert call.target("sub") == 2
    assert sub.paused_told() == [(True, "subscriber"), (False, "subscriber")]


def test_a_muted_track_and_a_departed_subscriber_are_left_alone() -> None:
    call = Call("a", "b")
    call.run(1.0)
    call.room.muted.add("cam")
    call.subs["a"].media.downlink.estimate_bps = 10_000
    call.run(1.0)
    assert call.subs["a"].paused_told() == []  # moderation owns a muted track
    del call.room.participants[call.subs["b"].session_id]
    call.run(1.0)
    assert set(call.adaptation.targets.get("cam", {})) <= {"s-a", "s-b"}
