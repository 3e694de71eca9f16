"""In-process tick of one fanout-2x20-shaped room: 2 publishers (Opus with levels + VP8), each
receiving the other's tracks, and 20 receive-only subscribers receiving all four; no estimates.
µs per tick of Router.tick and RoomAdaptation.tick (process_time_ns), median of RUNS."""
from __future__ import annotations
import statistics, struct, sys, time
from typing import Any, cast
sys.path.insert(0, "docs/bench-results/2026-12-06-s11-1to1/micro"); sys.path.insert(0, "tests")
import tick_micro as tm
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.forwarding.router import ConsumerParams, ProducerParams, Router
from zvonok.media.sdp.codecs import AUDIO_LEVEL_URI
from zvonok.media.sdp.negotiation import PublishedTrack
from zvonok.rooms.adaptive import RoomAdaptation
from zvonok.rooms.participant import Participant
from zvonok.rooms.room import PublishedEntry, Room

def build():
    clock = tm.FakeClock(); router = Router(clock=clock)
    room = Room(RoomKey(RoomKind.GROUP, "f"), router=router, unsubscribe_tick=lambda: None)
    pubs = [tm.Member(SessionId(f"p{i}"), UserId(f"p{i}")) for i in range(2)]
    subs = [tm.Member(SessionId(f"s{i}"), UserId(f"s{i}")) for i in range(20)]
    for m in pubs + subs: room.participants[m.session_id] = m
    feeds = []; n = 0
    for i, m in enumerate(pubs):
        for kind, codecs in (("audio", tm.OPUS), ("video", tm.VP8)):
            ssrc = 0x1000 + i * 16 + (kind == "video"); tid = f"{m.session_id}-{kind}"
            ext = {AUDIO_LEVEL_URI: 1} if kind == "audio" else {}
            producer = router.produce(ProducerParams(producer_id=tid, kind=kind, codecs=codecs, ssrc=ssrc, rtx_ssrc=None, rtx_payload_types={}, mid=str(kind == "video"), extensions=ext), sink=tm.FakeSink())
            track = PublishedTrack(mid=str(kind == "video"), kind=kind, ssrc=ssrc, rtx_ssrc=None, codecs={}, rtx={}, extensions=ext, msid=None)
            room.published[tid] = PublishedEntry(tid, producer, m, track)
            feeds.append((producer, ssrc, kind == "audio"))
            for other in [pubs[1 - i]] + subs:
                n += 1
                other.consumers[tid] = router.consume(producer, ConsumerParams(consumer_id=f"{other.session_id}/{tid}", ssrc=0x100000 + n, rtx_ssrc=None, payload_types={pt: pt for pt in codecs}, rtx_payload_types={}, ext_id_map={1: 1} if kind == "audio" else {}, cname="x"), sink=tm.FakeSink())
    return clock, router, RoomAdaptation(cast(Room[Participant], room)), feeds

def run(seconds):
    clock, router, adaptation, feeds = build()
    seq = [0] * len(feeds); acc = [0.0] * len(feeds)
    level_ext = tm.build_extension_block([(1, bytes([0x80 | 30]))])
    r_ns = a_ns = 0; ticks = int(seconds / 0.25)
    for t in range(ticks):
        clock.now += 0.25
        for k, (producer, ssrc, audio) in enumerate(feeds):
            acc[k] += (50 if audio else 72) * 0.25
            while acc[k] >= 1:
                acc[k] -= 1; s = seq[k] = seq[k] + 1
                pkt = (struct.pack("!BBHII", 0x90, 111, s & 0xFFFF, s * 960, ssrc) + level_ext + bytes(100)) if audio else (struct.pack("!BBHII", 0x80, 96, s & 0xFFFF, (s // 2) * 3000, ssrc) + tm.VP8_DELTA)
                producer.receive_rtp(pkt)
        t0 = time.process_time_ns(); router.tick(clock.now); t1 = time.process_time_ns(); adaptation.tick(clock.now); t2 = time.process_time_ns()
        if t >= 8: r_ns += t1 - t0; a_ns += t2 - t1
    n = ticks - 8
    return r_ns / n / 1000, a_ns / n / 1000

res = [run(20) for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5)]
print(f"fanout room: µs per tick: Router.tick {statistics.median(x[0] for x in res):.1f}, RoomAdaptation.tick {statistics.median(x[1] for x in res):.1f} (runs " + ", ".join(f"{x[0]:.0f}+{x[1]:.0f}" for x in res) + ")")
