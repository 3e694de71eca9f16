"""Session 15's in-process receive->forward measurement (docs/benchmarks.md Round 19): Round 14's
rx_micro.py with each producer keeping a 512-packet history, as a video producer does: the
compiled PacketRing when the tree has one, else the list of bytes the core filled before.

50 publishers (a child process) each send one SRTP packet (1,012 bytes of RTP) per round to one socket,
a round every ``gap`` seconds, in groups of ``per`` sent back to back; this process reads it with ``Demux.drain`` (epoll wake-ups), and each packet goes
Receiver -> RtpDispatcher -> ProducerCore -> Fanout -> Forwarder -> SendTarget to its own
subscriber socket (a 1:1 call's fan-out of one), all compiled, no event loop, no tick.
Prints this process's user+system CPU per received packet (getrusage; only the sum is
meaningful on the VM, whose user/system split is tick-sampled).

    PYTHONPATH=<tree>/src python ring_micro.py recv ROUNDS GAP PER   (e.g. 1500 0.005 50)

PER: datagrams sent back to back; a round's groups are spread evenly over GAP (50: one burst
of 50 a round; 2: 25 pairs, 0.4 ms apart at GAP 0.01).
"""
import os, socket, struct, sys, time, resource, subprocess, json
from zvonok.media.fastpath import native
from zvonok.media.forwarding.stats import ReceiveStats
from zvonok.media.packets.rtp import ext_id_table
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.udp import MediaUdpProtocol

KEY = bytes(range(AEAD_AES_128_GCM.master_length))
PEERS = 50
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23); s.setblocking(False); return s

if sys.argv[1] == "send":  # child: send N rounds, each round one packet per peer, paced
    port, rounds, gap = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    peers = [udp() for _ in range(PEERS)]
    print(json.dumps([p.getsockname()[1] for p in peers]), flush=True)
    sys.stdin.readline()
    srtp = [SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY) for _ in peers]
    pre = []
    for r in range(rounds):
        pre.append([srtp[i].protect_rtp(struct.pack("!BBHII", 0x80, 111, r + 1, (r + 1) * 960, 0x1000 + i) + bytes(1000)) for i in range(PEERS)])
    per = int(sys.argv[5])  # datagrams sent together; the round's groups are spread evenly
    t0 = time.monotonic()
    groups = (PEERS + per - 1) // per
    for r in range(rounds):
        for g in range(groups):
            for i in range(g * per, min(PEERS, (g + 1) * per)):
                peers[i].sendto(pre[r][i], ("127.0.0.1", port))
            d = t0 + r * gap + (g + 1) * gap / groups - time.monotonic()
            if d > 0:
                time.sleep(d)
    sys.exit(0)

rounds, gap, per = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
sock, tx = udp(), udp()
protocol = MediaUdpProtocol(); protocol.demux.fd = sock.fileno()
child = subprocess.Popen([sys.executable, __file__, "send", str(sock.getsockname()[1]), str(rounds), str(gap), per], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
ports = json.loads(child.stdout.readline())
subs, keep = [], []
for i in range(PEERS):
    sub = udp(); subs.append(sub)
    out = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    t = native.SendTarget(tx.fileno(), lambda d, a: None); t.set_srtp(*out.tx_handle(), out); t.set_address(sub.getsockname()); t.enabled = True
    f = native.Forwarder(target=t, ssrc=0x2000 + i, payload_types={111: 111}, ext_table=ext_id_table({}), video=False, ts_offset=0, last_out_seq=0)
    fan = native.Fanout(); fan.set([f])
    ring = native.PacketRing(512) if hasattr(native, "PacketRing") else [None] * 512
    core = native.ProducerCore(ReceiveStats(48000), {}, ring, fan, lambda s, g, n: None, lambda p: False, None)
    disp = native.RtpDispatcher({0x1000 + i: core.receive}, lambda s, p: None)
    rin = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    recv = native.Receiver(lambda d: None, disp.dispatch); recv.set_srtp(*rin.rx_handle(), rin)
    class E:
        media_in = recv
        def handle_media(self, d, a): pass
        def handle_dtls(self, d, a): pass
        def handle_stun(self, r, a): return False
    e = E(); keep.append((out, rin, t, f, fan, core, disp, recv, e))
    protocol.bind_address(("127.0.0.1", ports[i]), e)
import select
ep = select.epoll(); ep.register(sock.fileno(), select.EPOLLIN)
child.stdin.write("go\n"); child.stdin.flush()
r0 = resource.getrusage(resource.RUSAGE_SELF)
total = 0; wakes = 0
expected = rounds * PEERS
deadline = time.monotonic() + rounds * gap + 10
while total < expected and time.monotonic() < deadline:
    if ep.poll(0.5):
        wakes += 1
        total += protocol.demux.drain(4)
    # drain the subscribers' sockets rarely (their buffers are large)
r1 = resource.getrusage(resource.RUSAGE_SELF)
child.wait()
u, s = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
sent = sum(k[2].tx_packets for k in keep)
print(json.dumps({"received": total, "sent": sent, "wakeups": wakes, "user_us_per_pkt": round(u / total * 1e6, 3), "sys_us_per_pkt": round(s / total * 1e6, 3), "cpu_us_per_pkt": round((u + s) / total * 1e6, 3), "per": per, "ring": "PacketRing" if hasattr(native, "PacketRing") else "list", "maxrss_kb": r1.ru_maxrss, "tx_batches": native.tx_batches() if hasattr(native, "tx_batches") else None}))
