import sys, collections
tot = 0; incl = collections.Counter()
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n); tot += n
    seen = set()
    for fr in stack.split(";"):
        name = fr.split(" (")[0] + " " + (fr.split("/")[-1].split(":")[0] if "/" in fr else "")
        if name not in seen:
            seen.add(name); incl[name] += n
print("total", tot)
for k, v in incl.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 60):
    print(f"{100*v/tot:5.1f}% {v:5d} {k}")
