import subprocess, re, sys
commits = [l.strip() for l in open('/tmp/commits.txt')]
lo, hi = -1, len(commits) - 1   # lo: index known good (70193da = -1), hi: known bad (236d4d0)
log = open('bisect.log', 'a')
while hi - lo > 1:
    mid = (lo + hi) // 2
    c = commits[mid][:9]
    out = subprocess.run(["flock", "/tmp/zvonok-it.lock", "timeout", "300", "sh", "docs/bench-results/2026-12-06-issue17-light/bisect/persess.sh", c], capture_output=True, text=True).stdout
    m = re.search(r"([\d.]+) kB/session", out)
    kb = float(m.group(1)) if m else None
    print(mid, c, kb, out.strip()[:200], file=log, flush=True)
    if kb is None:
        print("no result", file=log, flush=True); break
    if kb > 165: hi = mid
    else: lo = mid
print("first bad:", commits[hi], file=log, flush=True)
