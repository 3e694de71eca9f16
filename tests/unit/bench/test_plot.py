"""The benchmark plot draws only what its input holds and says what that was.

``bench.plot.medians`` and ``describe`` read ``LABEL-SCENARIO-RUN.json`` files; no Janus series
appears unless Janus runs are among them, and the title's machine, run count, window, pacing and
date come from the files (matplotlib itself is not needed for this).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zvonok.bench.plot import describe, medians

MACHINE = {"cpus": 2, "cpu_model": "Test CPU", "kernel": "6.1"}


def _write(directory: Path, name: str, **fields: Any) -> None:
    result = {
        "scenario": "mesh-4", "server": "zvonok", "duration_s": 15.02, "pacing": True,
        "cpu_us_per_delivered_packet": 10.0, "machine": MACHINE,
        "started_utc": "2026-12-05T20:00:00+00:00", **fields,
    }  # fmt: skip
    (directory / name).write_text(json.dumps(result))


def test_only_the_input_series_are_drawn(tmp_path: Path) -> None:
    for run, value in enumerate((10.0, 14.0, 12.0), 1):
        _write(tmp_path, f"now-mesh-4-{run}.json", cpu_us_per_delivered_packet=value)
    _write(tmp_path, "now-fanout-2x20-1.json", scenario="fanout-2x20",
           cpu_us_per_delivered_packet=7.0)  # fmt: skip
    (tmp_path / "now-idle-200-1.json").write_text(json.dumps({"scenario": "idle-200"}))
    assert medians(tmp_path) == {"zvonok (now)": {"mesh-4": 12.0, "fanout-2x20": 7.0}}
    title = describe(tmp_path)
    assert "2 CPUs (Test CPU)" in title
    assert "medians of 1–3 run(s) of 15 s" in title and "paced video" in title
    assert "2026-12-05" in title and "janus" not in title.lower()


def test_janus_runs_are_their_own_series(tmp_path: Path) -> None:
    _write(tmp_path, "now-mesh-4-1.json")
    _write(tmp_path, "now-mesh-4-2.json", server="janus 1.1.2", pacing=False,
           started_utc="2026-12-06T01:00:00+00:00", machine=None)  # fmt: skip
    assert set(medians(tmp_path)) == {"zvonok (now)", "janus 1.1.2 (now)"}
    title = describe(tmp_path)
    assert "machine not recorded" in title and "2 CPUs" in title
    assert "paced video / video in bursts" not in title  # sorted: bursts first
    assert "video in bursts / paced video" in title
    assert "2026-12-05 – 2026-12-06" in title


def test_no_results_no_claims(tmp_path: Path) -> None:
    assert medians(tmp_path) == {}
    assert describe(tmp_path) == "no results"
