"""The benchmark page's tables come from the result files: medians per (server, scenario)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zvonok.bench.tables import table


def _write(directory: Path, name: str, **fields: Any) -> None:
    result = {
        "scenario": "mesh-4", "server": "zvonok", "delivered_per_s": 1500.0,
        "server_cpu_percent": 2.0, "cpu_us_per_delivered_packet": 10.0,
        "delivery_ratio": {"audio": 1.0, "video": 0.999}, "duplicates": {"audio": 0, "video": 1},
        "unexpected": {"audio": 0, "video": 0},
        "sfu_latency_ms": {"p50": 0.1, "p95": 0.2, "p99": 0.3},
        "latency_ms": {"p99": 0.9}, "server_rss_mb": 90.0, "server_rss_per_session_kb": 900.0,
        "join_ms": {"p50": 106.0, "max": 110.0}, "generator_cpu_percent": 8.0,
        "generator_loop_lag_ms": {"p99": 1.1}, "keyframe_requests_seen": 2, **fields,
    }  # fmt: skip
    (directory / name).write_text(json.dumps(result))


def test_rows_are_medians_with_the_runs_listed(tmp_path: Path) -> None:
    for run, us in enumerate((12.0, 10.0, 14.0), 1):
        _write(tmp_path, f"x-mesh-4-{run}.json", cpu_us_per_delivered_packet=us)
    _write(tmp_path, "x-mesh-4-janus-1.json", server="janus 1.1.2",
           cpu_us_per_delivered_packet=25.0)  # fmt: skip
    _write(tmp_path, "x-idle-200-1.json", scenario="idle-200", delivered_per_s=0.0,
           cpu_us_per_delivered_packet=None, server_cpu_percent=1.5,
           server_rss_empty_mb=58.5)  # fmt: skip
    _write(tmp_path, "x-idle-200-janus-1.json", scenario="idle-200", server="janus 1.1.2",
           delivered_per_s=0.0, cpu_us_per_delivered_packet=None)  # fmt: skip
    lines = table(tmp_path).splitlines()
    zvonok = next(line for line in lines if line.startswith("| mesh-4 | zvonok |"))
    assert "| 3 | 1500 | 2.00 | **12.0** (12.0, 10.0, 14.0) | 1.0000 / 0.9990 | 3, 0 |" in zvonok
    janus = lines.index(next(line for line in lines if "janus 1.1.2" in line))
    assert janus == lines.index(zvonok) + 1  # zvonok first, then Janus, per scenario
    assert "| idle-200 | zvonok | 1 | **1.50** (1.50) | 90.0 (900) | 58.5 |" in lines
    # a result without the empty node's RSS (a file from before it was measured)
    assert "| idle-200 | janus 1.1.2 | 1 | **2.00** (2.00) | 90.0 (900) | – |" in lines


def test_runs_with_workers_get_a_workers_row(tmp_path: Path) -> None:
    for run, (spread, cpu0) in enumerate((((4, 4), 10.0), ((5, 3), 12.0), ((4, 4), 11.0)), 1):
        _write(
            tmp_path, f"w2-mesh-4-{run}.json", server="zvonok, 2 workers",
            server_workers={"0": {"cpu_percent": cpu0}, "1": {"cpu_percent": 9.0}},
            rooms_per_worker={"0": spread[0], "1": spread[1]}, server_front_cpu_percent=0.5,
            server_rss_empty_processes_mb={"front": 65.0, "0": 60.0, "1": 61.0},
            server_rss_empty_mb=186.0,
        )  # fmt: skip
    _write(tmp_path, "w1-mesh-4-1.json")
    lines = table(tmp_path).splitlines()
    assert any(line.startswith("| mesh-4 | zvonok, 2 workers | 3 | 1500 |") for line in lines)
    assert (
        "| mesh-4 | zvonok, 2 workers | 3 | 4/4, 5/3, 4/4 | 11.00 / 9.00 | 0.50 "
        "| 65.0 + 60.0 + 61.0 = 186.0 |"
    ) in lines
    # the one-process run has no workers row
    assert sum(line.startswith("| mesh-4 | zvonok |") for line in lines) == 1
