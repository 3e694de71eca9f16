"""The legs table for docs/benchmarks.md: per scenario, the median over runs of each run's leg
median (bucket-interpolated, ms) and mean, before -> after."""
import glob, json, os, re, statistics, sys

d = sys.argv[1]
runs = {}
for f in sorted(glob.glob(os.path.join(d, "*.json"))):
    m = re.match(r"(.*)-(before|after)-run(\d+)\.json", os.path.basename(f))
    if m:
        runs.setdefault((m.group(1), m.group(2)), []).append(json.load(open(f))["cluster"]["nodes"])

ROWS = [
    ("bench1", "locate", "edge: the join's wait for the lease lookup and the binding"),
    ("bench1", "bus", "edge: the request's two pub/sub hops (request − serve)"),
    ("bench1", "request", "edge: the `join` request until its answer"),
    ("bench0", "serve", "owner: the relayed join there"),
    ("bench0", "send_wait", "owner: a message's wait on the signal bus's send queue"),
]


def val(nodes, node, leg, key):
    v = nodes.get(node, {}).get("legs", {}).get(leg)
    return None if v is None else v.get(key)


for sc, title in (("calls-1to1-x30", "1:1"), ("fanout-2x10-r4", "group")):
    print("| leg (%s; `bench1` relays to `bench0`) | before p50 / mean | after p50 / mean |" % title)
    print("|---|---|---|")
    for node, leg, what in ROWS:
        cells = []
        for code in ("before", "after"):
            p = [val(n, node, leg, "p50_ms") for n in runs[(sc, code)]]
            m = [val(n, node, leg, "mean_ms") for n in runs[(sc, code)]]
            p = [x for x in p if x is not None]
            m = [x for x in m if x is not None]
            cells.append("%s / %s ms" % ("%.1f" % statistics.median(p) if p else "–",
                                         "%.1f" % statistics.median(m) if m else "–"))
        print("| %s | %s | %s |" % (what, cells[0], cells[1]))
    print()
