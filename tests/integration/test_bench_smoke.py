"""CI smoke run of ``zvonok bench``: a short mesh-4 against its own server must finish and deliver.

Not a timed test: it checks that the generator and the server talk (every participant connects,
media flows, the JSON result is complete), never the performance targets of docs/benchmarks.md.
Runs the real command in a subprocess (which starts and stops its own ``zvonok serve``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av  # noqa: F401  (the generator needs PyAV and websockets: a missing one is an install bug)
import pytest
import websockets  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def test_mesh4_short_run_delivers(tmp_path: Path) -> None:
    out = tmp_path / "mesh4.json"
    env_cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "zvonok", "bench", "mesh-4", "--duration", "5", "--warmup", "1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=80, check=False,
        env={**os.environ, **env_cache},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["scenario"] == "mesh-4"
    assert result["participants"] == 4
    assert result["errors"] == []
    for kind in ("audio", "video"):
        assert result["expected"][kind] > 0
        assert result["delivery_ratio"][kind] > 0.9, result
    assert result["cpu_us_per_delivered_packet"] > 0
    assert result["join_ms"]["count"] == 1
    assert "µs per delivered packet" in done.stdout
