"""CPU and wake-ups of an idle node (no session) over 20 s from 5 s after start: the whole tree,
each worker, the front (the rest). CPU is every thread's schedstat run time (ns); wake-ups are
schedstat's third field (times a thread was run on a CPU) of the process's threads. Usage:
    PYTHONPATH=<snapshot>/src python idle.py WORKERS"""
import asyncio, json, os, sys, tempfile, time
from pathlib import Path
from zvonok.bench.target import ProcStat, spawn_server, worker_pids


def slices(pid: int) -> int:
    """Times the threads of ``pid`` were put on a CPU (schedstat field 3), summed."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[2])
        except (OSError, IndexError):
            pass
    return total


async def main(workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = await spawn_server(Path(tmp), workers=workers)
        try:
            await asyncio.sleep(5)
            assert target.pid
            tree = ProcStat(target.pid)
            pids = {"front": target.pid, **worker_pids(target.pid)}
            parts = {n: ProcStat(p) for n, p in pids.items() if n != "front"}
            t0 = tree.cpu_seconds(); p0 = {n: p.cpu_seconds() for n, p in parts.items()}
            s0 = {n: slices(p) for n, p in pids.items()}
            start = time.monotonic()
            await asyncio.sleep(20)
            p1 = {n: p.cpu_seconds() - p0[n] for n, p in parts.items()}
            total = tree.cpu_seconds() - t0
            s1 = {n: slices(p) - s0[n] for n, p in pids.items()}
            el = time.monotonic() - start
            print(json.dumps({"workers": workers, "total_pct": round(total / el * 100, 4),
                              "workers_pct": {n: round(v / el * 100, 4) for n, v in p1.items()},
                              "front_pct": round((total - sum(p1.values())) / el * 100, 4),
                              "wakeups_per_s": {n: round(v / el, 1) for n, v in s1.items()},
                              "rss_mb": round(tree.rss_bytes() / 2**20, 1)}))
        finally:
            target.stop()

asyncio.run(main(int(sys.argv[1])))
