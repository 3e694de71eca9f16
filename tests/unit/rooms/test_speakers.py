"""Active speaker: RFC 6464 levels read from real RTP bytes, the smoothed ranking, and the room's
``speakers`` messages (only on a change of order, at most 3 a second)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import Router
from zvonok.media.packets.rtp import RtpPacket
from zvonok.media.sdp.codecs import AUDIO_LEVEL_URI
from zvonok.media.sdp.negotiation import PublishedTrack
from zvonok.rooms.room import PublishedEntry, Room
from zvonok.rooms.speakers import (
    MAX_RATE,
    ActiveSpeakers,
    LoudnessMeter,
    SpeakerRanking,
    audio_level,
)
from zvonok.signaling.messages import ServerMessage, Speakers

EXT = 1  # Chrome's id for ssrc-audio-level


def rtp(seq: int, level: int | None, *, voice: bool = True, two_byte: bool = False) -> bytes:
    """An Opus packet carrying ``level`` (−dBov) in the audio-level extension, next to an
    abs-send-time element (id 2) as browsers send it."""
    extensions: list[tuple[int, bytes]] = [(2, b"\x01\x02\x03")]
    if level is not None:
        extensions.append((EXT, bytes([(0x80 if voice else 0) | level])))
    packet = RtpPacket(
        payload_type=111,
        sequence_number=seq & 0xFFFF,
        timestamp=seq * 960,
        ssrc=0x1234,
        extension_profile=0x1000 if two_byte else 0xBEDE,
        extensions=extensions,
        payload=b"\xfc" + bytes(40),
    )
    return bytes(packet)


def test_audio_level_reads_one_and_two_byte_forms() -> None:
    assert audio_level(rtp(1, 30), EXT) == (30, True)
    assert audio_level(rtp(1, 127, voice=False), EXT) == (127, False)
    assert audio_level(rtp(1, 0, two_byte=True), EXT) == (0, True)
    assert audio_level(rtp(1, None), EXT) is None
    assert audio_level(rtp(1, 30), 5) is None
    no_ext = bytes(RtpPacket(payload_type=111, sequence_number=1, payload=b"x"))
    assert audio_level(no_ext, EXT) is None
    assert audio_level(rtp(1, 30)[:14], EXT) is None  # a truncated header never raises


def test_meter_rises_with_loud_packets_and_fades_without_any() -> None:
    meter = LoudnessMeter()
    for _ in range(4):
        meter.window([20] * 12)
    loud = meter.score
    assert loud > 0.7
    assert meter.window([127] * 12) < loud  # silence (DTX comfort noise)
    for _ in range(20):
        meter.window([])
    assert meter.score == 0.0
    quiet = LoudnessMeter()
    for _ in range(10):
        quiet.window([70] * 12)  # background noise below the activity threshold
    assert quiet.score == 0.0


def test_ranking_is_loudest_first_and_forgets_sessions_that_left() -> None:
    ranking = SpeakerRanking()
    for _ in range(5):
        order = ranking.window({"a": [40] * 12, "b": [10] * 12, "c": [127] * 12})
    assert [key for key, _ in order] == ["b", "a"]
    assert ranking.window({"a": [40] * 12}) and set(ranking.meters) == {"a"}


@dataclass
class Member:
    session_id: SessionId
    user_id: UserId
    sent: list[ServerMessage] = field(default_factory=list)

    def send(self, message: ServerMessage) -> None:
        self.sent.append(message)

    def request_sync(self) -> None:
        return None


@dataclass
class AudioProducer:
    """The part of a producer ``ActiveSpeakers`` reads: its recent packets."""

    packets: list[bytes] = field(default_factory=list)
    closed: bool = False

    def close(self) -> None:
        self.closed = True


class Talk:
    """A room whose members publish audio; ``say(member, level)`` adds one window of packets."""

    def __init__(self, *names: str) -> None:
        self.room: Room[Member] = Room(
            RoomKey(RoomKind.GROUP, "1"), router=Router(), unsubscribe_tick=lambda: None
        )
        self.seq: dict[str, int] = {}
        for name in names:
            member = Member(SessionId(f"s-{name}"), UserId(name))
            self.room.participants[member.session_id] = member
            track = PublishedTrack(
                mid="0",
                kind="audio",
                ssrc=1,
                rtx_ssrc=None,
                codecs={},
                rtx={},
                extensions={AUDIO_LEVEL_URI: EXT},
                msid=None,
            )
            producer = cast(Producer, AudioProducer())
            self.room.published[f"t-{name}"] = PublishedEntry(f"t-{name}", producer, member, track)
            self.seq[name] = 65530  # wraps: sequence numbers are compared mod 2^16
        self.speakers = ActiveSpeakers(self.room, packets=self._packets)

    @staticmethod
    def _packets(entry: PublishedEntry[Member]) -> Sequence[bytes]:
        producer: Any = entry.producer
        return list(producer.packets[-64:])

    def say(self, name: str, level: int, count: int = 12) -> None:
        producer: Any = self.room.published[f"t-{name}"].producer
        for _ in range(count):
            self.seq[name] += 1
            producer.packets.append(rtp(self.seq[name], level))

    def member(self, name: str) -> Member:
        return self.room.participants[SessionId(f"s-{name}")]

    def told(self, name: str) -> list[list[str]]:
        return [
            [s.session_id for s in m.speakers] for m in self.member(name).sent
            if isinstance(m, Speakers)
        ]  # fmt: skip


def test_speakers_are_sent_on_a_change_of_order_only() -> None:
    talk = Talk("alice", "bob", "carol")
    now = 0.0
    for _ in range(4):
        talk.say("alice", 20)
        talk.say("bob", 127)
        talk.say("carol", 127)
        talk.speakers.tick(now)
        now += 0.25
    assert talk.told("bob") == [["s-alice"]]
    assert talk.told("alice") == talk.told("carol") == [["s-alice"]]  # the speaker is told too
    message = next(m for m in talk.member("bob").sent if isinstance(m, Speakers))
    assert message.speakers[0].user_id == "alice" and 0.3 < message.speakers[0].level <= 1
    # bob starts, louder: the order changes
    for _ in range(6):
        talk.say("alice", 30)
        talk.say("bob", 5)
        talk.speakers.tick(now)
        now += 0.25
    assert talk.told("carol")[-1] == ["s-bob", "s-alice"]
    # everybody stops (muted: no packets at all): an empty list, once
    for _ in range(12):
        talk.speakers.tick(now)
        now += 0.25
    assert talk.told("carol")[-1] == []
    assert talk.told("carol").count([]) == 1


def test_speakers_are_rate_limited_to_3_a_second() -> None:
    talk = Talk("alice", "bob")
    times = []
    now = 0.0
    for i in range(40):  # the loudest alternates every tick
        talk.say("alice", 10 if i % 2 else 60)
        talk.say("bob", 60 if i % 2 else 10)
        before = len(talk.told("alice"))
        talk.speakers.tick(now)
        if len(talk.told("alice")) > before:
            times.append(now)
        now += 0.1
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps and min(gaps) >= 1 / MAX_RATE - 1e-9


def test_operator_muted_and_departed_sessions_drop_out() -> None:
    talk = Talk("alice", "bob")
    now = 0.0
    for _ in range(4):
        talk.say("alice", 20)
        talk.say("bob", 25)
        talk.speakers.tick(now)
        now += 0.5
    assert talk.told("alice")[-1] == ["s-alice", "s-bob"]
    talk.room.muted.add("t-alice")
    for _ in range(8):
        talk.say("alice", 20)
        talk.say("bob", 25)
        talk.speakers.tick(now)
        now += 0.5
    assert talk.told("bob")[-1] == ["s-bob"]
    talk.room.published.pop("t-bob")
    talk.speakers.tick(now)
    assert talk.told("alice")[-1] == []


@pytest.mark.parametrize("level", [0, 64, 127])
def test_a_session_without_the_extension_is_never_listed(level: int) -> None:
    talk = Talk("alice")
    entry = talk.room.published["t-alice"]
    entry.track = PublishedTrack(
        mid="0", kind="audio", ssrc=1, rtx_ssrc=None, codecs={}, rtx={}, extensions={}, msid=None
    )
    for i in range(5):
        talk.say("alice", level)
        talk.speakers.tick(i * 0.5)
    assert talk.told("alice") == []


def test_a_session_that_joins_is_told_who_speaks() -> None:
    talk = Talk("alice", "bob")
    for i in range(4):
        talk.say("alice", 20)
        talk.speakers.tick(i * 0.5)
    late = Member(SessionId("s-late"), UserId("late"))
    talk.room.participants[late.session_id] = late
    talk.say("alice", 20)
    talk.speakers.tick(2.0)
    talk.speakers.tick(2.25)
    assert [[s.session_id for s in m.speakers] for m in late.sent if isinstance(m, Speakers)] == [
        ["s-alice"]
    ]
    assert len(talk.told("bob")) == 1  # the others are not told again
