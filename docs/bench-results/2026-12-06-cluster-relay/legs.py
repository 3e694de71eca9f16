"""The legs of each late join, from the trace files of trace_patch.py.

python legs.py PREFIX [PREFIX...]: one PREFIX per run (PREFIX.<pid>: the bench client's and both
nodes' files); samples are pooled over the runs; p50 and mean per leg in ms, direct and relayed
joins apart (a late join is the second WebSocket opened in its room). A throwaway tool.
"""
import glob, sys, statistics, collections, json
def analyze(prefix, rows):
    procs = {}
    for path in glob.glob(prefix + ".*"):
        if path.endswith((".json", ".txt")): continue
        pid = path.rsplit(".", 1)[1]
        evs = []
        for line in open(path):
            parts = line.split()
            evs.append((int(parts[0]), parts[1], parts[2:]))
        procs[pid] = evs
    client = next(p for p, e in procs.items() if any(n == "client_open" for _, n, _ in e))
    nodes = {}
    for p, e in procs.items():
        if p == client: continue
        names = {a[0] for _, n, a in e if n == "link_send"}
        if "bus-bench1" in names: nodes[p] = "bench0"
        elif "bench0" in str(names): nodes[p] = "bench1"
        else: nodes[p] = "?" + p
    print("nodes", nodes)
    # client: per room, opens
    opens = collections.defaultdict(list)
    cjoined = {}
    for t, n, a in procs[client]:
        if n == "client_open": opens[a[2]].append((t, a[0], int(a[1])))
        if n == "client_joined": cjoined[a[0]] = t
    late = {}
    for room, lst in opens.items():
        lst.sort()
        if len(lst) >= 2:
            t, sid, node = lst[-1]
            late[sid] = (t, node)
    # per node: events by session
    def first(p, name, sid, after=0):
        for t, n, a in procs[p]:
            if n == name and a and a[0] == sid and t >= after: return t
        return None
    # link frames: (sender node, receiver node, seq) -> send time, rx time
    sends, rxs = {}, {}
    for p, e in procs.items():
        if p == client: continue
        me = nodes[p]
        for t, n, a in e:
            if n == "link_send":
                peer = a[0][4:]
                sends.setdefault((me, peer, int(a[1])), (t, a[2], a[3], a[4]))
            if n == "link_rx":
                peer = a[0][4:]
                rxs.setdefault((peer, me, int(a[1])), t)
    pubs = {p: [(t, n) for t, n, a in e if n in ("pub_start", "pub_done")] for p, e in procs.items() if p != client}
    def add(kind, k, v):
        if v is not None: rows[(kind, k)].append(v / 1e6)
    hops = []
    for sid, (topen, nodeidx) in late.items():
        edge_pid = next((p for p in nodes if first(p, "ws_join", sid)), None)
        if edge_pid is None: continue
        tj = first(edge_pid, "ws_join", sid)
        tjoined = cjoined.get(sid)
        rr = first(edge_pid, "remote_req", sid)
        kind = "relayed" if rr else "direct"
        add(kind, "0 total open->joined(client)", tjoined - topen if tjoined else None)
        add(kind, "1 client open->edge ws_join", tj - topen)
        if kind == "direct":
            tl = first(edge_pid, "room_lock", sid); ts = first(edge_pid, "svc_lock", sid)
            tb = first(edge_pid, "bind_done", sid); tjs = first(edge_pid, "joined_send", sid)
            tws = first(edge_pid, "ws_joined_sent", sid)
            add(kind, "2 ws_join->room_lock", tl - tj)
            add(kind, "5 room_lock->svc_lock", ts - tl)
            add(kind, "6 bind (svc_lock->bind_done)", tb - ts)
            add(kind, "7 bind_done->joined_send", tjs - tb)
            add(kind, "9 joined_send->ws_joined_sent", tws - tjs)
            add(kind, "10 ws_joined_sent->client", tjoined - tws if tjoined else None)
        else:
            owner_pid = next(p for p in nodes if p != edge_pid)
            ls, ld = first(edge_pid, "locate_start", sid), first(edge_pid, "locate_done", sid)
            add(kind, "2 ws_join->locate_start", ls - tj)
            add(kind, "3 locate (lease lookup)", ld - ls)
            add(kind, "3b locate_done->remote_req", rr - ld)
            edge, owner = nodes[edge_pid], nodes[owner_pid]
            # the join req frame
            req = [ (k, v) for k, v in sends.items() if k[0] == edge and v[1] == "req" and v[2] == "join" and abs(v[0]-rr) < 2e6 and v[0] >= rr]
            req.sort(key=lambda kv: kv[1][0])
            k, v = req[0]
            trx = rxs.get(k)
            ps = next((t for t, n in pubs[edge_pid] if n == "pub_start" and t >= v[0]), None)
            pd = next((t for t, n in pubs[edge_pid] if n == "pub_done" and t >= v[0]), None)
            add(kind, "4 hop edge->owner (req send->owner rx)", trx - v[0])
            add(kind, "4a  edge send->pub_start (queue)", ps - v[0])
            add(kind, "4b  pub_start->owner rx", trx - ps)
            add(kind, "4c  pub_start->pub_done (PUBLISH rtt)", pd - ps)
            tss = first(owner_pid, "serve_start", sid)
            tl = first(owner_pid, "room_lock", sid); ts = first(owner_pid, "svc_lock", sid)
            tb = first(owner_pid, "bind_done", sid); tjs = first(owner_pid, "joined_send", sid)
            add(kind, "4d owner rx->serve_start", tss - trx)
            add(kind, "5 serve_start->svc_lock", ts - tss)
            add(kind, "6 bind (svc_lock->bind_done)", tb - ts)
            add(kind, "7 bind_done->joined_send", tjs - tb)
            # the joined note frame: first 'note send' from owner to edge after tjs
            nt = sorted((v[0], k) for k, v in sends.items() if k[0] == owner and k[1] == edge and v[1] == "note" and v[0] >= tjs)
            tn, kn = nt[0]
            trn = rxs.get(kn)
            ps = next((t for t, n in pubs[owner_pid] if n == "pub_start" and t >= tn), None)
            pd = next((t for t, n in pubs[owner_pid] if n == "pub_done" and t >= tn), None)
            add(kind, "8 hop owner->edge (note send->edge rx)", trn - tn if trn else None)
            add(kind, "8a  owner send->pub_start (queue)", ps - tn)
            add(kind, "8b  pub_start->edge rx", trn - ps if trn else None)
            add(kind, "8c  pub_start->pub_done", pd - ps)
            tws = first(edge_pid, "ws_joined_sent", sid)
            add(kind, "9 edge rx->ws_joined_sent", tws - trn if trn else None)
            add(kind, "10 ws_joined_sent->client", tjoined - tws if tjoined else None)


def main():
    rows = collections.defaultdict(list)
    for prefix in sys.argv[1:]:
        analyze(prefix, rows)
    def order(key):
        step = key[1].split()[0]
        sub = step[-1] if step[-1] in "abcd" else ""
        return key[0], float(step.rstrip("abcd")) + (0.1 * ("abcd".find(sub) + 1) if sub else 0)
    for key in sorted(rows, key=order):
        v = rows[key]
        print(f"{key[0]:8} {key[1]:45} n={len(v):2} p50={statistics.median(v):6.2f} mean={statistics.mean(v):6.2f}")


if __name__ == "__main__":
    main()
