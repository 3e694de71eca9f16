"""CPU µs per housekeeping tick of 1:1 rooms, in-process: real Router, producers, consumers
and RoomAdaptation (active speakers, allocation, dynacast); the members are small stand-ins
(what RoomAdaptation reads of a Participant), the transports FakeSinks (RTCP built, not sent).
Each room: two members, each publishing Opus (audio level, 50 packets/s) and VP8 (72 packets/s,
~2.4 per frame at 30 fps) and receiving the other's two tracks. Per 0.25 s tick of simulated
time the packets are fed through the producers' receive path (not timed), then Router.tick and
RoomAdaptation.tick are timed (process_time_ns). Usage: tick_micro.py [ROOMS] [SECONDS] [RUNS]
[estimate]: with "estimate" every member has a 2 Mbit/s downlink estimate (browser-like), else
none (as in zvonok bench, whose generator sends no transport-cc)."""
from __future__ import annotations

import logging
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

sys.path.insert(0, "tests")  # noqa
from unit.media.forwarding_fakes import FakeClock, FakeSink  # noqa: E402

from zvonok.ids import RoomKey, RoomKind, SessionId, UserId  # noqa: E402
from zvonok.media.forwarding.bwe import Usage  # noqa: E402
from zvonok.media.forwarding.router import CodecInfo, ConsumerParams, ProducerParams, Router  # noqa: E402
from zvonok.media.packets.rtp import build_extension_block  # noqa: E402
from zvonok.media.sdp.codecs import AUDIO_LEVEL_URI  # noqa: E402
from zvonok.media.sdp.negotiation import PublishedTrack  # noqa: E402
from zvonok.rooms.adaptive import RoomAdaptation  # noqa: E402
from zvonok.rooms.participant import Participant  # noqa: E402
from zvonok.rooms.room import PublishedEntry, Room  # noqa: E402

OPUS = {111: CodecInfo("opus", 48000)}
VP8 = {96: CodecInfo("VP8", 90000)}
VP8_DELTA = bytes.fromhex("9080 06 01") + bytes(1100)


@dataclass
class Estimator:
    acked_bps: int | None = None
    usage: Usage = Usage.NORMAL


@dataclass
class Downlink:
    estimate_bps: int | None = None
    loss: float = 0.0
    estimator: Estimator = field(default_factory=Estimator)


@dataclass
class Media:
    downlink: Downlink = field(default_factory=Downlink)


@dataclass
class Negotiator:
    def pause_layers(self, mid: str, rids: Any) -> bool:
        return False


@dataclass
class Member:
    session_id: SessionId
    user_id: UserId
    consumers: dict[str, Any] = field(default_factory=dict)
    media: Media = field(default_factory=Media)
    wishes: dict[str, Any] = field(default_factory=dict)
    wishes_changed: bool = False
    held: dict[str, Any] = field(default_factory=dict)
    bandwidth_pauses: int = 0
    closed: bool = False
    sent: list[Any] = field(default_factory=list)
    log: Any = field(default_factory=lambda: logging.getLogger("micro"))
    negotiator: Negotiator = field(default_factory=Negotiator)

    def send(self, message: Any) -> None:
        self.sent.append(message)

    def request_sync(self) -> None:
        return None


class Call:
    def __init__(self, n: int, clock: FakeClock, estimate: int | None) -> None:
        self.clock = clock
        self.router = Router(clock=clock)
        self.room: Room[Member] = Room(RoomKey(RoomKind.CHAT, str(n)), router=self.router, unsubscribe_tick=lambda: None)
        self.members = [Member(SessionId(f"s{n}-{x}"), UserId(f"u{n}-{x}")) for x in "ab"]
        for m in self.members:
            m.media.downlink.estimate_bps = estimate
            self.room.participants[m.session_id] = m
        self.feeds: list[tuple[Any, int, bool]] = []  # producer, ssrc, audio
        for i, m in enumerate(self.members):
            for kind, codecs in (("audio", OPUS), ("video", VP8)):
                ssrc = 0x1000 * (n + 1) + i * 16 + (kind == "video")
                tid = f"{m.session_id}-{kind}"
                ext = {AUDIO_LEVEL_URI: 1} if kind == "audio" else {}
                producer = self.router.produce(
                    ProducerParams(producer_id=tid, kind=kind, codecs=codecs, ssrc=ssrc, rtx_ssrc=None,
                                   rtx_payload_types={}, mid=str(kind == "video"), extensions=ext),
                    sink=FakeSink())
                track = PublishedTrack(mid=str(kind == "video"), kind=kind, ssrc=ssrc, rtx_ssrc=None, codecs={},
                                       rtx={}, extensions=ext, msid=None)
                self.room.published[tid] = PublishedEntry(tid, producer, m, track)
                self.feeds.append((producer, ssrc, kind == "audio"))
                other = self.members[1 - i]
                other.consumers[tid] = self.router.consume(producer, ConsumerParams(
                    consumer_id=f"{other.session_id}/{tid}", ssrc=ssrc + 0x100000, rtx_ssrc=None,
                    payload_types={pt: pt for pt in codecs}, rtx_payload_types={}, ext_id_map={1: 1} if kind == "audio" else {},
                    cname="x"), sink=FakeSink())
        self.adaptation = RoomAdaptation(cast(Room[Participant], self.room))
        self.seq = [0] * len(self.feeds)
        self.acc = [0.0] * len(self.feeds)

    def feed(self, dt: float) -> None:
        level_ext = build_extension_block([(1, bytes([0x80 | 30]))])
        for k, (producer, ssrc, audio) in enumerate(self.feeds):
            rate = 50 if audio else 72
            self.acc[k] += rate * dt
            while self.acc[k] >= 1:
                self.acc[k] -= 1
                s = self.seq[k] = self.seq[k] + 1
                if audio:
                    pkt = struct.pack("!BBHII", 0x90, 111, s & 0xFFFF, s * 960, ssrc) + level_ext + bytes(100)
                else:
                    pkt = struct.pack("!BBHII", 0x80, 96, s & 0xFFFF, (s // 2) * 3000, ssrc) + VP8_DELTA
                producer.receive_rtp(pkt)


def run(rooms: int, seconds: float, estimate: int | None) -> tuple[float, float]:
    clock = FakeClock()
    calls = [Call(n, clock, estimate) for n in range(rooms)]
    router_ns = adapt_ns = 0
    ticks = int(seconds / 0.25)
    for t in range(ticks):
        clock.now += 0.25
        for c in calls:
            c.feed(0.25)
        t0 = time.process_time_ns()
        for c in calls:
            c.router.tick(clock.now)
        t1 = time.process_time_ns()
        for c in calls:
            c.adaptation.tick(clock.now)
        t2 = time.process_time_ns()
        if t >= 8:  # the first 2 s: warm-up (first windows, first allocations)
            router_ns += t1 - t0
            adapt_ns += t2 - t1
    n = (ticks - 8) * rooms
    return router_ns / n / 1000, adapt_ns / n / 1000


if __name__ == "__main__":
    rooms = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    estimate = 2_000_000 if "estimate" in sys.argv[4:] else None
    res = [run(rooms, seconds, estimate) for _ in range(runs)]
    r = statistics.median(x[0] for x in res); a = statistics.median(x[1] for x in res)
    print(f"{rooms} rooms, {seconds} s, estimate {estimate}: µs per room-tick: Router.tick {r:.1f}, "
          f"RoomAdaptation.tick {a:.1f}, total {r + a:.1f} (median of {runs}; runs "
          + ", ".join(f"{x[0]:.1f}+{x[1]:.1f}" for x in res) + ")")
