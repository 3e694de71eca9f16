"""``ProcStat`` reads a real process tree's CPU time from schedstat, in nanoseconds."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from zvonok.bench.target import ProcStat


def test_cpu_seconds_counts_a_busy_child_finer_than_clock_ticks() -> None:
    # a child that spins ~0.2 s of CPU: the tree's reading grows by about that, in ns steps
    child = subprocess.Popen(
        [sys.executable, "-c", "import time,sys\nt=time.process_time()\n"
         "while time.process_time()-t<0.2: pass\nsys.stdin.read()"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    try:
        proc = ProcStat(os.getpid())
        before = proc.cpu_seconds()
        deadline = time.monotonic() + 20
        child_stat = ProcStat(child.pid)
        while child_stat.cpu_seconds() < 0.2 and time.monotonic() < deadline:
            time.sleep(0.02)
        after = proc.cpu_seconds()
        assert after - before >= 0.15
        # nanosecond resolution: not a multiple of a 10 ms tick
        assert round(child_stat.cpu_seconds() * 100) != child_stat.cpu_seconds() * 100
        user, system = proc.cpu_times()
        assert user + system > 0
    finally:
        child.stdin.close()  # type: ignore[union-attr]
        child.wait(10)
