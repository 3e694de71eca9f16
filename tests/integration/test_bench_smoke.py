"""CI smoke run of ``zvonok bench``: a short mesh-4 against its own server must finish and deliver.

Not a timed test: it checks that the generator and the server talk (every participant connects,
media flows, the JSON result is complete, both latencies are measured, with and without the video
pacer; at least 99% of the packets arrive, each once, and only from the publishers a receiver
subscribes to; with ``--workers 2``, both media workers are found and measured and the rooms are
located on them), never the CPU or latency targets of docs/benchmarks.md. Runs the real command in a
subprocess (which starts and stops its own ``zvonok serve``). The same run with every
participant's media over ICE-TCP (``run_bench(tcp=True)``, what ``zvonok bench --tcp`` runs; the
generator then opens no UDP socket at all, so what arrives came over TCP) prints the same numbers.
With ``--simulcast`` every publisher offers and sends three simulcast layers: every top-layer
packet must arrive (the server forwards each subscriber the top layer when nothing limits it) and
no lower-layer packet. Also checks the pacer's budget arithmetic (``bench.client.Pacer``) without
a server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import av  # noqa: F401  (the generator needs PyAV and websockets: a missing one is an install bug)
import pytest
import websockets  # noqa: F401

from zvonok.bench.client import PACE_INTERVAL, Pacer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def _bench(tmp_path: Path, *extra: str, duration: str = "5") -> tuple[dict[str, Any], str]:
    out = tmp_path / "mesh4.json"
    env_cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "zvonok", "bench", "mesh-4", "--duration", duration, "--warmup",
         "1", "--json", str(out), *extra],
        capture_output=True, text=True, timeout=80, check=False,
        env={**os.environ, **env_cache},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_mesh4_short_run_delivers(tmp_path: Path) -> None:
    result, stdout = _bench(tmp_path)
    assert result["scenario"] == "mesh-4"
    assert result["participants"] == 4
    assert result["errors"] == []
    assert result["pacing"] is True
    for kind in ("audio", "video"):
        assert result["expected"][kind] > 0
        assert result["delivery_ratio"][kind] >= 0.99, result
    # every packet once, and only from the publishers each receiver subscribes to
    assert result["duplicates"] == {"audio": 0, "video": 0}, result
    assert result["unexpected"] == {"audio": 0, "video": 0}, result
    assert result["cpu_us_per_delivered_packet"] > 0
    assert result["join_ms"]["count"] == 1
    # every delivered packet has a kernel receive timestamp, which precedes the event loop's
    sfu, e2e = result["sfu_latency_ms"], result["latency_ms"]
    assert sfu["no_timestamp"] == 0
    assert 0 < sfu["p50"] <= e2e["p50"]
    assert sfu["p99"] <= e2e["p99"] and sfu["max"] <= e2e["max"]
    assert "µs per delivered packet" in stdout
    assert "SFU-added latency" in stdout and "end-to-end latency" in stdout


def test_mesh4_without_pacing_delivers(tmp_path: Path) -> None:
    result, stdout = _bench(tmp_path, "--no-pacing", duration="2")
    assert result["pacing"] is False
    assert result["errors"] == []
    assert result["delivery_ratio"]["video"] >= 0.99, result
    assert result["duplicates"] == {"audio": 0, "video": 0}, result
    assert result["unexpected"] == {"audio": 0, "video": 0}, result
    assert result["sfu_latency_ms"]["count"] > 0
    assert "in bursts" in stdout


def test_mesh4_two_workers_counts_every_process(tmp_path: Path) -> None:
    result, stdout = _bench(tmp_path, "--workers", "2", "--rooms", "2", duration="3")
    assert result["errors"] == []
    assert result["workers"] == 2
    for kind in ("audio", "video"):
        assert result["delivery_ratio"][kind] >= 0.99, result
    workers = result["server_workers"]
    assert set(workers) == {"0", "1"}
    assert len({w["pid"] for w in workers.values()}) == 2
    # both rooms sit on a worker the bench found, and a worker holding a room did work
    assert set(result["room_workers"].values()) <= {"0", "1"}
    assert sum(result["rooms_per_worker"].values()) == 2
    for name, rooms in result["rooms_per_worker"].items():
        if rooms:
            assert workers[name]["cpu_s"] > 0, result
    # the CPU per packet counts the front and every worker: the workers' CPU is part of it
    assert result["server_front_cpu_s"] >= 0
    # (each figure is counted in 10 ms ticks and rounded: their sum may pass the total slightly)
    slack = 0.005 * (len(workers) + 1) + 1e-9
    assert sum(w["cpu_s"] for w in workers.values()) <= result["server_cpu_s"] + slack
    assert set(result["server_rss_empty_processes_mb"]) == {"front", "0", "1"}
    assert "worker 0 (pid" in stdout and "worker 1 (pid" in stdout


def test_mesh4_simulcast_publishers_deliver_every_top_layer_packet(tmp_path: Path) -> None:
    result, stdout = _bench(tmp_path, "--simulcast", duration="3")
    assert result["simulcast"] is True
    assert result["errors"] == []  # the expected glare of each publisher's own offer is no error
    assert result["expected"]["video"] > 0
    assert result["delivered"]["video"] == result["expected"]["video"], result  # every f packet
    assert result["delivery_ratio"]["audio"] >= 0.99, result
    assert result["duplicates"] == {"audio": 0, "video": 0}, result
    assert result["unexpected"] == {"audio": 0, "video": 0}, result
    layers = result["simulcast_lower_layers"]
    assert layers["sent"]["h"] > 0 and layers["sent"]["q"] > 0
    assert layers["arrived"] == {"h": 0, "q": 0}, result
    assert "publishers in 3-layer simulcast" in stdout


#: ``run_bench(tcp=True)`` in a subprocess, as ``zvonok bench mesh-4 --tcp`` runs it.
TCP_RUN = """
import json, sys, uvloop
from zvonok.bench.runner import run_bench, summary
result = uvloop.run(run_bench(
    "mesh-4", duration=4, rooms=None, url=None, data_dir=None, server_pid=None, warmup=1,
    progress=lambda line: None, tcp=True,
))
print(summary(result))
open(sys.argv[1], "w").write(json.dumps(result))
"""


def test_mesh4_over_ice_tcp_delivers(tmp_path: Path) -> None:
    out = tmp_path / "mesh4-tcp.json"
    done = subprocess.run(
        [sys.executable, "-c", TCP_RUN, str(out)], capture_output=True, text=True, timeout=80,
        check=False, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["transport"] == "tcp"
    assert result["errors"] == []
    for kind in ("audio", "video"):
        assert result["delivery_ratio"][kind] >= 0.99, result
    assert result["duplicates"] == {"audio": 0, "video": 0}, result
    assert result["unexpected"] == {"audio": 0, "video": 0}, result
    assert result["cpu_us_per_delivered_packet"] > 0
    assert 0 < result["sfu_latency_ms"]["p50"] <= result["latency_ms"]["p50"]
    assert "media over ICE-TCP" in done.stdout and "µs per delivered packet" in done.stdout
    print(done.stdout)


def test_pacer_budget_is_paid_down_and_does_not_build_up() -> None:
    per_tick = 1000.0
    pacer = Pacer(per_tick * 8 / PACE_INTERVAL, 0.0)
    assert pacer.next_tick == pytest.approx(0.0)
    pacer.refill(0.0)
    assert pacer.budget == pytest.approx(per_tick)
    pacer.spend(1200)  # a packet may overdraw the budget: the debt carries over
    assert pacer.budget == pytest.approx(-200)
    pacer.refill(0.004)  # before the next tick: nothing
    assert pacer.budget == pytest.approx(-200)
    pacer.refill(PACE_INTERVAL)
    assert pacer.budget == pytest.approx(800)
    pacer.refill(2 * PACE_INTERVAL)  # unused budget is replaced, not accumulated
    assert pacer.budget == pytest.approx(per_tick)
    pacer.spend(3500)
    pacer.refill(4 * PACE_INTERVAL)  # two ticks pay down 2000 of the 2500 debt
    assert pacer.budget == pytest.approx(-500)
    pacer.refill(10 * PACE_INTERVAL)  # long idle: back to one tick's budget
    assert pacer.budget == pytest.approx(per_tick)
    assert pacer.next_tick == pytest.approx(11 * PACE_INTERVAL)
    pacer.spend(10**9)  # the debt is capped at half a second of the rate
    assert pacer.budget == pytest.approx(-per_tick / PACE_INTERVAL * 0.5)
