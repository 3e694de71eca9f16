"""Print the calls-1to1-x25 runs of this directory: base-* (main 243f993) and ring-* (the
PacketRing tree), with their medians. Usage: python summarize.py [DIR]"""
import glob, json, os, statistics, sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
for tree in ("base", "ring", "main", "pool", "main2", "final"):
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/{tree}-calls-1to1-x25-*.json"))]
    if not runs:
        continue
    def col(get):
        values = [get(r) for r in runs]
        return f"{statistics.median(values):g} ({', '.join(f'{v:g}' for v in values)})"
    print(tree, runs[0]["started_utc"], "..", runs[-1]["started_utc"])
    print("  us/delivered pkt", col(lambda r: r["cpu_us_per_delivered_packet"]))
    print("  user / system s ", col(lambda r: r["server_cpu_user_s"]), "/", col(lambda r: r["server_cpu_system_s"]))
    print("  SFU-added p50   ", col(lambda r: r["sfu_latency_ms"]["p50"]))
    print("  SFU-added p95   ", col(lambda r: r["sfu_latency_ms"]["p95"]))
    print("  SFU-added p99   ", col(lambda r: r["sfu_latency_ms"]["p99"]))
    print("  RSS MB          ", col(lambda r: r["server_rss_mb"]))
    print("  RSS empty MB    ", col(lambda r: r["server_rss_empty_mb"]))
    print("  kB per session  ", col(lambda r: r["server_rss_per_session_kb"]))
    print("  delivery a/v    ", col(lambda r: r["delivery_ratio"]["audio"]), col(lambda r: r["delivery_ratio"]["video"]))
    print("  nacks seen      ", col(lambda r: r["nacks_seen"]))
