"""Per-run and median figures of a series directory: relayed - direct joined p50, etc."""
import glob
import json
import os
import re
import statistics
import sys

d = sys.argv[1]
rows = {}
for f in sorted(glob.glob(os.path.join(d, "*.json"))):
    m = re.match(r"(.*)-(before|after)-run(\d+)\.json", os.path.basename(f))
    if not m:
        continue
    sc, code, i = m.group(1), m.group(2), int(m.group(3))
    r = json.load(open(f))
    c = r["cluster"]
    dj, rj = c["direct"]["joined_ms"], c["relayed"]["joined_ms"]
    dm, rm = c["direct"]["first_media_ms"], c["relayed"]["first_media_ms"]
    legs = {}
    for node, seen in c.get("nodes", {}).items():
        for leg, v in seen.get("legs", {}).items():
            legs[node + "." + leg] = v
    rows.setdefault((sc, code), []).append(dict(
        i=i, d=dj["p50"], r=rj["p50"], gap=round(rj["p50"] - dj["p50"], 1),
        fm=round(rm["p50"] - dm["p50"], 1), dn=dj["count"], rn=rj["count"],
        dfm=dm["p50"], rfm=rm["p50"], errors=len(r["errors"]),
        deliv=tuple(sorted(r["delivery_ratio"].items())), legs=legs))


def fmt(v, signed=False):
    return ("%+.1f" if signed else "%.1f") % v


for (sc, code), runs in sorted(rows.items()):
    runs.sort(key=lambda x: x["i"])

    def med(k):
        return statistics.median(x[k] for x in runs)

    def each(k, signed=False):
        return ", ".join(fmt(x[k], signed) for x in runs)

    print("%s %s n=%d" % (sc, code, len(runs)))
    print("   gap      %s (%s)" % (fmt(med("gap"), True), each("gap", True)))
    print("   relayed  %s (%s)" % (fmt(med("r")), each("r")))
    print("   direct   %s (%s)" % (fmt(med("d")), each("d")))
    print("   fm gap   %s (%s)" % (fmt(med("fm"), True), each("fm", True)))
    print("   fm rel   %s (%s)  fm dir %s (%s)" % (fmt(med("rfm")), each("rfm"), fmt(med("dfm")), each("dfm")))
    print("   counts %s errors %d deliv %s" % (sorted({(x["dn"], x["rn"]) for x in runs}),
          sum(x["errors"] for x in runs), {x["deliv"] for x in runs}))
    for k in sorted({k for x in runs for k in x["legs"]}):
        vals = [x["legs"].get(k) for x in runs]
        p50 = [v.get("p50_ms") if v else None for v in vals]
        mean = [v.get("mean_ms") if v else None for v in vals]
        cnt = [v.get("count") if v else None for v in vals]
        print("     %-18s p50 %s mean %s n %s" % (k, p50, mean, cnt))
