"""The floor's generator: the bench's traffic shape to a bare relay (``relay.c``).

50 clients in 25 1:1 pairs on one uvloop loop, as ``zvonok bench calls-1to1-x25`` runs them: the
bench's clip (its audio every 20 ms, its video frames at 30 fps through the bench's ``Pacer``),
each datagram as long as the bench's SRTP packet would be. The first two bytes name the port the
relay sends it on to (the pair's other client), the next eight the send time. Prints the relay's
CPU per packet (its ``getrusage``) and the relay-added latency as the bench measures the SFU's
(kernel receive timestamp at the receiving client − the send time).
"""

import asyncio
import os
import random
import socket
import struct
import subprocess
import sys
import time

import uvloop

from zvonok.bench.client import PACE_FACTOR, Pacer
from zvonok.bench.clip import Clip, load_clip

RELAY_PORT, BASE, N = 47000, 47100, 50
DUR = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
OVERHEAD = 12 + 8 + 16 + 24  # RTP header, extensions, the GCM tag, the bench's mark
SO_TIMESTAMPNS = 35


class Rx:
    """One client's receiving side: counts and kernel-timestamped latencies."""

    def __init__(self, sock: socket.socket) -> None:
        self.n = 0
        self.lat: list[int] = []
        self.sock = sock

    def readable(self) -> None:
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(2048, 64)
            except BlockingIOError:
                return
            self.n += 1
            for _level, kind, raw in anc:
                if kind == SO_TIMESTAMPNS and len(self.lat) < 400_000:
                    sec, ns = struct.unpack("qq", raw[:16])
                    sent = struct.unpack_from("!Q", data, 2)[0]
                    self.lat.append(sec * 10**9 + ns - sent)


async def client(i: int, sock: socket.socket, clip: Clip, phase: float, t_end: float) -> None:
    await asyncio.sleep(phase)
    head = struct.pack("!H", BASE + (i ^ 1))
    relay = ("127.0.0.1", RELAY_PORT)

    def send(payload: bytes) -> int:
        data = head + struct.pack("!Q", time.time_ns()) + payload + bytes(OVERHEAD)
        sock.sendto(data, relay)
        return len(data)

    rate = clip.video_bitrate + sum(len(p) for p in clip.audio) * 8 * 50 / len(clip.audio)
    start = time.perf_counter()
    pacer = Pacer(PACE_FACTOR * rate, start)
    next_audio = next_video = start
    audio = video = 0
    while True:
        now = time.perf_counter()
        if now > t_end:
            return
        if now >= next_audio:
            send(clip.audio[audio % len(clip.audio)])
            audio += 1
            next_audio = start + audio * 0.02
        if now >= next_video:
            pacer.queue.extend((0, 0, p, False) for p in clip.video[video % len(clip.video)])
            video += 1
            next_video = start + video / 30
        wake = min(next_audio, next_video)
        if pacer.queue:
            if now >= pacer.next_tick:
                pacer.refill(now)
                while pacer.queue and pacer.budget > 0:
                    pacer.spend(send(pacer.queue.popleft()[2]))
            if pacer.queue:
                wake = min(wake, pacer.next_tick)
        await asyncio.sleep(max(0.0, wake - time.perf_counter()))


async def main() -> None:
    clip = load_clip()
    command = [os.environ.get("RELAY", "./relay"), str(RELAY_PORT)]
    relay = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    assert relay.stdout is not None and relay.stdout.readline().strip() == "ready"
    loop = asyncio.get_running_loop()
    rxs, socks = [], []
    for i in range(N):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", BASE + i))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        rx = Rx(s)
        loop.add_reader(s.fileno(), rx.readable)
        rxs.append(rx)
        socks.append(s)
    t_end = time.perf_counter() + DUR
    phases = [random.uniform(0, 0.033) for _ in range(N)]
    await asyncio.gather(*(client(i, socks[i], clip, phases[i], t_end) for i in range(N)))
    await asyncio.sleep(0.3)
    relay.terminate()
    out = relay.communicate()[0]
    print(out.strip())
    words = out.split()
    f = dict(zip(words[0::2], map(float, words[1::2]), strict=True))
    lat = sorted(x for r in rxs for x in r.lat)
    got = sum(r.n for r in rxs)

    def q(p: float) -> float:
        return lat[int(p * (len(lat) - 1))] / 1e6

    pkts = f["packets"]
    print(
        f"relay: {pkts:.0f} packets, {pkts / DUR:.0f}/s; received {got}; "
        f"user {f['user_us'] / pkts:.2f} + sys {f['sys_us'] / pkts:.2f} = "
        f"{(f['user_us'] + f['sys_us']) / pkts:.2f} us/packet; {pkts / f['wakes']:.2f} pkt/wake; "
        f"{pkts / f['sendmmsg']:.2f} pkt/sendmmsg; "
        f"relay-added (kernel rx ts - send) p50/p99 {q(0.5):.3f}/{q(0.99):.3f} ms"
    )


uvloop.run(main())
