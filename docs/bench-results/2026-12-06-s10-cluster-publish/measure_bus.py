"""Signal bus latency before/after pipelined publishes: two buses (two processes, one per node)
on a private redis-server; the sender emits bursts of notes spaced by one loop turn (as a join's
answers are: joined, participant-joined, offer, ...) and each note's enqueue → on_note time is
measured at the receiver (CLOCK_MONOTONIC is one clock for every process). "before" swaps the
bus's send loop for the one-batch-at-a-time loop of HEAD.

usage: python measure_bus.py ORDER (e.g. "ba ab ba") -> JSON lines
"""

from __future__ import annotations

import asyncio
import json
import resource
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from zvonok.cluster.base import ClusterUnavailable
from zvonok.cluster.bus import SEND_BATCH, RedisSignalBus, log
from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.health import RedisClusterHealth
from zvonok.cluster.keys import Keys
from zvonok.cluster.redis_nodes import new_boot_id

BURSTS = 300
BURST = 8
GAP = 0.01


async def old_send_loop(self: RedisSignalBus) -> None:  # HEAD's loop, verbatim
    while True:
        queued = [await self._queue.get()]
        while len(queued) < SEND_BATCH and not self._queue.empty():
            queued.append(self._queue.get_nowait())
        started = time.perf_counter()
        self.timings.observe("send_wait", started - queued[0][2])
        batch = [(channel, message) for channel, message, _ in queued]
        try:
            await self._publish(batch)
            self.timings.observe("publish", time.perf_counter() - started)
            self.published += len(batch)
        except ClusterUnavailable:
            self.publish_failures += len(batch)
        except Exception:
            self.publish_failures += len(batch)
            log.exception("signal bus: publishing failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def node(url: str, me: str, peer: str, role: str, mode: str) -> None:
    if mode == "before":
        RedisSignalBus._send_loop = old_send_loop  # type: ignore[method-assign]
    client = connect(RedisTarget(url=url))
    keys = Keys()
    got: list[float] = []
    done = asyncio.Event()

    async def on_request(peer: str, frame: object) -> None:
        return None

    def on_note(peer: str, frame: object) -> None:
        sent = float(frame.params["t"])  # type: ignore[attr-defined]
        got.append(time.monotonic() - sent)
        if len(got) == BURSTS * BURST:
            done.set()

    bus = RedisSignalBus(
        client, me, new_boot_id(), RedisClusterHealth(), keys=keys,
        on_request=on_request, on_note=on_note,
    )  # fmt: skip
    await client.set(keys.node(me), bus.boot_id)
    await bus.start()
    if role == "send":
        link = bus.link(peer)
        await link.request("ping", {}, wait=5.0)
        for _ in range(BURSTS):
            for i in range(BURST):
                link.notify("n", {"t": repr(time.monotonic())}, relay=i + 1)
                await asyncio.sleep(0)
            await asyncio.sleep(GAP)
        await asyncio.sleep(1.0)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        legs = {}
        for leg, cumulative, total in bus.timings.histograms():
            count = cumulative[-1][1]
            legs[leg] = round(total / count * 1e3, 4) if count else None
        print(json.dumps({"mode": mode, "sender_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                          "mean_ms": legs, "published": bus.published,
                          "batches": bus.timings.count("publish")}), flush=True)
    else:
        await asyncio.wait_for(done.wait(), 60)
        ms = sorted(x * 1e3 for x in got)
        out = {
            "mode": mode,
            "n": len(ms),
            "p50": round(statistics.median(ms), 3),
            "p95": round(ms[int(0.95 * len(ms))], 3),
            "mean": round(statistics.fmean(ms), 3),
            "max": round(ms[-1], 3),
        }
        print(json.dumps(out), flush=True)
    await bus.close()
    await client.aclose()


def main() -> None:
    if sys.argv[1] == "node":
        asyncio.run(node(*sys.argv[2:7]))
        return
    order = " ".join(sys.argv[1:]).replace(" ", "")
    tmp = tempfile.mkdtemp()
    port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", tmp, "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        url = f"redis://127.0.0.1:{port}/0"
        for code in order:
            mode = {"a": "after", "b": "before"}[code]
            recv = subprocess.Popen(
                [sys.executable, __file__, "node", url, "m2", "m1", "recv", mode],
                env=os.environ,
            )
            time.sleep(1.0)
            send = subprocess.Popen([sys.executable, __file__, "node", url, "m1", "m2", "send", mode])
            send.wait(120)
            recv.wait(120)
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
