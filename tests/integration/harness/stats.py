"""What a test peer reports, and the bounded waits every peer kind shares.

Owns the colour palette (the same table as ``pages/peer.js``), ``TrackReport`` / ``PeerReport``
(values parsed from the JSON a page or an aiortc peer produces; dicts stop here) and
``ReportPeer``, the base of ``ChromiumPeer``, ``FirefoxPeer`` and ``AiortcPeer``: its
``wait_*`` methods poll ``report()`` and, when a bound is reached, raise ``AssertionError`` with
the last report and the peer's console log.

"Media arrives" follows /work/shared/testing/real-clients.md: the remote track is live and
receiving, ``packetsReceived`` grows between two samples (and ``framesDecoded`` for video), the
last packet is under 2 s old, and the decoded picture is the sender's colour. Audio: packets
grow, the last packet is fresh, and (when a colour is asked for) the decoded sound's dominant
frequency is the sender's tone (``TONES``): browsers measure it with an ``AnalyserNode`` on the
remote track (peer.js), aiortc peers with a Goertzel filter on decoded frames (aiortc_media.py),
so echoed or misrouted audio fails like a wrong colour (``audio_energy`` is for information).

Imports only the standard library (no zvonok, no browser drivers).
"""

from __future__ import annotations

import abc
import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Named colours senders paint; receivers map what they decode to the nearest one.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
#: Test-tone frequency per colour (audio senders; the same table as ``pages/peer.js``). All are
#: multiples of 110 Hz, so a 0.1 s window holds whole periods of each.
TONES: dict[str, float] = {
    "red": 440.0,
    "green": 550.0,
    "blue": 660.0,
    "yellow": 770.0,
    "magenta": 880.0,
    "cyan": 990.0,
    "white": 1100.0,
    "black": 1210.0,
}
#: A measured frequency further than this from every tone is no tone.
TONE_TOLERANCE_HZ = 40.0
POLL_INTERVAL = 0.5
MIN_SAMPLE_GAP_MS = 300.0
MAX_PACKET_AGE_MS = 2000.0


def nearest_colour(rgb: tuple[int, int, int]) -> str:
    """The palette name closest to ``rgb`` (squared RGB distance)."""
    return min(
        COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], rgb, strict=True))
    )


def nearest_tone(hz: float | None) -> str | None:
    """The colour whose tone is within ``TONE_TOLERANCE_HZ`` of ``hz``, or None."""
    if hz is None:
        return None
    name = min(TONES, key=lambda n: abs(TONES[n] - hz))
    return name if abs(TONES[name] - hz) <= TONE_TOLERANCE_HZ else None


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"track report field {key!r} is not a number: {value!r}")
    return int(value)


def _opt_float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"track report field {key!r} is not a number: {value!r}")
    return float(value)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class TrackReport:
    """One remote track as a receiver saw it (one owner of one transceiver)."""

    id: int
    kind: str
    mid: str | None
    track_id: str | None
    user_id: str | None
    session_id: str | None
    ended: bool
    packets_received: int | None
    bytes_received: int | None
    frames_decoded: int | None
    last_packet_age: float | None
    audio_energy: float | None
    colour: str | None
    rgb: tuple[int, int, int] | None
    tone_hz: float | None = None
    tone: str | None = None

    @classmethod
    def parse(cls, data: object) -> TrackReport:
        if not isinstance(data, Mapping):
            raise ValueError(f"track report is not an object: {data!r}")
        kind = data.get("kind")
        if kind not in ("audio", "video"):
            raise ValueError(f"track report kind is not audio/video: {kind!r}")
        rgb = data.get("rgb")
        if rgb is not None and (not isinstance(rgb, list | tuple) or len(rgb) != 3):
            raise ValueError(f"track report rgb is not three numbers: {rgb!r}")
        return cls(
            id=_opt_int(data, "id") or 0,
            kind=str(kind),
            mid=_opt_str(data, "mid"),
            track_id=_opt_str(data, "trackId"),
            user_id=_opt_str(data, "userId"),
            session_id=_opt_str(data, "sessionId"),
            ended=bool(data.get("ended", False)),
            packets_received=_opt_int(data, "packetsReceived"),
            bytes_received=_opt_int(data, "bytesReceived"),
            frames_decoded=_opt_int(data, "framesDecoded"),
            last_packet_age=_opt_float(data, "lastPacketAge"),
            audio_energy=_opt_float(data, "totalAudioEnergy"),
            colour=_opt_str(data, "colour"),
            rgb=None if rgb is None else (int(rgb[0]), int(rgb[1]), int(rgb[2])),
            tone_hz=_opt_float(data, "toneHz"),
            tone=nearest_tone(_opt_float(data, "toneHz")),
        )

    def describe(self) -> str:
        return (
            f"{self.kind} mid={self.mid} from {self.user_id}/{self.session_id} ended={self.ended} "
            f"packets={self.packets_received} frames={self.frames_decoded} "
            f"age={self.last_packet_age} colour={self.colour} {self.rgb} "
            f"tone={self.tone} {self.tone_hz}"
        )


