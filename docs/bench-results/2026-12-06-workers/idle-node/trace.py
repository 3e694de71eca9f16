import asyncio, subprocess, sys, tempfile
from pathlib import Path
from zvonok.bench.target import spawn_server, worker_pids

async def main(workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = await spawn_server(Path(tmp), workers=workers)
        try:
            await asyncio.sleep(5)
            assert target.pid
            pids = {"front": target.pid, **worker_pids(target.pid)}
            procs = {n: subprocess.Popen(["timeout", "-s", "INT", "10", "strace", "-f", "-c", "-p", str(p)], stderr=subprocess.PIPE, text=True) for n, p in pids.items()}
            for n, pr in procs.items():
                _, err = pr.communicate()
                lines = [l for l in err.splitlines() if l.strip()][:12]
                print(f"== workers={workers} {n}\n" + "\n".join(lines))
        finally:
            target.stop()

asyncio.run(main(int(sys.argv[1])))
