"""Medians of the session-10 workers batch (run.sh): µs per delivered packet, join p50, CPU of
the front and of each worker, per scenario and variant (w1, w2before, w2after); and the join
phases (join-phases/out.jsonl). Run from the repository root with any Python 3."""
import json, statistics, sys
from pathlib import Path

HERE = Path(__file__).parent
VARIANTS = ("w1", "w2before", "w2after")


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def runs(dir_, variant, scen):
    out = []
    for p in sorted((HERE / dir_).glob(f"{variant}-{scen}-*.json")):
        out.append(json.loads(p.read_text()))
    return out


for dir_, scen in (("pairs", "fanout-2x20"), ("pairs", "mesh-4"), ("rooms8", "mesh-4x8")):
    base = None
    for v in VARIANTS:
        rs = runs(dir_, v, scen)
        if not rs:
            continue
        us = [r["cpu_us_per_delivered_packet"] for r in rs]
        join = [r["join_ms"]["p50"] for r in rs]
        m = med(us)
        if v == "w1":
            base = (m, med(join))
        d_us = f"{(m / base[0] - 1) * 100:+.0f}%" if base and v != "w1" else ""
        d_join = f"{med(join) - base[1]:+.1f} ms" if base and v != "w1" else ""
        front = med([r.get("server_front_cpu_percent") for r in rs])
        workers = {}
        for r in rs:
            for name, w in (r.get("server_workers") or {}).items():
                workers.setdefault(name, []).append(w["cpu_percent"])
        wk = " / ".join(f"{med(c)}" for _, c in sorted(workers.items()))
        rpw = [json.dumps(r.get("rooms_per_worker")) for r in rs if r.get("rooms_per_worker")]
        print(f"| {scen} | {v} | {med([r['delivered_per_s'] for r in rs])} | {med([r['server_cpu_percent'] for r in rs])} "
              f"| **{m}** ({', '.join(str(x) for x in us)}) | {d_us} | {med(join)} ({', '.join(str(x) for x in join)}) | {d_join} "
              f"| {front if front is not None else ''} | {wk} | {' '.join(rpw)} | {len(rs)} |")

print()
phases = [json.loads(l) for l in (HERE / "join-phases/out.jsonl").read_text().splitlines() if l.strip()]
for scen in ("fanout", "mesh8"):
    for v in VARIANTS:
        rs = [p["result"] for p in phases if p["run"].startswith(f"ph-{v}-{scen}-") and p.get("result")]
        if not rs:
            continue
        print(f"| {scen} | {v} | {med([r['join_p50'] for r in rs])} ({', '.join(str(r['join_p50']) for r in rs)}) "
              f"| {med([r['to_joined_p50'] for r in rs])} | {med([r['to_srtp_p50'] for r in rs])} | {med([r['srtp_to_rx_p50'] for r in rs])} | {len(rs)} |")
