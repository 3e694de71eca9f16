"""Runs every atheris harness (``tests/fuzz/fuzz_<target>.py``) twice: a fixed-seed regression
run and a time-boxed run with a fresh seed.

Each harness runs as a subprocess (libFuzzer owns the process) on inputs of at most ``MAX_LEN``
bytes, seeded from its corpus ``tests/fuzz/corpus/<target>/``. The corpus is passed as the
second, read-only seed directory; libFuzzer writes the new inputs it finds only into the first, a
temporary directory. The regression run (``-seed=1``, ``RUNS`` inputs) is the same every time
and replays the whole corpus, crashes found earlier included; its artifacts go to the test's temp
dir. The fresh run (a new random seed each time, or ``ZVONOK_FUZZ_SEED``; ``FRESH_SECONDS`` per
harness) explores further; its seed is printed and named in any failure, and the input of a
crash, timeout or out-of-memory it finds is kept in the corpus directory
(``<seed>-crash-<sha1>``), where the regression run replays it from then on: fix the bug, and
commit the input with the fix. A crash, an uncaught exception or a failed assertion in a harness
fails the test with the harness's report. atheris is a test dependency: missing, the import
fails (an install bug, never a skip).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import atheris  # noqa: F401  (a missing fuzzer is an install bug, never a skip)
import pytest

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
TARGETS = ("signaling", "sdp", "candidate", "rtp", "rtcp", "stun", "relay")
#: Inputs per harness; raise it for a longer local campaign (``ZVONOK_FUZZ_RUNS=200000``).
RUNS = int(os.environ.get("ZVONOK_FUZZ_RUNS", "3000"))
#: Seconds per harness of the fresh-seed run (``ZVONOK_FUZZ_SECONDS=600`` for a campaign).
FRESH_SECONDS = int(os.environ.get("ZVONOK_FUZZ_SECONDS", "2"))
MAX_LEN = 4096
TIMEOUT = max(45.0, RUNS / 100, FRESH_SECONDS + 30.0)

pytestmark = pytest.mark.timeout(TIMEOUT + 15)


def _fuzz(
    target: str, tmp_path: Path, *budget: str, artifacts: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run harness ``target`` over its corpus with libFuzzer ``budget`` flags; (result, report)."""
    seeds = CORPUS / target
    assert any(seeds.iterdir()), f"empty corpus {seeds}"
    scratch = tmp_path / "new"
    scratch.mkdir()
    argv = [
        sys.executable, str(HERE / f"fuzz_{target}.py"), *budget, f"-max_len={MAX_LEN}",
        "-timeout=10", "-rss_limit_mb=1024", f"-artifact_prefix={artifacts}", str(scratch),
        str(seeds),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False, cwd=tmp_path
    )
    return done, (done.stdout + done.stderr)[-6000:]


@pytest.mark.parametrize("target", TARGETS)
def test_harness_survives_its_budget(target: str, tmp_path: Path) -> None:
    done, report = _fuzz(target, tmp_path, f"-runs={RUNS}", "-seed=1", artifacts=f"{tmp_path}/")
    assert done.returncode == 0, f"fuzz_{target} failed ({done.returncode}):\n{report}"
    assert f"Done {RUNS} runs" in report, report
    assert not list(tmp_path.glob("crash-*")), report


@pytest.mark.parametrize("target", TARGETS)
def test_harness_with_a_fresh_seed(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("ZVONOK_FUZZ_SEED") or secrets.randbelow(2**31 - 1) + 1)
    with capsys.disabled():  # in the CI log whatever happens
        print(f"\nfuzz_{target}: fresh seed {seed} (ZVONOK_FUZZ_SEED={seed} repeats it)")
    seeds = CORPUS / target
    before = set(seeds.iterdir())
    done, report = _fuzz(
        target, tmp_path, f"-max_total_time={FRESH_SECONDS}", f"-seed={seed}",
        artifacts=f"{seeds}/{seed}-",
    )  # fmt: skip
    kept = sorted(p.name for p in set(seeds.iterdir()) - before)
    where = f"fuzz_{target} with -seed={seed}; input kept in {seeds}: {kept}"
    assert done.returncode == 0, f"{where} failed ({done.returncode}):\n{report}"
    assert "Done " in report and not kept, f"{where}\n{report}"
