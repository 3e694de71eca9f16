"""Media for aiortc test peers: a solid-colour video track, a tone, and received-track bookkeeping.

Owns ``ColourVideoTrack`` and ``ToneTrack`` (what an aiortc peer sends), ``frame_colour`` (the
centre colour of a decoded frame, BT.601 limited range, no numpy), ``dominant_tone_hz`` (which
palette tone a window of decoded audio is, by Goertzel filters, no numpy) and ``Receiver``: per
remote track, one consumer task counting decoded frames and sampling their colour or tone, and the
same
"one record per (transceiver, owner)" bookkeeping as ``pages/peer.js``, rendered as the report
JSON ``stats.PeerReport`` parses.

Imports aiortc/av and the harness's ``stats``; never zvonok.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

from .stats import COLOURS, TONES, nearest_colour

SAMPLE_RATE = 48000
AUDIO_PTIME = 0.02
MAX_FRAMES = 10_000_000  # bounds the consumer loops (a day of video)
TONE_WINDOW_S = 0.1  # whole periods of every tone (multiples of 110 Hz)
TONE_EVERY = 25  # audio frames between two measurements (~0.5 s; pure Python is not free)
TONE_PURITY = 0.6  # the share of the window's energy the dominant tone must hold
MIN_TONE_RMS = 100.0  # s16 units; quieter is silence


def rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return tuple(max(0, min(255, round(x))) for x in (y, u, v))  # type: ignore[return-value]


def yuv_to_rgb(y: float, u: float, v: float) -> tuple[int, int, int]:
    c, d, e = 1.164 * (y - 16), u - 128, v - 128
    rgb = (c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d)
    return tuple(max(0, min(255, round(x))) for x in rgb)  # type: ignore[return-value]


def _plane_mean(plane: Any, width: int, height: int) -> float:
    data = bytes(plane)
    stride = int(plane.line_size)
    x_step, y_step = max(1, width // 16), max(1, height // 16)
    total = count = 0
    for row in range(height // 4, 3 * height // 4, y_step):
        start = row * stride
        chunk = data[start + width // 4 : start + 3 * width // 4 : x_step]
        total += sum(chunk)
        count += len(chunk)
    return total / count if count else 0.0


def frame_colour(frame: VideoFrame) -> tuple[int, int, int]:
    """The mean RGB of the centre half of a decoded frame."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    w, h = frame.width, frame.height
    cw, ch = (w + 1) // 2, (h + 1) // 2
    y = _plane_mean(frame.planes[0], w, h)
    u = _plane_mean(frame.planes[1], cw, ch)
    v = _plane_mean(frame.planes[2], cw, ch)
    return yuv_to_rgb(y, u, v)