@dataclass(frozen=True, slots=True)
class PeerReport:
    """A whole report; ``raw`` keeps the JSON for diagnostics and ad-hoc assertions."""

    ts: float
    tracks: tuple[TrackReport, ...]
    participants: tuple[tuple[str, str], ...]
    connection_state: str | None
    raw: Mapping[str, Any]

    @classmethod
    def parse(cls, data: object) -> PeerReport:
        if not isinstance(data, Mapping):
            raise ValueError(f"peer report is not an object: {type(data).__name__}")
        ts = data.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise ValueError(f"peer report has no numeric ts: {ts!r}")
        tracks = data.get("tracks", [])
        people = data.get("participants", [])
        if not isinstance(tracks, list) or not isinstance(people, list):
            raise ValueError("peer report tracks/participants are not lists")
        participants = tuple(
            (str(p.get("sessionId")), str(p.get("userId"))) for p in people if isinstance(p, dict)
        )
        return cls(
            ts=float(ts),
            tracks=tuple(TrackReport.parse(t) for t in tracks),
            participants=participants,
            connection_state=_opt_str(data, "connectionState"),
            raw=data,
        )

    def tracks_from(
        self, user: str | None = None, session: str | None = None, kind: str | None = None
    ) -> list[TrackReport]:
        return [
            t
            for t in self.tracks
            if (user is None or t.user_id == user)
            and (session is None or t.session_id == session)
            and (kind is None or t.kind == kind)
        ]

    def track(self, track_id: int) -> TrackReport | None:
        return next((t for t in self.tracks if t.id == track_id), None)

    def messages(self, type_: str) -> int:
        counts = self.raw.get("messages") or {}
        return int(counts.get(type_, 0))

    def dump(self, limit: int = 8000) -> str:
        shown = {k: v for k, v in self.raw.items() if k != "log"}
        text = json.dumps(shown, indent=1, default=str)
        return text if len(text) <= limit else text[:limit] + "\n... (cut)"


def _grew(before: int | None, after: int | None) -> bool:
    return before is not None and after is not None and after > before


def track_problem(
    before: TrackReport | None, now: TrackReport, colour: str | None, tone: bool = False
) -> str | None:
    """Why ``now`` (compared with the earlier sample ``before``) is not live media, or None.

    ``colour`` is the sender's: a video track must show it; with ``tone=True`` an audio track
    must also sound its tone (``ReportPeer.wait_receiving`` asks for that whenever the receiver
    measures one: every receiver kind here does).
    """
    if now.ended:
        return "ended"
    if before is None:
        return "no earlier sample yet"
    if not _grew(before.packets_received, now.packets_received):
        return f"packetsReceived not growing ({before.packets_received} -> {now.packets_received})"
    if now.kind == "video" and not _grew(before.frames_decoded, now.frames_decoded):
        return f"framesDecoded not growing ({before.frames_decoded} -> {now.frames_decoded})"
    if now.last_packet_age is not None and now.last_packet_age > MAX_PACKET_AGE_MS:
        return f"last packet {now.last_packet_age:.0f} ms ago"
    if colour is not None and now.kind == "video" and now.colour != colour:
        return f"decoded colour {now.colour} {now.rgb}, expected {colour}"
    if tone and colour is not None and now.kind == "audio" and now.tone != colour:
        return f"decoded tone {now.tone} ({now.tone_hz} Hz), expected {colour} ({TONES[colour]} Hz)"
    return None


