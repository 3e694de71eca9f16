"""The media the generator replays: VP8 640x360@30 ~700 kbit/s and Opus 20 ms, encoded once.

Owns ``Clip`` (RTP payloads ready to send: per video frame its RFC 7741 packets, per audio frame
one Opus packet) and ``load_clip`` (encode with PyAV once, cache the result on disk with
``marshal``). Only the first video frame is a keyframe: a publisher answers PLI/FIR by restarting
the loop there. Imports PyAV lazily (only when the cache is cold); nothing from the server.
"""

from __future__ import annotations

import array
import marshal
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

WIDTH, HEIGHT, FPS = 640, 360, 30
VIDEO_BITRATE = 700_000
ENCODER_BITRATE = 900_000  # libvpx undershoots on this clip; the result averages ~700 kbit/s
AUDIO_BITRATE = 32_000
SAMPLE_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms
CLIP_SECONDS = 4
MAX_PAYLOAD = 1150  # RTP payload bytes per video packet, descriptor included
_CACHE_VERSION = 1


@dataclass(frozen=True)
class Clip:
    """Pre-packetized payloads; ``video[i]`` are the packets of frame ``i`` (frame 0: keyframe)."""

    video: list[list[bytes]]
    audio: list[bytes]

    @property
    def video_bitrate(self) -> float:
        """Average bits per second of the video payloads."""
        total = sum(len(p) for frame in self.video for p in frame)
        return total * 8 * FPS / max(1, len(self.video))


def _cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "zvonok-bench" / f"clip-v{_CACHE_VERSION}.marshal"


def load_clip() -> Clip:
    """The cached clip, encoding it first (a few seconds of CPU) when there is none."""
    path = _cache_path()
    try:
        video, audio = marshal.loads(path.read_bytes())
        return Clip(video, audio)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    clip = Clip(_encode_video(), _encode_audio())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(marshal.dumps((clip.video, clip.audio)))
    tmp.replace(path)
    return clip


def vp8_packets(frame: bytes) -> list[bytes]:
    """RFC 7741 packetization: a one-byte descriptor (S set on the first packet, PID 0)."""
    chunk = MAX_PAYLOAD - 1
    return [
        bytes([0x10 if offset == 0 else 0x00]) + frame[offset : offset + chunk]
        for offset in range(0, len(frame), chunk)
    ]


def _texture(seed: int) -> bytes:
    """A deterministic noisy luma plane with some structure (so the encoder spends bits)."""
    state = seed or 1
    row = bytearray(WIDTH * 2)
    for i in range(len(row)):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        row[i] = 40 + ((state >> 16) % 24) + (i % 127)
    return bytes(row)


def _encode_video() -> list[list[bytes]]:
    import av

    codec: Any = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = Fraction(1, FPS)
    codec.framerate = Fraction(FPS, 1)
    codec.bit_rate = ENCODER_BITRATE
    codec.gop_size = 100_000
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "max-intra-rate": "900",
    }
    row = _texture(7)
    chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
    frames: list[list[bytes]] = []
    for index in range(FPS * CLIP_SECONDS):
        shift = (index * 6) % WIDTH
        luma = b"".join(
            row[(y * 3 + shift) % WIDTH : (y * 3 + shift) % WIDTH + WIDTH] for y in range(HEIGHT)
        )
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(luma)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = index
        for packet in codec.encode(frame):
            frames.append(vp8_packets(bytes(packet)))
    for packet in codec.encode(None):
        frames.append(vp8_packets(bytes(packet)))
    return frames


def _encode_audio() -> list[bytes]:
    import av

    codec: Any = av.CodecContext.create("libopus", "w")
    codec.sample_rate = SAMPLE_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = AUDIO_BITRATE
    out: list[bytes] = []
    count = CLIP_SECONDS * SAMPLE_RATE // AUDIO_SAMPLES
    for index in range(count):
        base = index * AUDIO_SAMPLES
        samples = array.array(
            "h",
            (
                int(8000 * math.sin(2 * math.pi * 440 * (base + i) / SAMPLE_RATE))
                for i in range(AUDIO_SAMPLES)
            ),
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = SAMPLE_RATE
        frame.pts = base
        out.extend(bytes(p) for p in codec.encode(frame))
    return out
