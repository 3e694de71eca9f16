"""CPU of an idle node (no sessions) over 20 s: the whole tree, each worker, the front (the rest)."""
import asyncio, json, sys, tempfile, time
from pathlib import Path
from zvonok.bench.target import ProcStat, spawn_server, worker_pids

async def main(workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = await spawn_server(Path(tmp), workers=workers)
        try:
            await asyncio.sleep(5)
            assert target.pid
            tree = ProcStat(target.pid)
            parts = {n: ProcStat(p) for n, p in worker_pids(target.pid).items()}
            t0 = tree.cpu_seconds(); p0 = {n: p.cpu_seconds() for n, p in parts.items()}
            start = time.monotonic()
            await asyncio.sleep(20)
            p1 = {n: p.cpu_seconds() - p0[n] for n, p in parts.items()}
            total = tree.cpu_seconds() - t0
            el = time.monotonic() - start
            print(json.dumps({"workers": workers, "total_pct": round(total / el * 100, 3),
                              "workers_pct": {n: round(v / el * 100, 3) for n, v in p1.items()},
                              "front_pct": round((total - sum(p1.values())) / el * 100, 3),
                              "rss_mb": round(tree.rss_bytes() / 2**20, 1)}))
        finally:
            target.stop()

asyncio.run(main(int(sys.argv[1])))
