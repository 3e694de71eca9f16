"""Scenarios, the run (join, warm up, measure, drain), live progress, the JSON result and summary.

Owns ``SCENARIOS`` (mesh-4, fanout-2x5/2x10/2x20/2x40, calls-1to1-x25, audio-100, idle-200),
``run_bench`` (the ``zvonok bench`` command's body; ``janus=True`` hands the scenario to
``bench.janus``), ``measure`` (the warm-up, the window and the result, shared by both targets;
``"server"`` in the result says which one was measured) and ``summary``. In each room the
senders join first and start sending; the other participants join afterwards, and their join time
(WebSocket open → first media packet) is what ``join_ms`` reports. Measurement happens in a
window after a warm-up: packets are counted by their send time (carried in the packet), so
nothing sent before or after the window is counted on either side. Latency comes twice:
``sfu_latency_ms`` (kernel receive timestamp at the subscriber − send mark: what the SFU adds)
and ``latency_ms`` (the subscriber's event loop − send mark: end to end, the generator's receive
path included).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..media.transport.dtls import DtlsCertificate
from .client import KINDS, BenchClient, Meter
from .clip import load_clip
from .target import ProcStat, Target, spawn_server

JOIN_CONCURRENCY = 8
T = TypeVar("T")
MAX_CLIENTS = 500


@dataclass(frozen=True)
class Scenario:
    """``rooms`` rooms of ``size`` participants; the first ``senders`` of each publish first."""

    name: str
    kind: str  # chat or group
    rooms: int
    size: int
    senders: int
    video: bool = True
    receivers_publish: bool = False  # the late joiners publish too (mesh)
    idle: bool = False


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("mesh-4", "group", 1, 4, 3, receivers_publish=True),
        Scenario("fanout-2x5", "group", 1, 7, 2),
        Scenario("fanout-2x10", "group", 1, 12, 2),
        Scenario("fanout-2x20", "group", 1, 22, 2),
        Scenario("fanout-2x40", "group", 1, 42, 2),
        Scenario("calls-1to1-x25", "chat", 25, 2, 1, receivers_publish=True),
        Scenario("audio-100", "group", 1, 100, 4, video=False),
        Scenario("idle-200", "group", 50, 4, 0, idle=True),
    )
}


def _percentile(values: Sequence[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def _latency(values: Sequence[int]) -> dict[str, float | int]:
    """p50/p95/p99/max in ms of nanosecond latencies (one sort), and how many there were."""
    if not values:
        return {"count": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)
    last = len(ordered) - 1

    def at(q: float) -> float:
        return round(ordered[min(last, int(q * len(ordered)))] / 1e6, 3)

    return {
        "count": len(ordered),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[last] / 1e6, 3),
    }


class LagMonitor:
    """The generator's event-loop lag: how late a 20 ms sleep wakes up."""

    def __init__(self) -> None:
        self.lags: list[int] = []

    async def run(self) -> None:
        for _ in range(10_000_000):
            start = time.perf_counter_ns()
            await asyncio.sleep(0.02)
            self.lags.append(time.perf_counter_ns() - start - 20_000_000)


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPUs, their model, the kernel."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release()}


def _gen_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Participant(Protocol):
    """What the measurement reads of a participant (``BenchClient``, ``JanusParticipant``)."""

    @property
    def ws_open_ns(self) -> int:
        """perf_counter_ns when its signaling started (the WebSocket was open)."""
        ...

    @property
    def first_rx_ns(self) -> int:
        """perf_counter_ns of its first received media packet (0: none yet)."""
        ...

    @property
    def plis(self) -> int: ...

    @property
    def nacks(self) -> int: ...


@dataclass(frozen=True)
class Window:
    """How to measure: the window's length, the warm-up before it, and what is measured."""

    duration: float
    warmup: float
    pacing: bool
    progress: Callable[[str], None]
    server: str  # "zvonok" or e.g. "janus 1.1.2": which server the numbers are about


