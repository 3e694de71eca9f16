"""Scenarios, the run (join, warm up, measure, drain), live progress, the JSON result and summary.

Owns ``SCENARIOS`` (mesh-4, fanout-2x5/2x10/2x20/2x40, calls-1to1-x25, audio-100, idle-200),
``run_bench`` (the ``zvonok bench`` command's body; ``janus=True`` hands the scenario to
``bench.janus``; the warm-up, window and result shared by both targets are ``bench.measure``) and
``summary``. ``workers`` > 1 runs the server under test as a front and that many media worker
processes: the CPU per delivered packet still counts every process, and the result adds each
worker's CPU (``server_workers``) and which worker holds each room (``room_workers``,
``rooms_per_worker``, from the server's ``/debug/state``). ``nodes`` 2 runs it on two nodes of a
Redis the bench starts (``bench.cluster``): the result adds ``cluster``, join latency through the
room's owner vs relayed through the other node (half the late joiners each way, whichever node owns
each room), and each node's relay legs from its ``/metrics``. In each room the senders join first
and start sending; the other participants join afterwards, and their join time (WebSocket open →
first media packet) is what ``join_ms`` reports. Measurement happens in a window after a warm-up:
packets are counted by their send time (carried in the packet), so nothing sent before or after the
window is counted on either side. Latency comes twice: ``sfu_latency_ms`` (kernel receive timestamp
at the subscriber − send mark: what the SFU adds) and ``latency_ms`` (the subscriber's event loop −
send mark: end to end, the generator's receive path included). ``simulcast``: every video publisher
sends three simulcast layers (``bench.client``); the result says so and counts the lower layers'
packets apart (``simulcast_lower_layers``: sent, and arrived at subscribers, which should be none
while the server forwards everyone the top layer).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..media.transport.dtls import DtlsCertificate
from .client import LOWER_LAYERS, BenchClient, Meter
from .clip import load_clip
from .cluster import NodePair, join_split, relay_legs, route_late, spawn_pair
from .janus import run_janus
from .measure import LagMonitor, Scenario, Window, each, measure, room_sources
from .target import ProcStat, Target, room_workers, spawn_server, worker_pids

__all__ = [
    "MAX_CLIENTS",
    "SCENARIOS",
    "Scenario",
    "median_of",
    "room_sources",
    "run_bench",
    "summary",
    "write_json",
]

MAX_CLIENTS = 500


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


async def _join(clients: list[BenchClient], report: Callable[[str], None]) -> None:
    async def join(client: BenchClient) -> None:
        await client.start()
        await asyncio.wait_for(client.connected.wait(), 20.0)

    await each(clients, join)
    report(f"{len(clients)} connected")


async def run_bench(
    name: str, *, duration: float, rooms: int | None, url: str | None, data_dir: Path | None,
    server_pid: int | None, warmup: float, progress: Callable[[str], None], pacing: bool = True,
    janus: bool = False, workers: int = 1, tcp: bool = False, nodes: int = 1,
    simulcast: bool = False, dynacast: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Run one scenario against our own server (or ``url``); returns the result dict.

    ``pacing``: publishers send video through a browser-like pacer (2.5 × the clip's bitrate,
    a burst every 5 ms); off, every frame goes out back to back. ``janus``: against our own
    Janus VideoRoom instead (``bench.janus``), for comparison. ``workers``: media worker
    processes of the server it starts (1: the one-process node). ``tcp``: every participant's
    media over ICE-TCP (RFC 6544, RFC 4571 framing) instead of UDP. ``nodes`` 2: two nodes on
    a Redis the bench starts (``bench.cluster``); the senders join through the first, the late
    participants alternately through their room's owner and through the other node (relayed).
    ``simulcast``: video publishers offer and send three simulcast layers (q/h/f) instead of one
    stream; ``dynacast``: they also stop and resume layers as the server's publish-layers say.
    """
    scenario = SCENARIOS[name]
    room_count = max(1, rooms if rooms is not None else scenario.rooms)
    if room_count * scenario.size > MAX_CLIENTS:
        raise ValueError(f"{room_count * scenario.size} participants is above {MAX_CLIENTS}")
    if workers != 1 and (janus or url is not None):
        raise ValueError("--workers sets up the server the bench starts; not with --url or --janus")
    if nodes not in (1, 2):
        raise ValueError("--nodes is 1 or 2")
    if nodes == 2 and (janus or url is not None or workers != 1 or tcp):
        raise ValueError(
            "--nodes 2 starts its own two nodes; not with --url, --janus, --workers, --tcp"
        )
    if dynacast and not simulcast:
        raise ValueError("--dynacast is about simulcast publishers; it needs --simulcast")
    if janus:
        if simulcast:
            raise ValueError("--simulcast measures zvonok's simulcast; not with --janus")
        if tcp:
            raise ValueError("--tcp measures zvonok's ICE-TCP; not with --janus")
        if url is not None:
            raise ValueError("--janus starts its own Janus; it does not take --url")
        window = Window(duration, warmup, pacing, progress, "janus")
        return await run_janus(scenario, room_count, window)
    if nodes == 2:
        return await _run_pair(
            scenario, room_count, duration, warmup, progress, pacing, simulcast, dynacast
        )
    tmp = None
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="zvonok-bench-")
        target = await spawn_server(Path(tmp.name), workers=workers)
    else:
        if data_dir is None:
            raise ValueError("--url needs --data-dir of that server (its secret and database)")
        target = Target(url.rstrip("/"), data_dir, server_pid)
    try:
        return await _run(
            scenario, room_count, duration, warmup, target, progress, pacing, tcp,
            simulcast=simulcast, dynacast=dynacast,
        )  # fmt: skip
    finally:
        target.stop()
        if tmp is not None:
            tmp.cleanup()


