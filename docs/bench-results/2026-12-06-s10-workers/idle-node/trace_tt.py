"""strace -f -tt on every process of an idle node for 10 s, 5 s after start; raw logs to OUT dir."""
import asyncio, subprocess, sys, tempfile
from pathlib import Path
from zvonok.bench.target import spawn_server, worker_pids

async def main(workers: int, out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = await spawn_server(Path(tmp), workers=workers)
        try:
            await asyncio.sleep(5)
            assert target.pid
            pids = {"front": target.pid, **worker_pids(target.pid)}
            procs = {n: subprocess.Popen(["timeout", "-s", "INT", "10", "strace", "-f", "-tt", "-o", f"{out}/w{workers}-{n}.strace", "-p", str(p)], stderr=subprocess.DEVNULL) for n, p in pids.items()}
            for pr in procs.values():
                pr.wait()
        finally:
            target.stop()

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
