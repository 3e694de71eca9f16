import sys, uvloop, json
from zvonok.bench.runner import run_bench, summary
r = uvloop.run(run_bench(sys.argv[1], duration=float(sys.argv[3]), rooms=None, url=None, data_dir=None, server_pid=None, warmup=2, progress=lambda l: None, tcp=sys.argv[2] == "tcp"))
print(summary(r)); print("ERRORS", r["errors"][:3])
json.dump(r, open(f"docs/bench-results/2026-12-06-ice-tcp/{sys.argv[2]}-{sys.argv[1]}-{sys.argv[4]}.json", "w"))