async def _run_pair(
    s: Scenario, room_count: int, duration: float, warmup: float,
    progress: Callable[[str], None], pacing: bool, simulcast: bool, dynacast: bool,
) -> dict[str, Any]:  # fmt: skip
    """The scenario on two nodes of one Redis: join latency direct vs relayed, Redis calls."""
    with tempfile.TemporaryDirectory(prefix="zvonok-bench-") as tmp:
        pair = await spawn_pair(Path(tmp))
        try:
            return await _run(
                s, room_count, duration, warmup, pair.nodes[0], progress, pacing, pair=pair,
                simulcast=simulcast, dynacast=dynacast,
            )  # fmt: skip
        finally:
            pair.stop()


async def _run(
    s: Scenario, room_count: int, duration: float, warmup: float, target: Target,
    progress: Callable[[str], None], pacing: bool, tcp: bool = False,
    pair: NodePair | None = None, simulcast: bool = False, dynacast: bool = False,
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
    rss_parts = _process_rss(target.pid) if target.pid else {}
    senders: list[BenchClient] = []
    late: list[BenchClient] = []
    for kind, room_id, members in rooms:
        room: list[BenchClient] = []
        for i, user in enumerate(members):
            sender = i < s.senders
            publish = (not s.idle) and (sender or s.receivers_publish)
            # two nodes: the senders through the first (it claims the room); the late joiners
            # are sent through a room's owner or the other node once the senders joined
            node = 0
            through = target if pair is None else pair.nodes[node]
            client = BenchClient(
                index=len(senders) + len(late), url=through.ws_url(kind, room_id),
                token=target.token(user), room_id=room_id, meter=meter, clip=clip,
                certificate=certificate, publish=(publish, publish and s.video),
                speak=True, receivers=s.size - 1, pacing=pacing, tcp=tcp, simulcast=simulcast,
                dynacast=dynacast,
            )  # fmt: skip
            client.room_kind, client.node = kind, node
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
        planned = await asyncio.to_thread(route_late, pair, late) if pair is not None else None
        await _join(late, progress)
        for client in late:
            if client.publish[0]:
                client.start_publishing(random.uniform(0, 0.033))
        setup_s = time.monotonic() - t_setup
        pids = worker_pids(target.pid) if target.pid else {}
        label = f"zvonok, {len(pids)} workers" if pids else "zvonok"  # a row of its own in tables
        window = Window(duration, warmup, pacing, progress, label)
        parts = {name: ProcStat(pid) for name, pid in pids.items()}
        result = await measure(s, room_count, clients, late, meter, lag, proc, rss_before, setup_s,
                               window, parts=parts)  # fmt: skip
        result["workers"] = max(1, len(parts))
        result["transport"] = "tcp" if tcp else "udp"
        result["simulcast"] = simulcast
        if simulcast:
            result["simulcast_lower_layers"] = {
                "sent": {LOWER_LAYERS[k]: n for k, n in meter.layer_sent.items()},
                "arrived": {LOWER_LAYERS[k]: n for k, n in meter.layer_received.items()},
                "dynacast_followed": dynacast,
                "publish_layers_messages": meter.publish_layers,
                "layers_turned_off": dict(sorted(meter.layers_turned_off.items())),
            }
        if parts:
            result.update(await _placement(target, list(parts), rss_parts))
        if pair is not None:
            result["nodes"] = 2
            result["cluster"] = await asyncio.to_thread(join_split, pair, late)
            result["cluster"]["planned"] = planned
            result["cluster"]["nodes"] = await asyncio.to_thread(relay_legs, pair)
            result["server_scope"] = "CPU and RSS of the first node (the rooms' owner) only"
        return result
    finally:
        lag_task.cancel()
        await asyncio.gather(lag_task, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def _process_rss(pid: int) -> dict[str, float]:
    """MB of RSS of each process of the server: the front (``front``) and each media worker."""
    workers = worker_pids(pid)
    if not workers:
        return {}
    front = ProcStat(pid)
    total = front.rss_bytes()
    rss = {name: ProcStat(w).rss_bytes() for name, w in workers.items()}
    return {
        "front": round((total - sum(rss.values())) / 2**20, 1),
        **{name: round(value / 2**20, 1) for name, value in rss.items()},
    }


async def _placement(
    target: Target, names: list[str], rss_parts: dict[str, float]
) -> dict[str, Any]:
    """Which worker holds each room and how many each holds; the processes' empty-node RSS."""
    rooms = await asyncio.to_thread(room_workers, target.http_url)
    counts = Counter(rooms.values())
    return {
        "room_workers": dict(sorted(rooms.items())),
        "rooms_per_worker": {name: counts[name] for name in names},
        "server_rss_empty_processes_mb": rss_parts,
    }


def summary(result: dict[str, Any]) -> str:
    """A few human lines about one result."""
    r = result
    ratio = ", ".join(f"{k} {v:.4f}" for k, v in r["delivery_ratio"].items() if v is not None)
    lat, sfu = r["latency_ms"], r["sfu_latency_ms"]
    join, lag = r["join_ms"], r["generator_loop_lag_ms"]
    empty_mb = r.get("server_rss_empty_mb")
    empty = f"empty node {empty_mb} MB, " if empty_mb is not None else ""
    return "\n".join(
        [
            f"{r['scenario']} on {r.get('server', 'zvonok')}: {r['participants']} participants"
            f" in {r['rooms']} room(s), {r['duration_s']} s measured"
            + (", media over ICE-TCP" if r.get("transport") == "tcp" else "")
            + (", publishers in 3-layer simulcast" if r.get("simulcast") else ""),
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
            f"  server RSS {r['server_rss_mb']} MB ({empty}{r['server_rss_per_session_kb']}"
            " kB/session);"
            f" join p50 {join['p50']} ms, max {join['max']} ms ({join['count']} joins)",
            f"  generator CPU {r['generator_cpu_percent']}%; loop lag p50/p99/max {lag['p50']}/"
            f"{lag['p99']}/{lag['max']} ms; errors {len(r['errors'])}",
            *_simulcast_lines(r),
            *_worker_lines(r),
            *_cluster_lines(r),
        ]
    )


def _simulcast_lines(r: dict[str, Any]) -> list[str]:
    """``--simulcast``: the lower layers' packets, sent and arrived (expected: none)."""
    layers = r.get("simulcast_lower_layers")
    if not layers:
        return []
    sent, arrived = layers["sent"], layers["arrived"]
    off = ", ".join(f"{k} ×{n}" for k, n in layers["layers_turned_off"].items()) or "none"
    return [
        "  simulcast: delivery counts the top layer (f) only; lower layers sent "
        + ", ".join(f"{k} {sent[k]}" for k in sorted(sent))
        + ", arrived at subscribers "
        + ", ".join(f"{k} {arrived[k]}" for k in sorted(arrived)),
        f"  dynacast: {layers['publish_layers_messages']} publish-layers, turning off {off};"
        + (" followed" if layers["dynacast_followed"] else " not followed (all 3 layers sent)"),
    ]


def _cluster_lines(r: dict[str, Any]) -> list[str]:
    """``--nodes 2``: join latency through the room's owner (direct) and through the other node."""
    split = r.get("cluster")
    if not split:
        return []
    lines = []
    for name in ("direct", "relayed"):
        j, m = split[name]["joined_ms"], split[name]["first_media_ms"]
        lines.append(
            f"  {name}: {j['count']} joins; WebSocket open → joined p50/p95 {j['p50']}/{j['p95']}"
            f" ms; → first media p50/p95 {m['p50']}/{m['p95']} ms"
        )
    for node, seen in split.get("nodes", {}).items():
        legs = ", ".join(
            f"{leg} {v.get('p50_ms')}/{v['mean_ms']} ms ×{v['count']}"
            for leg, v in seen.get("legs", {}).items()
        )
        located = ", ".join(f"{k} {n}" for k, n in seen.get("located", {}).items() if n)
        lines.append(
            f"  {node} relay legs (p50/mean): {legs or 'none'}; owner found: {located or '-'}"
        )
    return lines


def _worker_lines(r: dict[str, Any]) -> list[str]:
    """The front and each media worker: CPU over the window, RSS, rooms held."""
    workers = r.get("server_workers")
    if not workers:
        return []
    per_room = r.get("rooms_per_worker", {})
    lines = [
        f"  {len(workers)} media workers, rooms per worker "
        + ", ".join(f"{name}: {per_room.get(name, 0)}" for name in workers)
        + f"; front CPU {r['server_front_cpu_percent']}% ({r['server_front_cpu_s']} s)"
    ]
    lines += [
        f"  worker {name} (pid {w['pid']}): CPU {w['cpu_percent']}% ({w['cpu_s']} s),"
        f" RSS {w['rss_mb']} MB, {per_room.get(name, 0)} room(s)"
        for name, w in workers.items()
    ]
    return lines


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")


def median_of(results: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in results if r.get(key) is not None]
    return float(statistics.median(values)) if values else 0.0