def goertzel_power(samples: Sequence[int], rate: float, hz: float) -> float:
    """The power of ``samples`` at ``hz`` (one Goertzel filter)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def dominant_tone_hz(samples: Sequence[int], rate: float) -> float | None:
    """The palette tone holding most of the window's energy, or None (silence, noise, a mix).

    For a pure sine over whole periods the Goertzel power at its frequency is ``n/2`` times the
    window's energy, so ``purity`` is ~1 for one tone and at most ~0.5 for an even mix of two.
    """
    n = len(samples)
    energy = float(sum(x * x for x in samples))
    if n == 0 or math.sqrt(energy / n) < MIN_TONE_RMS:
        return None
    hz, power = max(
        ((f, goertzel_power(samples, rate, f)) for f in TONES.values()), key=lambda fp: fp[1]
    )
    return hz if power / (n / 2 * energy) >= TONE_PURITY else None


def mono_s16(frame: AudioFrame, step: int = 2) -> array.array[int] | None:
    """The first channel of an s16/s16p frame, every ``step``-th sample (None for other formats)."""
    channels = len(frame.layout.channels)
    if frame.format.name == "s16":
        data = array.array("h", bytes(frame.planes[0])[: 2 * frame.samples * channels])
        return data[:: channels * step]
    if frame.format.name == "s16p":
        return array.array("h", bytes(frame.planes[0])[: 2 * frame.samples])[::step]
    return None


def _packets_received(receiver: Any) -> int | None:
    """Every RTP packet ``receiver`` counted, over all the SSRCs it saw. aiortc keeps statistics
    per SSRC, the RTX SSRC included, but its ``getStats`` gives every one of them the same id, so
    the report holds only the last: after a single retransmission or probe that is the RTX
    stream's count (1), which then stands still while the media SSRC's grows."""
    streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
    if streams is None:
        return None
    return sum(stream.packets_received for stream in streams.values()) if streams else None


class ColourVideoTrack(VideoStreamTrack):
    """320x240 frames of one solid palette colour at 30 fps."""

    def __init__(self, colour: str, width: int = 320, height: int = 240) -> None:
        super().__init__()
        if colour not in COLOURS:
            raise ValueError(f"unknown colour {colour!r}")
        self.colour = colour
        self.width, self.height = width, height
        self._yuv = rgb_to_yuv(COLOURS[colour])

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(self.width, self.height, "yuv420p")
        for plane, value in zip(frame.planes, self._yuv, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneTrack(MediaStreamTrack):
    """A sine tone (the colour's test frequency), 48 kHz mono, 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, colour: str = "red", amplitude: int = 8000) -> None:
        super().__init__()
        self.frequency = TONES.get(colour, 440.0)
        self.amplitude = amplitude
        self._start: float | None = None
        self._sample = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        samples = int(SAMPLE_RATE * AUDIO_PTIME)
        if self._start is None:
            self._start = time.time()
        else:
            self._sample += samples
            await asyncio.sleep(self._start + self._sample / SAMPLE_RATE - time.time())
        step = 2 * math.pi * self.frequency / SAMPLE_RATE
        data = array.array(
            "h", (int(self.amplitude * math.sin(step * (self._sample + i))) for i in range(samples))
        )
        frame = AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(data.tobytes())
        frame.pts = self._sample
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


@dataclass
class _Counter:
    """What the consumer task of one transceiver's track saw."""

    frames: int = 0
    last_at: float | None = None
    rgb: tuple[int, int, int] | None = None
    tone_hz: float | None = None
    window: array.array[int] = field(default_factory=lambda: array.array("h"))
    ended: bool = False

    def add_audio(self, frame: AudioFrame) -> None:
        """Collect a 0.1 s window every ``TONE_EVERY`` frames and measure its tone."""
        if not self.window and self.frames % TONE_EVERY != 0:
            return
        samples = mono_s16(frame)
        if samples is None:
            return
        self.window.extend(samples)
        rate = frame.sample_rate / 2
        if len(self.window) >= rate * TONE_WINDOW_S:
            self.tone_hz = dominant_tone_hz(self.window[: int(rate * TONE_WINDOW_S)], rate)
            self.window = array.array("h")


@dataclass
class _Record:
    id: int
    transceiver: Any
    kind: str
    mid: str | None
    track_id: str
    session_id: str | None
    user_id: str | None
    superseded: bool = False
    paused_seen: bool = False
    frozen: dict[str, Any] | None = None


@dataclass
class Receiver:
    """Remote-track bookkeeping of one RTCPeerConnection; owns one consumer task per track."""

    pc: RTCPeerConnection
    track_map: list[dict[str, Any]] = field(default_factory=list)
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: list[_Record] = field(default_factory=list)
    counters: dict[int, _Counter] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        counter = self.counters.setdefault(id(track), _Counter())
        task = asyncio.get_running_loop().create_task(self._consume(track, counter))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _consume(self, track: MediaStreamTrack, counter: _Counter) -> None:
        try:
            for _ in range(MAX_FRAMES):
                frame = await track.recv()
                counter.frames += 1
                counter.last_at = time.monotonic()
                if isinstance(frame, VideoFrame) and counter.frames % 3 == 1:
                    counter.rgb = frame_colour(frame)
                elif isinstance(frame, AudioFrame):
                    counter.add_audio(frame)
        except MediaStreamError:
            counter.ended = True

    def _owner(self, transceiver: Any) -> dict[str, Any]:
        for entry in self.track_map:
            if entry.get("mid") == transceiver.mid:
                return entry
        return {}

    def sync(self) -> None:
        """One record per (transceiver, owning session), as in peer.js."""
        for tr in self.pc.getTransceivers():
            if tr.mid is None or tr.receiver is None:
                continue
            latest = next(
                (r for r in reversed(self.records) if r.transceiver is tr and not r.superseded),
                None,
            )
            if tr.currentDirection not in ("recvonly", "sendrecv"):
                if latest is not None:
                    latest.paused_seen = True
                continue
            own = self._owner(tr)
            same = latest is not None and latest.session_id == own.get(
                "sessionId", latest.session_id
            )
            if latest is not None and not latest.paused_seen and same:
                continue
            if latest is not None:
                latest.superseded = True
            self.records.append(self._record(tr, own))

    def _record(self, tr: Any, own: dict[str, Any]) -> _Record:
        session = own.get("sessionId")
        user = own.get("userId") or (self.participants.get(session or "") or {}).get("userId")
        track = tr.receiver.track
        return _Record(len(self.records), tr, tr.kind, tr.mid, str(track.id), session, user)

    async def track_reports(self) -> list[dict[str, Any]]:
        self.sync()
        return [await self._track_report(r) for r in self.records]

    async def _track_report(self, r: _Record) -> dict[str, Any]:
        base = {
            "id": r.id,
            "kind": r.kind,
            "mid": r.mid,
            "trackId": r.track_id,
            "sessionId": r.session_id,
            "userId": r.user_id,
            "superseded": r.superseded,
        }
        if r.frozen is not None:
            return {**r.frozen, **base, "ended": True}
        track = r.transceiver.receiver.track
        counter = self.counters.get(id(track), _Counter())
        packets = _packets_received(r.transceiver.receiver)
        receiving = r.transceiver.currentDirection in ("recvonly", "sendrecv") and not r.paused_seen
        now = time.monotonic()
        out = {
            **base,
            "readyState": track.readyState,
            "direction": r.transceiver.currentDirection,
            "receiving": receiving,
            "ended": r.superseded or not receiving or counter.ended or track.readyState == "ended",
            "packetsReceived": packets,
            "framesDecoded": counter.frames if r.kind == "video" else None,
            "framesReceived": counter.frames,
            "lastPacketAge": None if counter.last_at is None else 1000 * (now - counter.last_at),
            "rgb": counter.rgb if r.kind == "video" else None,
            "colour": nearest_colour(counter.rgb) if counter.rgb and r.kind == "video" else None,
            "toneHz": counter.tone_hz if r.kind == "audio" else None,
        }
        if r.superseded or r.paused_seen:
            r.frozen = out
        return out

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