class ReportPeer(abc.ABC):
    """A call participant whose state is read through ``report()``; all waits are bounded."""

    name: str
    #: Whether this peer measures the tone of received audio (every kind here does: aiortc with a
    #: Goertzel filter, Chromium and Firefox with an ``AnalyserNode``, firefox.py says how).
    measures_tone: bool = True

    @abc.abstractmethod
    async def report(self) -> PeerReport:
        """A fresh report (for POSTing peers: the latest one received)."""

    @abc.abstractmethod
    def console(self) -> list[str]:
        """The peer's console/log lines, oldest first."""

    def failure(self, what: str, timeout: float, reason: str, last: PeerReport | None) -> str:
        lines = self.console()[-60:]
        dump = last.dump() if last is not None else "(no report)"
        return (
            f"{self.name}: {what} not reached within {timeout:.0f} s: {reason}\n"
            f"--- last report ---\n{dump}\n--- console (last {len(lines)}) ---\n" + "\n".join(lines)
        )

    async def wait_for(
        self,
        check: Callable[[PeerReport], str | None],
        what: str,
        timeout: float,  # noqa: ASYNC109
    ) -> PeerReport:
        """Poll until ``check`` returns None (it returns the reason it is not there yet)."""
        deadline = time.monotonic() + timeout
        last: PeerReport | None = None
        reason = "no report yet"
        for _ in range(int(timeout / POLL_INTERVAL) + 2):
            try:
                last = await asyncio.wait_for(self.report(), max(1.0, timeout))
                problem = check(last)
                if problem is None:
                    return last
                reason = problem
            except (TimeoutError, ValueError, RuntimeError) as exc:
                reason = f"report failed: {exc!r}"
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        raise AssertionError(self.failure(what, timeout, reason, last))

    async def wait_receiving(
        self,
        from_user: str | None = None,
        color: str | None = None,
        kind: str = "video",
        timeout: float = 20.0,  # noqa: ASYNC109
        from_session: str | None = None,
    ) -> TrackReport:
        """Until a live ``kind`` track from the user/session receives growing media of ``color``
        (video: the decoded picture's colour; audio: the decoded sound's tone)."""
        if color is not None and color not in COLOURS:
            raise ValueError(f"unknown colour {color!r}; use one of {sorted(COLOURS)}")
        who = from_session or from_user or "anyone"
        previous: list[PeerReport] = []
        found: list[TrackReport] = []
        last_reason = ["waiting for a newer sample"]

        def check(now: PeerReport) -> str | None:
            if previous and now.ts - previous[-1].ts < MIN_SAMPLE_GAP_MS:
                return last_reason[0]  # too close to the last sample: keep its reason
            before = previous[-1] if previous else None
            previous[:] = [now]
            live = [t for t in now.tracks_from(from_user, from_session, kind) if not t.ended]
            if not live:
                last_reason[0] = f"no live {kind} track from {who}"
                return last_reason[0]
            reasons = []
            for track in live:
                problem = track_problem(
                    before.track(track.id) if before else None, track, color, self.measures_tone
                )
                if problem is None:
                    found.append(track)
                    return None
                reasons.append(f"[{track.describe()}]: {problem}")
            last_reason[0] = "; ".join(reasons)
            return last_reason[0]

        await self.wait_for(check, f"{kind} from {who} ({color or 'any colour'})", timeout)
        return found[-1]

    async def wait_track_ended(
        self,
        from_user: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
        kind: str | None = None,
        from_session: str | None = None,
    ) -> None:
        """Until every track ever received from the user/session has ended (at least one seen)."""
        who = from_session or from_user or "anyone"

        def check(now: PeerReport) -> str | None:
            tracks = now.tracks_from(from_user, from_session, kind)
            if not tracks:
                return f"never received a track from {who}"
            live = [t.describe() for t in tracks if not t.ended]
            return f"still live: {live}" if live else None

        await self.wait_for(check, f"tracks from {who} ended", timeout)

    async def wait_participant(
        self,
        user: str,
        present: bool = True,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Until ``user`` is (or is no longer) in this peer's participant list."""

        def check(now: PeerReport) -> str | None:
            there = any(u == user for _, u in now.participants)
            return None if there == present else f"participants: {now.participants}"

        await self.wait_for(check, f"{user} {'present' if present else 'gone'}", timeout)

    async def wait_connected(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Until the peer connection state is ``connected``."""

        def check(now: PeerReport) -> str | None:
            state = now.connection_state
            return None if state == "connected" else f"connectionState {state}"

        await self.wait_for(check, "connected", timeout)

    async def wait_message(
        self,
        type_: str,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Until at least ``count`` server messages of ``type_`` arrived."""

        def check(now: PeerReport) -> str | None:
            got = now.messages(type_)
            return None if got >= count else f"{got} {type_!r} messages"

        await self.wait_for(check, f"{count} x {type_}", timeout)
