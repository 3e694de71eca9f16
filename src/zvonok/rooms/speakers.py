"""Active speaker: who speaks in a room, loudest first, from the RFC 6464 audio levels.

Owns ``audio_level`` (the client-to-mixer audio level header extension, RFC 6464 §3: one byte,
``V`` the voice-activity flag and ``level`` 0..127, the level in −dBov; 127 is silence; the RFC
8285 element is found by ``packets.rtp.read_extension``), ``LoudnessMeter`` (one session's
smoothed loudness), ``SpeakerRanking`` (every session's meter and the ordered list of speakers)
and ``ActiveSpeakers``, a room's detector: on every media housekeeping tick it reads the packets
each audio producer received since its last look (the producer's short audio history), feeds
their levels to the ranking, and sends ``speakers`` to every participant when the ordered list of
speaking sessions changed, at most ``MAX_RATE`` times a second (docs/media.md, "Active speaker").
A session whose audio stops (muted, left, DTX silence) fades out of the list; an operator-muted
track does not count; a session that joins is sent the current list (when it names anyone).
Imports ``room``, ``mediaview`` and the wire vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic

from ..media.packets.rtp import read_extension, rtp_seq, seq_newer
from ..media.sdp.codecs import AUDIO_LEVEL_URI
from ..signaling.messages import Speaker, Speakers
from .mediaview import recent_packets
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


@dataclass(slots=True)
class LoudnessMeter:
    """One session's smoothed loudness score (0..1), one window (tick) at a time.

    A window's score is the share of its packets that carry sound (level ≤ ``ACTIVE_LEVEL``)
    times their mean loudness ``(127 − level) / 127``; a window without packets scores 0. The
    score is smoothed with weight ``SMOOTHING`` for the new window."""

    score: float = 0.0

    def window(self, levels: Sequence[int]) -> float:
        if levels:
            loud = [(SILENCE - level) / SILENCE for level in levels if level <= ACTIVE_LEVEL]
            now = (len(loud) / len(levels)) * (sum(loud) / len(loud)) if loud else 0.0
        else:
            now = 0.0
        self.score += SMOOTHING * (now - self.score)
        if self.score < 1e-4:
            self.score = 0.0
        return self.score


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
            self.meters.setdefault(key, LoudnessMeter()).window(values)
        speaking = [(k, m.score) for k, m in self.meters.items() if m.score >= SPEAKING_SCORE]
        speaking.sort(key=lambda item: (-item[1], item[0]))
        return speaking[:MAX_LISTED]


def _recent(entry: PublishedEntry[M]) -> Sequence[bytes]:
    # The producer's audio history (media.forwarding: the last 64 packets of an audio track).
    return recent_packets(entry.producer)


class ActiveSpeakers(Generic[M]):
    """A room's active-speaker detector, driven by ``tick(now)``."""

    def __init__(
        self,
        room: Room[M],
        *,
        packets: Callable[[PublishedEntry[M]], Sequence[bytes]] = _recent,
    ) -> None:
        self.room = room
        self.ranking = SpeakerRanking()
        self._packets = packets
        #: track id -> the newest sequence number already read.
        self._seen: dict[str, int] = {}
        #: The session ids of the last ``speakers`` sent, in order, and when.
        self.sent: tuple[str, ...] = ()
        self._sent_at = float("-inf")
        self.messages = 0
        #: The last ``speakers`` sent, and the sessions that have it.
        self._last: Speakers | None = None
        self._told: set[str] = set()

    def tick(self, now: float) -> None:
        """Read the new audio levels; say ``speakers`` if the ordered list changed (rate-capped)."""
        if self.room.closed:
            return
        speaking = self.ranking.window(self._levels())
        order = tuple(key for key, _ in speaking)
        members = list(self.room.participants.values())
        if order == self.sent or now - self._sent_at < 1.0 / MAX_RATE:
            # A session that joined since the last message gets it (when it names anyone).
            if self._last is not None and self._last.speakers:
                for participant in members:
                    if participant.session_id not in self._told:
                        self._told.add(participant.session_id)
                        participant.send(self._last)
            return
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

    def _levels(self) -> dict[str, list[int]]:
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
                continue  # an operator muted it: forwarded to nobody, so not speaking
            session.extend(self._new_levels(entry, ext_id))
        for track_id in [t for t in self._seen if t not in live]:
            del self._seen[track_id]
        return levels

    def _new_levels(self, entry: PublishedEntry[M], ext_id: int) -> Iterable[int]:
        last = self._seen.get(entry.track_id)
        newest = last
        out: list[int] = []
        for packet in self._packets(entry):
            if len(packet) < 12:
                continue
            seq = rtp_seq(packet)
            if last is not None and not seq_newer(seq, last):
                continue
            if newest is None or seq_newer(seq, newest):
                newest = seq
            level = audio_level(packet, ext_id)
            if level is not None:
                out.append(level[0])
        if newest is not None:
            self._seen[entry.track_id] = newest
        return out
