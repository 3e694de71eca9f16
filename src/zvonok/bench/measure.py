"""The measurement shared by both bench targets (our server and Janus): scenarios' shape, the
warm-up, the window and the result dict.

Owns ``Scenario``, ``Window``, ``measure`` (warm-up, the window: server CPU and RSS, the meter;
``"server"`` in the result says which target was measured; with media workers, each worker's
CPU and RSS apart and the front's as the rest), ``LagMonitor`` (the generator's
event-loop lag), ``each`` (bounded-concurrency steps) and ``room_sources``. Imported by
``bench.runner`` and ``bench.janus``; imports neither, so the bench modules import one way.
Implements no RFC.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import resource
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .client import KINDS, Meter
from .target import ProcStat

JOIN_CONCURRENCY = 8
T = TypeVar("T")


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


async def measure(
    s: Scenario, room_count: int, clients: Sequence[Participant], late: Sequence[Participant],
    meter: Meter, lag: LagMonitor, proc: ProcStat | None, rss_before: int, setup_s: float,
    window: Window, *, parts: Mapping[str, ProcStat] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Warm up, measure the window (server CPU, RSS, the meter), drain; the result dict.

    Every participant has joined and the publishers send; the caller closes them afterwards.
    ``parts``: the server's media workers by name (each inside ``proc``'s tree), measured over the
    same window apart; the result's ``server_workers`` and ``server_front_cpu_s``.
    """
    duration, progress = window.duration, window.progress
    await asyncio.sleep(window.warmup)
    lag.lags.clear()
    times0 = proc.cpu_times() if proc else (0.0, 0.0)
    parts = parts or {}
    part0 = {name: part.cpu_seconds() for name, part in parts.items()}
    cpu0, gen0, meter_start = proc.cpu_seconds() if proc else 0.0, _gen_cpu(), time.monotonic()
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
    # the workers' readings nest inside the whole tree's, so the front's rest is never negative
    part_cpu = {name: part.cpu_seconds() - part0[name] for name, part in parts.items()}
    cpu = (proc.cpu_seconds() if proc else 0.0) - cpu0
    times1 = proc.cpu_times() if proc else (0.0, 0.0)
    split = (times1[0] - times0[0], times1[1] - times0[1])
    gen = _gen_cpu() - gen0
    rss = proc.rss_bytes() if proc else 0
    await asyncio.sleep(0.5)  # drain: packets sent inside the window still arriving
    result = _result(s, room_count, clients, late, meter, lag, elapsed, cpu, gen, rss,
                     rss_before, setup_s, split, window)  # fmt: skip
    if parts:
        result["server_workers"] = _workers(parts, part_cpu, elapsed)
        front = cpu - sum(part_cpu.values())
        result["server_front_cpu_s"] = round(front, 3)
        result["server_front_cpu_percent"] = round(front / elapsed * 100, 2)
    # server CPU (total, per worker, the front's rest) is every thread's schedstat run time (ns);
    # the user/system split only has the 10 ms clock ticks of /proc/<pid>/stat
    result["server_cpu_clock"] = "schedstat"
    return {"started_utc": started, "machine": machine(), **result}


def _workers(
    parts: Mapping[str, ProcStat], cpu: Mapping[str, float], elapsed: float
) -> dict[str, dict[str, Any]]:
    """Each media worker's PID, CPU over the window and RSS at its end."""
    return {
        name: {
            "pid": part.pid,
            "cpu_s": round(cpu[name], 3),
            "cpu_percent": round(cpu[name] / elapsed * 100, 2),
            "rss_mb": round(part.rss_bytes() / 2**20, 1),
        }
        for name, part in parts.items()
    }


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
        # the server before the first session joined: an empty node (rooms exist only in the store)
        "server_rss_empty_mb": round(rss_before / 2**20, 1) if rss_before else None,
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
