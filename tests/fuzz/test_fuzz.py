"""Runs every atheris harness (``tests/fuzz/fuzz_<target>.py``) with a fixed budget.

Each harness runs as a subprocess (libFuzzer owns the process) for ``RUNS`` inputs of at most
``MAX_LEN`` bytes, seeded from its corpus ``tests/fuzz/corpus/<target>/``. The corpus is passed
as the second, read-only seed directory; libFuzzer writes new inputs only into the first, a
temporary directory, and crash artifacts under the test's temp dir, so a run never changes the
repository. A crash, an uncaught exception or a failed assertion in a harness fails the test
with the harness's report. Skipped when atheris is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import atheris  # noqa: F401  (a missing fuzzer is an install bug, never a skip)
import pytest

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
TARGETS = ("signaling", "sdp", "candidate", "rtp", "rtcp", "stun")
#: Inputs per harness; raise it for a longer local campaign (``ZVONOK_FUZZ_RUNS=200000``).
RUNS = int(os.environ.get("ZVONOK_FUZZ_RUNS", "3000"))
MAX_LEN = 4096
TIMEOUT = max(45.0, RUNS / 100)

pytestmark = pytest.mark.timeout(TIMEOUT + 15)


@pytest.mark.parametrize("target", TARGETS)
def test_harness_survives_its_budget(target: str, tmp_path: Path) -> None:
    seeds = CORPUS / target
    assert any(seeds.iterdir()), f"empty corpus {seeds}"
    scratch = tmp_path / "new"
    scratch.mkdir()
    argv = [
        sys.executable, str(HERE / f"fuzz_{target}.py"),
        f"-runs={RUNS}", f"-max_len={MAX_LEN}", "-seed=1", "-timeout=10", "-rss_limit_mb=1024",
        f"-artifact_prefix={tmp_path}/", str(scratch), str(seeds),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False, cwd=tmp_path
    )
    report = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"fuzz_{target} failed ({done.returncode}):\n{report}"
    assert f"Done {RUNS} runs" in report, report
    assert not list(tmp_path.glob("crash-*")), report