async def each(items: Sequence[T], step: Callable[[T], Awaitable[None]]) -> None:
    """``step`` for every item, ``JOIN_CONCURRENCY`` at a time (joins, subscriptions)."""
    gate = asyncio.Semaphore(JOIN_CONCURRENCY)

    async def one(item: T) -> None:
        async with gate:
            await step(item)

    await asyncio.gather(*(one(item) for item in items))


async def _join(clients: list[BenchClient], report: Callable[[str], None]) -> None:
    async def join(client: BenchClient) -> None:
        await client.start()
        await asyncio.wait_for(client.connected.wait(), 20.0)

    await each(clients, join)
    report(f"{len(clients)} connected")


async def run_bench(
    name: str, *, duration: float, rooms: int | None, url: str | None, data_dir: Path | None,
    server_pid: int | None, warmup: float, progress: Callable[[str], None], pacing: bool = True,
    janus: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Run one scenario against our own server (or ``url``); returns the result dict.

    ``pacing``: publishers send video through a browser-like pacer (2.5 × the clip's bitrate,
    a burst every 5 ms); off, every frame goes out back to back. ``janus``: against our own
    Janus VideoRoom instead (``bench.janus``), for comparison.
    """
    scenario = SCENARIOS[name]
    room_count = max(1, rooms if rooms is not None else scenario.rooms)
    if room_count * scenario.size > MAX_CLIENTS:
        raise ValueError(f"{room_count * scenario.size} participants is above {MAX_CLIENTS}")
    if janus:
        if url is not None:
            raise ValueError("--janus starts its own Janus; it does not take --url")
        from .janus import run_janus

        window = Window(duration, warmup, pacing, progress, "janus")
        return await run_janus(scenario, room_count, window)
    tmp = None
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="zvonok-bench-")
        target = await spawn_server(Path(tmp.name))
    else:
        if data_dir is None:
            raise ValueError("--url needs --data-dir of that server (its secret and database)")
        target = Target(url.rstrip("/"), data_dir, server_pid)
    try:
        return await _run(scenario, room_count, duration, warmup, target, progress, pacing)
    finally:
        target.stop()
        if tmp is not None:
            tmp.cleanup()


class _Member(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def publish(self) -> tuple[bool, bool]: ...


def room_sources(room: Sequence[_Member]) -> list[set[int]]:
    """Each member's sources: the indices of every other member of its room who publishes.

    A member's subscriber counts only packets from its sources as delivered.
    """
    publishers = {m.index for m in room if any(m.publish)}
    return [publishers - {m.index} for m in room]


async def _run(
    s: Scenario, room_count: int, duration: float, warmup: float, target: Target,
    progress: Callable[[str], None], pacing: bool,
) -> dict[str, Any]:  # fmt: skip
    clip, meter = load_clip(), Meter()
    certificate = DtlsCertificate.generate()
    tag = f"b{random.getrandbits(24):x}"
    rooms = [
        (s.kind, f"{tag}-{r}", [f"u{r}-{i}" for i in range(s.size)]) for r in range(room_count)
    ]
    await target.create_rooms(rooms)
    proc = ProcStat(target.pid) if target.pid else None
    rss_before = proc.rss_bytes() if proc else 0
    senders: list[BenchClient] = []
    late: list[BenchClient] = []
    for kind, room_id, members in rooms:
        room: list[BenchClient] = []
        for i, user in enumerate(members):
            sender = i < s.senders
            publish = (not s.idle) and (sender or s.receivers_publish)
            client = BenchClient(
                index=len(senders) + len(late), url=target.ws_url(kind, room_id),
                token=target.token(user), room_id=room_id, meter=meter, clip=clip,
                certificate=certificate, publish=(publish, publish and s.video),
                speak=True, receivers=s.size - 1, pacing=pacing,
            )  # fmt: skip
            (senders if sender else late).append(client)
            room.append(client)
        for client, sources in zip(room, room_sources(room), strict=True):
            client.leg.sources = sources
    lag = LagMonitor()
    lag_task = asyncio.create_task(lag.run())
    clients = senders + late
    try:
        t_setup = time.monotonic()
        await _join(senders, progress)
        for client in senders:
            client.start_publishing(random.uniform(0, 0.033))
        await _join(late, progress)
        for client in late:
            if client.publish[0]:
                client.start_publishing(random.uniform(0, 0.033))
        setup_s = time.monotonic() - t_setup
        window = Window(duration, warmup, pacing, progress, "zvonok")
        return await measure(s, room_count, clients, late, meter, lag, proc, rss_before, setup_s,
                             window)  # fmt: skip
    finally:
        lag_task.cancel()
        await asyncio.gather(lag_task, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def measure(
    s: Scenario, room_count: int, clients: Sequence[Participant], late: Sequence[Participant],
    meter: Meter, lag: LagMonitor, proc: ProcStat | None, rss_before: int, setup_s: float,
    window: Window,
) -> dict[str, Any]:  # fmt: skip
    """Warm up, measure the window (server CPU, RSS, the meter), drain; the result dict.

    Every participant has joined and the publishers send; the caller closes them afterwards.
    """
    duration, progress = window.duration, window.progress
    await asyncio.sleep(window.warmup)
    lag.lags.clear()
    times0 = proc.cpu_times() if proc else (0.0, 0.0)
    cpu0, gen0, meter_start = sum(times0), _gen_cpu(), time.monotonic()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    meter.open()
    for second in range(int(duration)):
        await asyncio.sleep(1.0)
        if proc:
            cpu = (proc.cpu_seconds() - cpu0) / (second + 1) * 100
            progress(
                f"t={second + 1:>3}s rx={sum(meter.received):>8} server {cpu:5.1f}% "
                f"rss {proc.rss_bytes() / 2**20:6.1f} MB gen {_gen_cpu() - gen0:5.1f}s"
            )
    await asyncio.sleep(duration - int(duration))
    meter.close()
    elapsed = time.monotonic() - meter_start
    times1 = proc.cpu_times() if proc else (0.0, 0.0)
    cpu = sum(times1) - cpu0
    split = (times1[0] - times0[0], times1[1] - times0[1])
    gen = _gen_cpu() - gen0
    rss = proc.rss_bytes() if proc else 0
    await asyncio.sleep(0.5)  # drain: packets sent inside the window still arriving
    result = _result(s, room_count, clients, late, meter, lag, elapsed, cpu, gen, rss,
                     rss_before, setup_s, split, window)  # fmt: skip
    return {"started_utc": started, "machine": machine(), **result}


def _result(
    s: Scenario, room_count: int, clients: Sequence[Participant], late: Sequence[Participant],
    meter: Meter, lag: LagMonitor, elapsed: float, cpu: float, gen: float, rss: int,
    rss_before: int, setup_s: float, split: tuple[float, float], window: Window,
) -> dict[str, Any]:  # fmt: skip
    delivered = sum(meter.received)
    joins = [(c.first_rx_ns - c.ws_open_ns) for c in late if c.first_rx_ns]
    return {
        "scenario": s.name,
        "server": window.server,
        "rooms": room_count,
        "participants": len(clients),
        "duration_s": round(elapsed, 3),
        "pacing": window.pacing,
        "setup_s": round(setup_s, 3),
        "sent": dict(zip(KINDS, meter.sent, strict=True)),
        "expected": dict(zip(KINDS, meter.expected, strict=True)),
        # first copies from publishers the receiver subscribes to; further copies and packets of
        # any other publisher (one's own echoed, another room's) are counted apart, never above
        "delivered": dict(zip(KINDS, meter.received, strict=True)),
        "duplicates": dict(zip(KINDS, meter.duplicates, strict=True)),
        "unexpected": dict(zip(KINDS, meter.unexpected, strict=True)),
        "delivery_ratio": {
            k: (round(r / e, 5) if e else None)
            for k, r, e in zip(KINDS, meter.received, meter.expected, strict=True)
        },
        "delivered_per_s": round(delivered / elapsed, 1),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_user_s": round(split[0], 3),
        "server_cpu_system_s": round(split[1], 3),
        "server_cpu_percent": round(cpu / elapsed * 100, 2),
        "cpu_us_per_delivered_packet": round(cpu / delivered * 1e6, 2) if delivered else None,
        # kernel RX timestamp (SO_TIMESTAMPNS) at the subscriber − send mark: what the SFU adds
        "sfu_latency_ms": {**_latency(meter.sfu_latencies), "no_timestamp": meter.no_timestamp},
        # the subscriber's event loop − send mark: end to end, the generator included
        "latency_ms": _latency(meter.latencies),
        "generator_tx_dropped": meter.tx_dropped,
        "server_rss_mb": round(rss / 2**20, 1),
        "server_rss_per_session_kb": round((rss - rss_before) / len(clients) / 1024, 1),
        "join_ms": {
            "count": len(joins),
            "p50": round(_percentile(joins, 0.5), 1),
            "max": round(max(joins) / 1e6, 1) if joins else None,
        },
        "generator_cpu_percent": round(gen / elapsed * 100, 2),
        "generator_loop_lag_ms": {
            "p50": round(_percentile(lag.lags, 0.5), 3),
            "p99": round(_percentile(lag.lags, 0.99), 3),
            "max": round(max(lag.lags, default=0) / 1e6, 3),
        },
        "keyframe_requests_seen": sum(c.plis for c in clients),
        "nacks_seen": sum(c.nacks for c in clients),
        "errors": meter.errors[:20],
    }


def summary(result: dict[str, Any]) -> str:
    """A few human lines about one result."""
    r = result
    ratio = ", ".join(f"{k} {v:.4f}" for k, v in r["delivery_ratio"].items() if v is not None)
    lat, sfu = r["latency_ms"], r["sfu_latency_ms"]
    join, lag = r["join_ms"], r["generator_loop_lag_ms"]
    return "\n".join(
        [
            f"{r['scenario']} on {r.get('server', 'zvonok')}: {r['participants']} participants"
            f" in {r['rooms']} room(s), {r['duration_s']} s measured",
            f"  server CPU {r['server_cpu_percent']}% of a core (user {r['server_cpu_user_s']} s,"
            f" system {r['server_cpu_system_s']} s); "
            f"{r['cpu_us_per_delivered_packet']} µs per delivered packet "
            f"({r['delivered_per_s']} packets/s delivered)",
            f"  delivery {ratio or 'n/a'}; duplicates {sum(r.get('duplicates', {}).values())},"
            f" from publishers not subscribed to {sum(r.get('unexpected', {}).values())};"
            f" video {'paced' if r['pacing'] else 'in bursts'}",
            f"  SFU-added latency p50/p95/p99/max {sfu['p50']}/{sfu['p95']}/{sfu['p99']}/"
            f"{sfu['max']} ms (kernel RX timestamp − send)",
            f"  end-to-end latency p50/p95/p99/max {lat['p50']}/{lat['p95']}/{lat['p99']}/"
            f"{lat['max']} ms (generator included)",
            f"  server RSS {r['server_rss_mb']} MB ({r['server_rss_per_session_kb']} kB/session);"
            f" join p50 {join['p50']} ms, max {join['max']} ms ({join['count']} joins)",
            f"  generator CPU {r['generator_cpu_percent']}%; loop lag p50/p99/max {lag['p50']}/"
            f"{lag['p99']}/{lag['max']} ms; errors {len(r['errors'])}",
        ]
    )


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")


def median_of(results: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in results if r.get(key) is not None]
    return float(statistics.median(values)) if values else 0.0
