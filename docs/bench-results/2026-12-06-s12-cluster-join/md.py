"""Markdown rows for docs/benchmarks.md from a series directory."""
import glob, json, os, re, statistics, sys

d = sys.argv[1]
rows = {}
for f in sorted(glob.glob(os.path.join(d, "*.json"))):
    m = re.match(r"(.*)-(before|after)-run(\d+)\.json", os.path.basename(f))
    if not m:
        continue
    r = json.load(open(f))
    c = r["cluster"]
    rows.setdefault((m.group(1), m.group(2)), []).append((int(m.group(3)), c, r))

def med(xs):
    return statistics.median(xs)

def f1(x, signed=False):
    return ("%+.1f" if signed else "%.1f") % x

for sc in ("calls-1to1-x30", "fanout-2x10-r4"):
    print("###", sc)
    print("| code | relayed − direct, `joined` p50 | relayed p50 | direct p50 | relayed − direct, first media p50 |")
    print("|---|---|---|---|---|")
    for code in ("before", "after"):
        runs = sorted(rows.get((sc, code), []), key=lambda x: x[0])
        gap = [c["relayed"]["joined_ms"]["p50"] - c["direct"]["joined_ms"]["p50"] for _, c, _ in runs]
        rel = [c["relayed"]["joined_ms"]["p50"] for _, c, _ in runs]
        dire = [c["direct"]["joined_ms"]["p50"] for _, c, _ in runs]
        fm = [c["relayed"]["first_media_ms"]["p50"] - c["direct"]["first_media_ms"]["p50"] for _, c, _ in runs]
        print("| %s (%d runs) | **%s ms** (%s) | %s ms (%s) | %s ms (%s) | %s ms (%s) |" % (
            code, len(runs), f1(med(gap), True), ", ".join(f1(x, True) for x in gap),
            f1(med(rel)), ", ".join(f1(x) for x in rel), f1(med(dire)), ", ".join(f1(x) for x in dire),
            f1(med(fm), True), ", ".join(f1(x, True) for x in fm)))
    # legs: median over runs of each leg's p50 (edge legs on the relaying node)
    for code in ("before", "after"):
        runs = sorted(rows.get((sc, code), []), key=lambda x: x[0])
        out = []
        for node in ("bench0", "bench1"):
            for leg in ("locate", "bus", "request", "serve", "send_wait", "publish"):
                p = [c["nodes"][node]["legs"][leg]["p50_ms"] for _, c, _ in runs
                     if leg in c["nodes"].get(node, {}).get("legs", {}) and c["nodes"][node]["legs"][leg]["p50_ms"] is not None]
                mn = [c["nodes"][node]["legs"][leg]["mean_ms"] for _, c, _ in runs
                      if leg in c["nodes"].get(node, {}).get("legs", {})]
                if p:
                    out.append("%s.%s p50 %.2f mean %.2f" % (node, leg, med(p), med(mn)))
        loc = {}
        for _, c, _ in runs:
            for node, seen in c["nodes"].items():
                for k, v in seen.get("located", {}).items():
                    loc[node + "." + k] = loc.get(node + "." + k, 0) + v
        print(code, "legs (median over runs of each run's p50 / mean):", "; ".join(out))
        print(code, "located (sum):", {k: v for k, v in loc.items() if v})
