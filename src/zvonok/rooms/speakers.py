"""Active speaker: who speaks in a room, loudest first, from the RFC 6464 audio levels.

Owns ``audio_level`` (the client-to-mixer audio level header extension, RFC 6464 §3: one byte,
``V`` the voice-activity flag and ``level`` 0..127, the level in −dBov; 127 is silence; the RFC
8285 element is found by ``packets.rtp.read_extension``), ``LoudnessMeter`` (one session's
smoothed loudness), ``SpeakerRanking`` (every session's meter and the ordered list of speakers)
and ``ActiveSpeakers``, a room's detector: on every media housekeeping tick it reads the packets
each audio producer received since its last look (the producer's short audio history, from the
sequence number after the last one read to its newest: a track that received nothing costs one
attribute read, and no packet is read twice; ``read_levels``, compiled as
``_fastpath.audio_levels`` when the fast path is built), feeds their levels to the ranking, and
sends ``speakers`` to every participant when the ordered list of speaking sessions changed, at
most ``MAX_RATE`` times a second (docs/media.md, "Active speaker").
A session whose audio stops (muted, left, DTX silence) fades out of the list; an operator-muted
track does not count; a session that joins is sent the current list (when it names anyone).
Imports ``room``, ``mediaview`` and the wire vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic

from ..media.fastpath import native
from ..media.forwarding.layers import AUDIO_HISTORY_SIZE
from ..media.packets.rtp import read_extension
from ..media.sdp.codecs import AUDIO_LEVEL_URI
from ..signaling.messages import Speaker, Speakers
from .mediaview import newest_seq, packet_ring
from .room import M, PublishedEntry, Room

#: RFC 6464 §3: the level is 0..127 −dBov; 127 means silence (or muted).
SILENCE = 127
#: A packet louder than this (a level at or below it, −dBov) counts as sound.
ACTIVE_LEVEL = 50
#: Smoothing of the per-window score (exponential moving average weight of the new window).
SMOOTHING = 0.5
#: A session is listed while its smoothed score is at least this (0..1).
SPEAKING_SCORE = 0.15
#: ``speakers`` messages per second at most.
MAX_RATE = 3.0
#: Sessions named in one ``speakers`` message at most (loudest first).
MAX_LISTED = 16


def audio_level(packet: bytes | bytearray, ext_id: int) -> tuple[int, bool] | None:
    """The RFC 6464 ``(level, voice)`` of ``packet`` under extension id ``ext_id``, or ``None``
    when it carries none (or the header is malformed). ``level`` is 0 (loudest, 0 dBov) .. 127."""
    value = read_extension(packet, ext_id)
    if not value:
        return None
    return value[0] & 0x7F, bool(value[0] & 0x80)


def level_of(packet: bytes | bytearray, ext_id: int) -> int | None:
    """``audio_level(packet, ext_id)[0]`` (``None`` where that is ``None``), read directly when
    the level is where browsers put it: the first element of a one-byte header extension block
    (RFC 8285 §4.2) of a packet without CSRCs; any other layout goes through ``audio_level``."""
    if (
        len(packet) >= 20
        and packet[0] & 0x1F == 0x10  # X set, no CSRC
        and 1 <= ext_id <= 14
        and len(packet) >= 16 + 4 * (packet[14] << 8 | packet[15]) >= 20  # a non-empty block
        and packet[12] == 0xBE
        and packet[13] == 0xDE
        and packet[16] == ext_id << 4  # our id, one byte long
    ):
        return packet[17] & 0x7F
    level = audio_level(packet, ext_id)
    return None if level is None else level[0]


def read_levels(
    slots: list[bytes | None],
    newest: int,
    count: int,
    ext_id: int,
    packets: int,
    loud: int,
    loudness: float,
    slow: Callable[[bytes, int], int | None],
) -> tuple[int, int, float]:
    """A loudness window (``LoudnessMeter``'s ``packets``, ``loud``, ``loudness``) with the
    levels of the last ``count`` packets of an audio ring added: the packets with sequence
    numbers up to ``newest`` read in place (``PacketHistory.get``: a slot that holds another
    sequence number is skipped), oldest first, each level read as ``level_of`` reads it (the
    common layout directly, any other through ``slow``) and added as ``LoudnessMeter.add`` adds
    it. The pure-Python reference of ``_fastpath.audio_levels``, which the detector uses when the
    extension is built (tests/unit/rooms/test_speaker_levels.py holds them equal)."""
    direct = ext_id << 4 if 1 <= ext_id <= 14 else -1
    mask = len(slots) - 1
    for back in range(min(count, len(slots)) - 1, -1, -1):
        seq = (newest - back) & 0xFFFF
        packet = slots[seq & mask]
        if packet is None or len(packet) < 4 or (packet[2] << 8 | packet[3]) != seq:
            continue
        if (
            len(packet) >= 20
            and packet[16] == direct
            and packet[0] & 0x1F == 0x10
            and packet[12] == 0xBE
            and packet[13] == 0xDE
            and len(packet) >= 16 + 4 * (packet[14] << 8 | packet[15]) >= 20
        ):
            level = packet[17] & 0x7F
        else:
            found = slow(packet, ext_id)
            if found is None:
                continue
            level = found
        packets += 1
        if level <= ACTIVE_LEVEL:
            loud += 1
            loudness += (SILENCE - level) / SILENCE
    return packets, loud, loudness


#: The compiled ``read_levels`` when the fast path is built (and not built before it existed).
_read_levels: Callable[
    [list[bytes | None], int, int, int, int, int, float, Callable[[bytes, int], int | None]],
    tuple[int, int, float],
] = native.audio_levels if native is not None and hasattr(native, "audio_levels") else read_levels


@dataclass(slots=True)
class LoudnessMeter:
    """One session's smoothed loudness score (0..1), one window (tick) at a time.

    A window's score is the share of its packets that carry sound (level ≤ ``ACTIVE_LEVEL``)
    times their mean loudness ``(127 − level) / 127``; a window without packets scores 0. The
    score is smoothed with weight ``SMOOTHING`` for the new window."""

    score: float = 0.0
    #: The window being filled (``add``): packets, packets with sound, their loudness summed.
    packets: int = 0
    loud: int = 0
    loudness: float = 0.0
    #: The tick that last found this session with audio (``ActiveSpeakers``).
    stamp: int = 0

    def add(self, level: int) -> None:
        """One packet of the current window."""
        self.packets += 1
        if level <= ACTIVE_LEVEL:
            self.loud += 1
            self.loudness += (SILENCE - level) / SILENCE

    def close(self) -> float:
        """Score the window filled since the last ``close`` and start a new one."""
        loud = self.loud
        now = (loud / self.packets) * (self.loudness / loud) if loud else 0.0
        self.packets = self.loud = 0
        self.loudness = 0.0
        score = self.score + SMOOTHING * (now - self.score)
        self.score = score = 0.0 if score < 1e-4 else score
        return score

    def window(self, levels: Sequence[int]) -> float:
        """One whole window: the levels of its packets."""
        for level in levels:
            self.add(level)
        return self.close()


@dataclass(slots=True)
class SpeakerRanking:
    """Every session's meter, and who speaks now, loudest first."""

    meters: dict[str, LoudnessMeter] = field(default_factory=dict)

    def window(self, levels: dict[str, list[int]]) -> list[tuple[str, float]]:
        """One window: ``levels`` maps every session that has audio to the levels of the
        packets it sent in the window (empty: none). Sessions not in it are forgotten.
        Returns the speakers, loudest first (ties: by session id, so the order is stable)."""
        for key in [k for k in self.meters if k not in levels]:
            del self.meters[key]
        for key, values in levels.items():
            meter = self.meters.get(key)
            if meter is None:
                meter = self.meters[key] = LoudnessMeter()
            for level in values:
                meter.add(level)
        return self.close()

    def close(self) -> list[tuple[str, float]]:
        """Close every meter's window (filled with ``LoudnessMeter.add``); the speakers, loudest
        first (ties: by session id, so the order is stable)."""
        speaking = []
        for key, meter in self.meters.items():
            if meter.close() >= SPEAKING_SCORE:
                speaking.append((key, meter.score))
        if len(speaking) > 1:
            speaking.sort(key=_loudest_first)
        return speaking[:MAX_LISTED]


def _loudest_first(item: tuple[str, float]) -> tuple[float, str]:
    return -item[1], item[0]


class ActiveSpeakers(Generic[M]):
    """A room's active-speaker detector, driven by ``tick(now)``."""

    def __init__(self, room: Room[M]) -> None:
        self.room = room
        self.ranking = SpeakerRanking()
        #: track id -> the newest sequence number already read (None: nothing yet), for every
        #: audio track with levels.
        self._seen: dict[str, int | None] = {}
        self._ticks = 0
        #: The session ids of the last ``speakers`` sent, in order, and when.
        self.sent: tuple[str, ...] = ()
        self._sent_at = float("-inf")
        self.messages = 0
        #: The last ``speakers`` sent, and the sessions that have it.
        self._last: Speakers | None = None
        self._told: set[str] = set()

    def tick(self, now: float) -> None:
        """Read the new audio levels; say ``speakers`` if the ordered list changed (rate-capped)."""
        room = self.room
        if room.closed:
            return
        self._read()
        speaking = self.ranking.close()
        order = tuple([key for key, _ in speaking])
        if order == self.sent or now - self._sent_at < 1.0 / MAX_RATE:
            # A session that joined since the last message gets it (when it names anyone).
            last = self._last
            if last is not None and last.speakers:
                told = self._told
                for participant in list(room.participants.values()):
                    if participant.session_id not in told:
                        told.add(participant.session_id)
                        participant.send(last)
            return
        members = list(room.participants.values())
        self.sent, self._sent_at = order, now
        names: dict[str, str] = {p.session_id: p.user_id for p in members}
        message = Speakers(
            tuple(Speaker(k, names.get(k, ""), round(score, 3)) for k, score in speaking)
        )
        self.messages += 1
        self._last = message
        self._told = {p.session_id for p in members}
        for participant in members:
            participant.send(message)

    def _read(self) -> None:
        """Fill the meters' windows with the levels received since the last tick: one meter per
        session with an audio track that negotiated the extension (its tracks together; a
        session left without one is forgotten); an operator-muted track adds nothing."""
        self._ticks = stamp = self._ticks + 1
        meters = self.ranking.meters
        seen = self._seen
        room = self.room
        tracks = sessions = 0
        for entry in room.published.values():
            track = entry.track
            if track.kind != "audio" or entry.producer.closed:
                continue
            ext_id = track.extensions.get(AUDIO_LEVEL_URI)
            if ext_id is None:
                continue
            tracks += 1
            key = entry.publisher.session_id
            meter = meters.get(key)
            if meter is None:
                meter = meters[key] = LoudnessMeter()
            if meter.stamp != stamp:
                meter.stamp = stamp
                sessions += 1
            if entry.track_id in room.muted:
                seen.setdefault(entry.track_id, None)
                continue  # an operator muted it: forwarded to nobody, so not speaking
            self._read_track(entry, ext_id, meter)
        if len(seen) != tracks or len(meters) != sessions:
            self._forget(stamp)

    def _read_track(self, entry: PublishedEntry[M], ext_id: int, meter: LoudnessMeter) -> None:
        producer = entry.producer
        newest = newest_seq(producer)
        last = self._seen.get(entry.track_id)
        if newest is None or newest == last:
            self._seen[entry.track_id] = last
            return  # nothing new (muted, DTX silence): two reads
        if last is None:
            count = AUDIO_HISTORY_SIZE
        else:
            count = (newest - last) & 0xFFFF
            if count >= 0x8000:
                return  # behind what was read (RFC 3550 A.1 restart): read once it passes
        self._seen[entry.track_id] = newest
        ring = packet_ring(producer)
        if ring is None:
            return
        meter.packets, meter.loud, meter.loudness = _read_levels(
            ring.slots,
            newest,
            count,
            ext_id,
            meter.packets,
            meter.loud,
            meter.loudness,
            level_of,
        )

    def _forget(self, stamp: int) -> None:
        """Drop what is kept of tracks and sessions that no longer have audio with levels."""
        live = {
            entry.track_id
            for entry in self.room.published.values()
            if entry.track.kind == "audio"
            and not entry.producer.closed
            and AUDIO_LEVEL_URI in entry.track.extensions
        }
        for track_id in [t for t in self._seen if t not in live]:
            del self._seen[track_id]
        meters = self.ranking.meters
        for key in [k for k, meter in meters.items() if meter.stamp != stamp]:
            del meters[key]
