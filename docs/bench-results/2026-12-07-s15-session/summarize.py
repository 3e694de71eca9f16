"""Medians and runs of session 15's interleaved set: python summarize.py DIR."""

import glob
import json
import re
import statistics
import sys

D = sys.argv[1]


def med(v: list[float]) -> float:
    return statistics.median(v)


for sc in ["calls-1to1-x25", "mesh-4", "fanout-2x20", "idle-200"]:
    for tree in ["base", "final", "janus"]:
        fs = sorted(glob.glob(f"{D}/{sc}-{tree}-*.json"))
        if not fs:
            continue
        ds = [json.load(open(f)) for f in fs]
        if sc == "idle-200":
            v = [d["server_cpu_percent"] for d in ds]
            print(sc, tree, "cpu% med", med(v), v, "rss", [d["server_rss_mb"] for d in ds],
                  "kB/sess", [d["server_rss_per_session_kb"] for d in ds],
                  "empty", [d["server_rss_empty_mb"] for d in ds])
            continue
        n = [sum(d["delivered"].values()) for d in ds]
        v = [d["cpu_us_per_delivered_packet"] for d in ds]
        lat = [d["sfu_latency_ms"] for d in ds]
        us = [round(d["server_cpu_user_s"] * 1e6 / k, 1) for d, k in zip(ds, n)]
        sy = [round(d["server_cpu_system_s"] * 1e6 / k, 1) for d, k in zip(ds, n)]
        print(sc, tree, "us/pkt med", med(v), v, "| p99 med", med([x["p99"] for x in lat]),
              [x["p99"] for x in lat], "| p50/p95 med", med([x["p50"] for x in lat]),
              med([x["p95"] for x in lat]), "| max", [x["max"] for x in lat],
              "| user/sys us", us, sy,
              "| deliv", {(d["delivery_ratio"]["audio"], d["delivery_ratio"]["video"]) for d in ds},
              "| pkt/s", [d["delivered_per_s"] for d in ds],
              "| rss kB/sess", [d["server_rss_per_session_kb"] for d in ds])
rows = []
for f in sorted(glob.glob(f"{D}/floor-*.txt")):
    line = open(f).read().strip().splitlines()[-1]
    m = re.search(r"user ([\d.]+) \+ sys ([\d.]+) = ([\d.]+) us/packet; ([\d.]+) pkt/wake.*"
                  r"p50/p99 ([\d.]+)/([\d.]+) ms", line)
    if m:
        rows.append([float(x) for x in m.groups()])
if rows:
    cols = list(zip(*rows))
    print("floor us/pkt med", med(cols[2]), cols[2], "| user/sys", cols[0], cols[1],
          "| pkt/wake", cols[3], "| p50", cols[4], "| p99 med", med(cols[5]), cols[5])
