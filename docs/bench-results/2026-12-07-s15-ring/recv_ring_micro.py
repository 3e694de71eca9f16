"""Session 15's in-process receive path with a full history (docs/benchmarks.md Round 19).

50 publishers' SRTP datagrams (1,012 bytes of RTP each, made beforehand) are handed to their
compiled Receivers one round at a time (Receiver.receive: decrypt, a bytes object,
RtpDispatcher, ProducerCore: stats, the 512-packet history, Fanout -> Forwarder -> SendTarget,
which protects and sends each copy on a real UDP socket to a subscriber socket). The history is
the compiled PacketRing when the tree has one, else the list of bytes the core filled before.
The first WARM rounds fill every ring (512 packets each); the CPU (user+system, getrusage) of
the remaining rounds is reported per packet, over each of REPS equal slices.

    PYTHONPATH=<tree>/src python recv_ring_micro.py [ROUNDS] [REPS] [SEND]   (default 1600 4 1)

SEND=0 leaves the fan-out empty: the receive path up to the producer alone (decrypt, bytes,
dispatch, stats, history), without the forwarder, SRTP protect and the send.
"""
import json, resource, socket, struct, sys
from zvonok.media.fastpath import native
from zvonok.media.forwarding.stats import ReceiveStats
from zvonok.media.packets.rtp import ext_id_table
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession

KEY = bytes(range(AEAD_AES_128_GCM.master_length))
PEERS, WARM = 50, 576
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1600
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
send = int(sys.argv[3]) if len(sys.argv) > 3 else 1
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20); s.setblocking(False); return s
tx = udp(); sub = udp()
receivers, keep, data = [], [], []
for i in range(PEERS):
    out = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    t = native.SendTarget(tx.fileno(), lambda d, a: None); t.set_srtp(*out.tx_handle(), out); t.set_address(sub.getsockname()); t.enabled = True
    f = native.Forwarder(target=t, ssrc=0x2000 + i, payload_types={111: 111}, ext_table=ext_id_table({}), video=False, ts_offset=0, last_out_seq=0)
    fan = native.Fanout(); fan.set([f] if send else [])
    ring = native.PacketRing(512) if hasattr(native, "PacketRing") else [None] * 512
    core = native.ProducerCore(ReceiveStats(48000), {}, ring, fan, lambda s, g, n: None, lambda p: False, None)
    disp = native.RtpDispatcher({0x1000 + i: core.receive}, lambda s, p: None)
    rin = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    recv = native.Receiver(lambda d: None, disp.dispatch); recv.set_srtp(*rin.rx_handle(), rin)
    pub = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    data.append([pub.protect_rtp(struct.pack("!BBHII", 0x80, 111, (r + 1) & 0xFFFF, (r + 1) * 960, 0x1000 + i) + bytes(1000)) for r in range(rounds)])
    receivers.append(recv.receive); keep.append((out, rin, pub, t, f, fan, ring, core, disp, recv))
def drain():
    try:
        while True:
            sub.recv(2048)
    except BlockingIOError:
        pass
def run(first, last):
    for r in range(first, last):
        for i in range(PEERS):
            receivers[i](data[i][r])
        if r % 8 == 0:
            drain()
run(0, WARM)
slices = []
step = (rounds - WARM) // reps
for k in range(reps):
    a = resource.getrusage(resource.RUSAGE_SELF)
    run(WARM + k * step, WARM + (k + 1) * step)
    b = resource.getrusage(resource.RUSAGE_SELF)
    slices.append(round((b.ru_utime - a.ru_utime + b.ru_stime - a.ru_stime) / (step * PEERS) * 1e6, 3))
sent = sum(k[3].tx_packets for k in keep)
print(json.dumps({"ring": "PacketRing" if hasattr(native, "PacketRing") else "list", "send": send, "packets": step * reps * PEERS, "sent": sent, "cpu_us_per_pkt": slices, "min": min(slices), "median": sorted(slices)[len(slices) // 2], "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
