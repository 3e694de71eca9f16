"""Medians of the session-11 workers batches (run.sh): CPU µs per delivered packet (schedstat,
every process of the node), join p50, CPU of the front and of each worker (% of a core), per
scenario and variant (w1, w2before, w2after). Run from the repository root with any Python 3:
    python3 docs/bench-results/2026-12-06-s11-workers/summarize.py [FOLDER ...]"""
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent
VARIANTS = ("w1", "w2before", "w2after")


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def show(folder):
    print(f"## {folder.name}")
    print("| scenario | variant | delivered/s | server CPU % | µs/pkt (runs) | Δ vs w1 | join p50 ms (runs) "
          "| Δ vs w1 | front CPU % | CPU % per worker | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for scen in ("fanout-2x20", "mesh-4", "mesh-4x8"):
        base = None
        for v in VARIANTS:
            rs = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{v}-{scen}-*.json"))]
            if not rs:
                continue
            us = [r["cpu_us_per_delivered_packet"] for r in rs]
            join = [r["join_ms"]["p50"] for r in rs]
            m, j = med(us), med(join)
            if v == "w1":
                base = (m, j)
            d_us = f"{(m / base[0] - 1) * 100:+.1f}%" if base and v != "w1" else ""
            d_join = f"{j - base[1]:+.1f} ms" if base and v != "w1" else ""
            # the parts in % of a core to 3 decimals, from their CPU seconds (the JSON rounds to 2)
            front = [r["server_front_cpu_s"] / r["duration_s"] * 100
                     for r in rs if r.get("server_front_cpu_s") is not None]
            front = round(statistics.median(front), 3) if front else None
            workers = {}
            for r in rs:
                for name, w in (r.get("server_workers") or {}).items():
                    workers.setdefault(name, []).append(w["cpu_s"] / r["duration_s"] * 100)
            wk = " / ".join(f"{round(statistics.median(c), 3)}" for _, c in sorted(workers.items()))
            print(f"| {scen} | {v} | {med([r['delivered_per_s'] for r in rs])} "
                  f"| {med([r['server_cpu_percent'] for r in rs])} "
                  f"| **{m}** ({', '.join(str(x) for x in us)}) | {d_us} "
                  f"| {j} ({', '.join(str(x) for x in join)}) | {d_join} "
                  f"| {front if front is not None else ''} | {wk} | {len(rs)} |")
    print()


def idle():
    """idle-node/idle.jsonl: medians of the idle node's CPU (% of a core) and wake-ups/s."""
    path = HERE / "idle-node/idle.jsonl"
    if not path.exists():
        return
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print("## idle-node")
    print("| variant | whole node % (runs) | front % | each worker % | wake-ups/s front; workers | runs |")
    print("|---|---|---|---|---|---|")
    for v in VARIANTS:
        rs = [r["result"] for r in runs if r["run"].startswith(v + "-")]
        if not rs:
            continue
        total = [r["total_pct"] for r in rs]
        workers = sorted(x for r in rs for x in r["workers_pct"].values())
        wake_front = med([r["wakeups_per_s"]["front"] for r in rs])
        wake_workers = med([x for r in rs for n, x in r["wakeups_per_s"].items() if n != "front"])
        print(f"| {v} | **{med(total)}** ({', '.join(str(x) for x in total)}) "
              f"| {med([r['front_pct'] for r in rs])} | {med(workers) if workers else ''} "
              f"| {wake_front}; {wake_workers if wake_workers is not None else ''} | {len(rs)} |")
    print()


folders = [p for p in sorted(HERE.iterdir()) if p.is_dir() and any(p.glob("*.json"))]
for arg in sys.argv[1:] or folders:
    show(Path(arg))
if not sys.argv[1:]:
    idle()
