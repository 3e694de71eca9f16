"""Active speaker: RFC 6464 levels read from real RTP bytes, the smoothed ranking, and the room's
``speakers`` messages (only on a change of order, at most 3 a second)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import CodecInfo, Router
from zvonok.media.packets.rtp import RtpPacket, rtp_seq, seq_newer
from zvonok.media.sdp.codecs import AUDIO_LEVEL_URI
from zvonok.media.sdp.negotiation import PublishedTrack
from zvonok.rooms.room import PublishedEntry, Room
from zvonok.rooms.speakers import (
    MAX_RATE,
    ActiveSpeakers,
    LoudnessMeter,
    SpeakerRanking,
    audio_level,
    level_of,
)
from zvonok.signaling.messages import ServerMessage, Speakers

from ..media.forwarding_fakes import FakeSink

EXT = 1  # Chrome's id for ssrc-audio-level
OPUS = {111: CodecInfo("opus", 48000)}


def rtp(
    seq: int, level: int | None, *, voice: bool = True, two_byte: bool = False, first: bool = False
) -> bytes:
    """An Opus packet carrying ``level`` (−dBov) in the audio-level extension, next to an
    abs-send-time element (id 2) as browsers send it (``first``: the level before it)."""
    extensions: list[tuple[int, bytes]] = [(2, b"\x01\x02\x03")]
    if level is not None:
        extensions.insert(0 if first else 1, (EXT, bytes([(0x80 if voice else 0) | level])))
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


class Talk:
    """A room whose members publish audio (real producers of the room's router, fed real RTP);
    ``say(member, level)`` adds one window of packets."""

    def __init__(self, *names: str) -> None:
        self.router = Router()
        self.room: Room[Member] = Room(
            RoomKey(RoomKind.GROUP, "1"), router=self.router, unsubscribe_tick=lambda: None
        )
        self.seq: dict[str, int] = {}
        for n, name in enumerate(names):
            member = Member(SessionId(f"s-{name}"), UserId(name))
            self.room.participants[member.session_id] = member
            self.publish(name, member, ssrc=0x1234 + n)
            self.seq[name] = 65530  # wraps: sequence numbers are compared mod 2^16
        self.speakers = ActiveSpeakers(self.room)

    def publish(self, name: str, member: Member, *, ssrc: int, track_id: str = "") -> Producer:
        track_id = track_id or f"t-{name}"
        track = PublishedTrack(
            mid="0",
            kind="audio",
            ssrc=ssrc,
            rtx_ssrc=None,
            codecs={},
            rtx={},
            extensions={AUDIO_LEVEL_URI: EXT},
            msid=None,
        )
        producer = self.router.create_producer(
            producer_id=track_id,
            sink=FakeSink(),
            kind="audio",
            codecs=OPUS,
            ssrc=ssrc,
            rtx_ssrc=None,
            rtx_payload_types={},
        )
        self.room.published[track_id] = PublishedEntry(track_id, producer, member, track)
        return producer

    def say(self, name: str, level: int, count: int = 12) -> None:
        producer = self.room.published[f"t-{name}"].producer
        for _ in range(count):
            self.seq[name] += 1
            producer.receive_rtp(rtp(self.seq[name], level))

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


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=12, max_size=40), st.integers(1, 16))
def test_level_of_reads_what_audio_level_reads(data: bytes, ext_id: int) -> None:
    for packet in (data, bytes([0x90 | (data[0] & 0x60)]) + data[1:12] + b"\xbe\xde" + data[14:]):
        level = audio_level(packet, ext_id)
        assert level_of(packet, ext_id) == (None if level is None else level[0])


def test_level_of_takes_any_layout_the_slow_way() -> None:
    first = rtp(1, 30)  # the level after abs-send-time: not the first element
    assert level_of(first, EXT) == 30
    leading = bytes(
        RtpPacket(
            payload_type=111,
            sequence_number=1,
            extension_profile=0xBEDE,
            extensions=[(EXT, bytes([0x80 | 42])), (2, b"\x01\x02\x03")],
            payload=b"x",
        )
    )
    assert leading[16] == EXT << 4 and level_of(leading, EXT) == 42  # the direct read
    assert level_of(rtp(1, 7, two_byte=True), EXT) == 7
    csrc = bytearray(leading)
    csrc[0] |= 1  # one CSRC: the block starts 4 bytes later
    assert level_of(bytes(csrc[:12]) + b"\0\0\0\x09" + bytes(csrc[12:]), EXT) == 42


class OldReader:
    """The detector's reading before it read only the new packets (kept here as the reference):
    the last 64 packets of each track every tick, those newer than the newest already read."""

    def __init__(self, room: Room[Member]) -> None:
        self.room = room
        self.seen: dict[str, int] = {}

    def levels(self) -> dict[str, list[int]]:
        levels: dict[str, list[int]] = {}
        live: set[str] = set()
        for entry in list(self.room.published.values()):
            if entry.track.kind != "audio" or entry.producer.closed:
                continue
            ext_id = entry.track.extensions.get(AUDIO_LEVEL_URI)
            if ext_id is None:
                continue
            live.add(entry.track_id)
            session = levels.setdefault(entry.publisher.session_id, [])
            if entry.track_id in self.room.muted:
                continue
            last = self.seen.get(entry.track_id)
            newest = last
            for packet in entry.producer.recent_packets():
                seq = rtp_seq(packet)
                if last is not None and not seq_newer(seq, last):
                    continue
                if newest is None or seq_newer(seq, newest):
                    newest = seq
                level = audio_level(packet, ext_id)
                if level is not None:
                    session.append(level[0])
            if newest is not None:
                self.seen[entry.track_id] = newest
        for track_id in [t for t in self.seen if t not in live]:
            del self.seen[track_id]
        return levels


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 90),  # packets this tick
                st.integers(0, 127),  # their level
                st.integers(0, 6),  # a packet of the tick to hold back one tick (0: none)
                st.booleans(),  # muted by an operator this tick
            ),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=25,
    )
)
def test_reading_the_new_packets_scores_as_reading_the_last_64(
    ticks: list[list[tuple[int, int, int, bool]]],
) -> None:
    """Whatever arrives (more than the 64 kept between two ticks, late packets, none, a track
    muted for a while, a second track of one session, a track that goes away), the detector
    scores every session exactly as the reading it replaced."""
    talk = Talk("alice", "bob")
    second: Producer | None = talk.publish("bob2", talk.member("bob"), ssrc=0x9999)
    talk.seq["bob2"] = 100
    reference = SpeakerRanking()
    old = OldReader(talk.room)
    late: dict[str, bytes] = {}
    names = ["alice", "bob", "bob2"]
    for i, tick in enumerate(ticks):
        if i == len(ticks) // 2 and second is not None:
            talk.room.published.pop("t-bob2")
            second.close()
            second = None
        for name, (count, level, hold, muted) in zip(names, tick, strict=True):
            track = f"t-{name}"
            if track not in talk.room.published:
                continue
            producer = talk.room.published[track].producer
            if name in late:
                producer.receive_rtp(late.pop(name))
            for k in range(count):
                talk.seq[name] += 1
                value = None if k % 7 == 6 else (level + k) % 128  # some without a level
                packet = rtp(talk.seq[name], value, first=k % 3 > 0)
                if k + 1 == hold:
                    late[name] = packet
                else:
                    producer.receive_rtp(packet)
            if muted:
                talk.room.muted.add(track)
            else:
                talk.room.muted.discard(track)
        expected = reference.window(old.levels())
        talk.speakers._read()  # the tick's reading and ranking, without the messages
        assert talk.speakers.ranking.close() == expected
        assert {k: m.score for k, m in talk.speakers.ranking.meters.items()} == {
            k: m.score for k, m in reference.meters.items()
        }
