"""What transport-wide CC feedback costs the server, per subscriber and per publisher per second.

Session 11, issue 15 ("the cost of feedback handling per subscriber per second written down");
copied in session 14 for issue 17 (the per-packet part of reading feedback in C) with one
change: the header line also names the ``zvonok`` package imported (``PYTHONPATH`` chooses the
tree measured) and whether the compiled ``FeedbackCore`` reads the feedback; copied again in
session 15 (the delay-based detector in C) with one more: the header names the detector the
send groups go through (the compiled ``Trendline`` or the Python ``_Trendline``; a tree from
before session 15 has only ``_Trendline``). Run from the repository root (under the integration
lock: it runs a real-time phase):

    .venv/bin/python docs/bench-results/2026-12-07-s15-trendline/twcc_cost.py
    ZVONOK_PURE_PYTHON=1 .venv/bin/python docs/bench-results/2026-12-07-s15-trendline/twcc_cost.py

Real parts, in process, as ``zvonok.bench.hotpath`` builds them: a ``MediaUdpProtocol`` on a
loopback socket, two ``WebRtcTransport``s with SRTP (AES-GCM) keys, sending to a socket nobody
reads (the kernel drops what overflows it). One transport is the *subscriber's*: a
``MediaEndpoint`` and a ``twcc.Downlink`` on it as ``MediaSession`` wires them, transport-cc
stamping on (``set_twcc_send``). The other is the *publisher's*: transport-cc feedback on
(``set_twcc_receive``).

1. Real time (``--seconds``, 19 s: the 4,096-seq send history must still hold them all): a
   1.5 Mbit/s-like call, 30 frames/s of 4-6 video packets (1,100-byte payloads, ~1 ms apart) and
   50 audio packets/s (100 bytes), about 200 packets/s, with a transport-cc element in each.
   Every packet is sent through the subscriber's transport (stamped, send time and size kept by
   its real send target, protected, sent), and the same stream, SRTP-protected by a client with
   1 % loss and a few swaps, is fed into the publisher's transport (``datagram_received``: SRTP
   unprotect, the receiver records the arrival). The publisher transport's own timer sends its
   feedback every 100 ms; each of those ticks (``_twcc_tick``: drain the arrivals, build the
   packets, serialize, SRTCP-protect and send) is timed.
2. (a) From the subscriber: the send record the real target kept (``twcc_lookup``) goes through a
   network model (25 ms one way, a 4 Mbit/s bottleneck queue, 0-1 ms jitter, 1 % loss, 0.5 % of
   packets 3 ms late, i.e. reordered) into the subscriber's arrivals (its own clock), cut into
   feedback every 100 ms and every 50 ms, built with the project's ``FeedbackBuilder`` (what
   the server itself sends to publishers) and serialized; then, for a fresh ``Downlink`` each
   run (its clock set to when each feedback would reach the server), timed per feedback:
   - ``datagram``: SRTCP-protected, into ``MediaUdpProtocol.datagram_received`` (demultiplex,
     the compiled receiver, SRTCP unprotect, ``MediaEndpoint.on_rtcp``: parse, adapter with the
     real ``twcc_lookup``, estimator): everything from the datagram to the estimate;
   - ``on_rtcp``: the decrypted bytes into ``MediaEndpoint.on_rtcp`` (no SRTCP);
   - ``parse``: ``parse_compound`` alone (the compiled ``twcc_parse`` unless pure Python).
   Every run checks that no reported seq was missing from the send record and that the
   estimator produced an estimate.
3. (b) To the publisher, offline: the per-packet cost of recording arrivals (two publisher
   transports, transport-cc on and off, fed the same kind of packets interleaved in batches of
   20; the difference of the medians) and ``FeedbackBuilder.build`` + ``bytes`` per feedback
   from a realistic arrival list (the network model's, 100 ms of it), plus SRTCP protect and
   send of one feedback packet (``send_rtcp``).

Times are ``time.perf_counter_ns`` (wall clock of the calls, on a shared 2-core VM), medians over
``--runs`` runs (each run: the mean per call over all of its calls). Output: one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import Any

from zvonok.media.fastpath import native
from zvonok.media.forwarding.endpoint import MediaEndpoint
from zvonok.media.forwarding.twcc import Downlink, FeedbackBuilder
from zvonok.media.packets.rtcp import TransportFeedback, parse_compound
from zvonok.media.transport.dtls import DtlsCertificate
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.transport import ConnectionState, WebRtcTransport
from zvonok.media.transport.udp import MediaUdpProtocol

TWCC_ID = 3
VIDEO_SSRC, AUDIO_SSRC = 0x1111, 0x2222
PUB_ADDR, SUB_ADDR = ("127.0.0.1", 10000), ("127.0.0.1", 10001)


class _Endpoint(MediaEndpoint):
    def on_state(self, state: ConnectionState) -> None:
        pass


def rtp(ssrc: int, seq: int, payload: int, twcc_seq: int = 0) -> bytes:
    """An RTP packet with audio level (id 1), mid (id 4) and transport-cc (id 3) elements."""
    ext = bytes([0x10, 0x9E, 0x40, ord("0"), TWCC_ID << 4 | 1, twcc_seq >> 8 & 0xFF,
                 twcc_seq & 0xFF, 0])  # fmt: skip
    pt = 96 if ssrc == VIDEO_SSRC else 111
    header = struct.pack("!BBHIIHH", 0x90, pt, seq & 0xFFFF, seq * 3000, ssrc, 0xBEDE, 2)
    return header + ext + bytes(payload)


def schedule(seconds: float, rng: random.Random) -> list[tuple[float, int, int]]:
    """(offset s, ssrc, payload bytes) of a ~1.5 Mbit/s call: video frames + audio."""
    events: list[tuple[float, int, int]] = []
    for f in range(int(seconds * 30)):
        t = f / 30
        n = rng.randint(4, 6)
        for k in range(n):
            size = 1100 if k < n - 1 else rng.randint(300, 1100)
            events.append((t + k * 0.001, VIDEO_SSRC, size))
    for a in range(int(seconds * 50)):
        events.append((a / 50 + 0.0005, AUDIO_SSRC, 100))
    events.sort()
    return events


def network(
    sent: list[tuple[int, int, int]], rng: random.Random, offset_us: int
) -> list[tuple[int, int]]:
    """(seq, arrival µs on the subscriber's clock) in arrival order for (seq, send µs, size)."""
    out = []
    free = 0  # when the bottleneck is free (sender clock, µs)
    for seq, send_us, size in sent:
        start = max(send_us + 25_000, free)
        free = start + (size + 40) * 8 * 1_000_000 // 4_000_000
        if rng.random() < 0.01:
            continue  # lost
        at = free + rng.randint(0, 1000) + (3000 if rng.random() < 0.005 else 0)
        out.append((at, seq))
    out.sort()
    return [(seq, at + offset_us) for at, seq in out]


def feedbacks(
    arrivals: list[tuple[int, int]], interval_us: int, offset_us: int
) -> list[tuple[int, bytes]]:
    """(when it reaches the server µs on its clock, serialized feedback) every interval."""
    builder = FeedbackBuilder(0x5EB5C12)
    out: list[tuple[int, bytes]] = []
    start = arrivals[0][1]
    batch: list[tuple[int, int]] = []
    edge = start + interval_us
    for seq, at in arrivals + [(0, 1 << 62)]:
        while at >= edge:
            if batch:
                for fb in builder.build(batch, VIDEO_SSRC):
                    out.append((edge - offset_us + 25_000, bytes(fb)))
                batch = []
            edge += interval_us
            if at == 1 << 62:
                break
        batch.append((seq, at))
    return out


def transport(
    udp: MediaUdpProtocol, index: int, listener: Any, sink: Any, ctx: Any
) -> WebRtcTransport:
    key = bytes(range(AEAD_AES_128_GCM.master_length))
    t = WebRtcTransport(
        transport_id=f"t{index}", listener=listener, udp=udp, dtls_context=ctx,
        fingerprint=("sha-256", ""), candidates=list, loop=asyncio.get_running_loop(),
        clock=time.monotonic, consent_timeout=600.0, dtls_timeout=10.0,
        on_closed=lambda _t: None,
    )  # fmt: skip
    t._set_state(ConnectionState.CONNECTING)
    t.dtls_connected(SrtpSession(AEAD_AES_128_GCM, tx_master=key, rx_master=key))
    t._ice.selected = sink
    t.rtp_target.set_address(sink)
    return t


def client() -> SrtpSession:
    key = bytes(range(AEAD_AES_128_GCM.master_length))
    return SrtpSession(AEAD_AES_128_GCM, tx_master=key, rx_master=key)


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (runs {min(values):.2f}-{max(values):.2f})"


async def main(seconds: float, runs: int, cold_seconds: float, spin: bool) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(15)
    udp = MediaUdpProtocol()
    await loop.create_datagram_endpoint(lambda: udp, local_addr=("127.0.0.1", 0))
    sinksock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sinksock.bind(("127.0.0.1", 0))
    sink = sinksock.getsockname()
    ctx = DtlsCertificate.generate().make_context()
    pub_endpoint, sub_endpoint = _Endpoint(), _Endpoint()
    pub = transport(udp, 0, pub_endpoint, sink, ctx)
    sub = transport(udp, 1, sub_endpoint, sink, ctx)
    udp.bind_address(PUB_ADDR, pub)
    udp.bind_address(SUB_ADDR, sub)
    pub.set_twcc_receive(TWCC_ID)
    sub.set_twcc_send(TWCC_ID)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,  # noqa: ASYNC221 (before any timing)
                          text=True).stdout.strip()  # fmt: skip
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, HEAD {head}, "
          f"{'compiled _fastpath' if native else 'pure Python (ZVONOK_PURE_PYTHON=1)'}, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")  # fmt: skip
    import zvonok

    probe = Downlink(sub, sub_endpoint)
    core = getattr(probe, "_core", None)
    reader = "the compiled FeedbackCore" if core is not None else "FeedbackAdapter (Python)"
    detector = type(getattr(probe.estimator, "_trendline", None)).__qualname__
    print(f"# zvonok from {os.path.dirname(zvonok.__file__)}; feedback read by {reader}; "
          f"send groups through {detector}")  # fmt: skip

    # 1. real time: the subscriber's send record, the publisher's feedback ticks
    events = schedule(seconds, rng)
    pub_client = client()
    seqs: dict[int, int] = {VIDEO_SSRC: 0, AUDIO_SSRC: 0}
    pub_wire: list[bytes | None] = []
    for i, (_, ssrc, size) in enumerate(events):
        seqs[ssrc] += 1
        data = pub_client.protect_rtp(rtp(ssrc, seqs[ssrc], size, i & 0xFFFF))
        pub_wire.append(None if rng.random() < 0.01 else data)
    for i in range(1, len(pub_wire) - 1):
        if rng.random() < 0.005:
            pub_wire[i], pub_wire[i + 1] = pub_wire[i + 1], pub_wire[i]
    ticks: list[tuple[int, int, int]] = []  # (ns, arrivals drained, feedback packets)
    original_tick = pub._twcc_tick
    marks = [0, 0]

    def timed_tick() -> None:
        recorded, built = pub.media_in.twcc_recorded, pub.twcc_feedback.packets  # type: ignore[union-attr]
        t0 = time.perf_counter_ns()
        original_tick()
        dt = time.perf_counter_ns() - t0
        ticks.append((dt, recorded - marks[0], built - marks[1]))
        marks[0], marks[1] = recorded, built

    pub._twcc_tick = timed_tick  # type: ignore[method-assign]
    receive = udp.datagram_received
    sub_seqs = {VIDEO_SSRC: 0, AUDIO_SSRC: 0}
    begin = loop.time()
    for (offset, ssrc, size), wire in zip(events, pub_wire, strict=True):
        delay = begin + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sub_seqs[ssrc] += 1
        sub.send_rtp(rtp(ssrc, sub_seqs[ssrc], size))
        if wire is not None:
            receive(wire, PUB_ADDR)
    await asyncio.sleep(0.3)  # the last ticks
    stamped = sub.rtp_target.twcc_stamped
    sent = []
    for seq in range(stamped):
        record = sub.twcc_lookup(seq)
        if record is None:
            raise RuntimeError(f"send record lost seq {seq} of {stamped}")
        sent.append((seq, record[0], record[1]))
    span = (sent[-1][1] - sent[0][1]) / 1e6
    rate = len(sent) / span
    print(f"stream: {len(sent)} packets stamped in {span:.2f} s ({rate:.0f} packets/s, "
          f"{sum(s[2] for s in sent) * 8 / span / 1e6:.2f} Mbit/s RTP)")  # fmt: skip
    busy = [t for t in ticks if t[1]]
    tick_ns = [t[0] for t in busy]
    per_s = len(busy) / span
    print(f"(b) publisher feedback ticks (real timer, drain+build+bytes+SRTCP+send): {len(busy)} "
          f"ticks, {sum(t[2] for t in busy)} packets, {statistics.mean(t[1] for t in busy):.1f} "
          f"arrivals each; per tick median {statistics.median(tick_ns) / 1e3:.1f} µs, mean "
          f"{statistics.mean(tick_ns) / 1e3:.1f} µs, p90 "
          f"{sorted(tick_ns)[int(0.9 * len(tick_ns))] / 1e3:.1f} µs; {per_s:.1f} ticks/s -> "
          f"{statistics.mean(tick_ns) * per_s / 1e3:.0f} µs per publisher-second")  # fmt: skip

    # 2. (a) feedback from the subscriber
    offset_us = 987_654_321
    arrivals = network(sent, rng, offset_us)
    sub_client = client()
    for interval_ms in (100, 50):
        fbs = feedbacks(arrivals, interval_ms * 1000, offset_us)
        statuses = [len(p.deltas) for _, data in fbs for p in parse_compound(data)
                    if isinstance(p, TransportFeedback)]  # fmt: skip
        lost = sum(d is None for _, data in fbs for p in parse_compound(data)
                   if isinstance(p, TransportFeedback) for d in p.deltas)  # fmt: skip
        fb_rate = len(fbs) / span
        print(f"(a) feedback every {interval_ms} ms: {len(fbs)} packets ({fb_rate:.1f}/s), "
              f"{statistics.mean(statuses):.1f} statuses each ({lost / sum(statuses):.2%} "
              f"reported lost), "
              f"{statistics.mean(len(d) for _, d in fbs):.0f} bytes each")  # fmt: skip
        results: dict[str, list[float]] = {"datagram": [], "on_rtcp": [], "parse": []}
        kinds = list(results)
        for r in range(runs):
            for kind in kinds[r % 3 :] + kinds[: r % 3]:  # rotate the order: no position bias
                now = [0]
                downlink = Downlink(sub, sub_endpoint, clock_us=lambda now=now: now[0])
                wires = [sub_client.protect_rtcp(d) for _, d in fbs] if kind == "datagram" else []
                total = 0
                for k, (at, data) in enumerate(fbs):
                    now[0] = at
                    if kind == "datagram":
                        w = wires[k]
                        t0 = time.perf_counter_ns()
                        receive(w, SUB_ADDR)
                        total += time.perf_counter_ns() - t0
                    elif kind == "on_rtcp":
                        t0 = time.perf_counter_ns()
                        sub_endpoint.on_rtcp(data)
                        total += time.perf_counter_ns() - t0
                    else:
                        t0 = time.perf_counter_ns()
                        parse_compound(data)
                        total += time.perf_counter_ns() - t0
                results[kind].append(total / len(fbs) / 1e3)
                if kind != "parse":
                    est = downlink.estimator
                    if downlink.adapter.unknown or downlink.adapter.feedbacks != len(fbs):
                        raise RuntimeError(
                            f"{kind}: {downlink.adapter.feedbacks} of {len(fbs)} feedbacks read, "
                            f"{downlink.adapter.unknown} seqs unknown"
                        )
                    if est.estimate_bps is None:
                        raise RuntimeError(f"{kind}: no estimate")
                    last = (est.estimate_bps, est.loss, est.acked_bps)
        for kind, values in results.items():
            per_fb = statistics.median(values)
            print(f"(a) {interval_ms} ms {kind:8s}: µs per feedback {fmt(values)}; "
                  f"{per_fb / statistics.mean(statuses):.2f} µs per packet acknowledged; "
                  f"{per_fb * fb_rate:.0f} µs per subscriber-second "
                  f"({per_fb * fb_rate / 1e4:.3f} % of a core)")  # fmt: skip
        print(f"(a) {interval_ms} ms: last run's estimate {last[0]} bit/s, loss {last[1]:.3f}, "
              f"acknowledged {last[2]} bit/s")  # fmt: skip
        # the same datagrams at their real cadence (the process idle in between: cold caches)
        now = [0]
        downlink = Downlink(sub, sub_endpoint, clock_us=lambda now=now: now[0])
        cold: list[int] = []
        first = fbs[0][0]
        begin = loop.time()
        for at, data in fbs:
            if at - first > cold_seconds * 1e6:
                break
            w = sub_client.protect_rtcp(data)
            delay = begin + (at - first) / 1e6 - loop.time()
            if spin:  # busy-wait: the CPU never idles between feedbacks
                while loop.time() < begin + (at - first) / 1e6:
                    pass
            elif delay > 0:
                await asyncio.sleep(delay)
            now[0] = at
            t0 = time.perf_counter_ns()
            receive(w, SUB_ADDR)
            cold.append(time.perf_counter_ns() - t0)
        if downlink.adapter.unknown or downlink.adapter.feedbacks != len(cold):
            raise RuntimeError("cold replay: feedback not read")
        cold_us = statistics.mean(cold) / 1e3
        print(f"(a) {interval_ms} ms datagram at real cadence{' (spin)' if spin else ''} "
              f"({len(cold)} feedbacks over "
              f"{(now[0] - first) / 1e6:.1f} s): µs per feedback median "
              f"{statistics.median(cold) / 1e3:.2f}, mean {cold_us:.2f}, p90 "
              f"{sorted(cold)[int(0.9 * len(cold))] / 1e3:.2f}; {cold_us * fb_rate:.0f} µs per "
              f"subscriber-second ({cold_us * fb_rate / 1e4:.3f} % of a core)")  # fmt: skip

    # 3. (b) offline: per-packet recording, building, SRTCP + send
    pub_off = transport(udp, 2, _Endpoint(), sink, ctx)
    off_addr = ("127.0.0.1", 10002)
    udp.bind_address(off_addr, pub_off)
    on_client, off_client = client(), client()
    batch, batches = 20, 200
    rec: dict[str, list[float]] = {"on": [], "off": []}
    seq = 0
    for _ in range(runs):
        for kind in ("on", "off"):
            c = on_client if kind == "on" else off_client
            base = seq if kind == "on" else seq  # both clients count the same seqs
            wires2 = [c.protect_rtp(rtp(VIDEO_SSRC, base + i + 1, 1100, (base + i) & 0xFFFF))
                      for i in range(batch * batches)]  # fmt: skip
            addr = PUB_ADDR if kind == "on" else off_addr
            total = 0
            for b in range(batches):
                chunk = wires2[b * batch : (b + 1) * batch]
                t0 = time.perf_counter_ns()
                for w in chunk:
                    receive(w, addr)
                total += time.perf_counter_ns() - t0
                if kind == "on":
                    pub.media_in.twcc_drain()
            rec[kind].append(total / (batch * batches))
        seq += batch * batches
    on_ns, off_ns = statistics.median(rec["on"]), statistics.median(rec["off"])
    print(f"(b) per packet received (SRTP unprotect + dispatch), transport-cc on "
          f"{on_ns:.0f} ns (runs {min(rec['on']):.0f}-{max(rec['on']):.0f}), off {off_ns:.0f} ns "
          f"(runs {min(rec['off']):.0f}-{max(rec['off']):.0f}): recording {on_ns - off_ns:+.0f} ns "
          f"per packet, {(on_ns - off_ns) * rate / 1e3:+.1f} µs per publisher-second at "
          f"{rate:.0f} packets/s")  # fmt: skip
    # building, from a realistic 100 ms of arrivals (the network model's, on a µs clock)
    chunks: list[list[tuple[int, int]]] = []
    start = arrivals[0][1]
    cur: list[tuple[int, int]] = []
    for s, at in arrivals:
        if at >= start + 100_000:
            chunks.append(cur)
            cur, start = [], start + 100_000
        cur.append((s, at))
    build_us: list[float] = []
    send_us: list[float] = []
    for _ in range(runs):
        builder = FeedbackBuilder(1)
        total = packets = 0
        made: list[bytes] = []
        for ch in chunks:
            t0 = time.perf_counter_ns()
            for fb in builder.build(ch, VIDEO_SSRC):
                made.append(bytes(fb))
            total += time.perf_counter_ns() - t0
        packets = len(made)
        build_us.append(total / len(chunks) / 1e3)
        t0 = time.perf_counter_ns()
        for data in made:
            pub.send_rtcp(data)
        send_us.append((time.perf_counter_ns() - t0) / packets / 1e3)
    print(f"(b) FeedbackBuilder.build + bytes per 100 ms of arrivals "
          f"({statistics.mean(len(c) for c in chunks):.1f} arrivals): µs {fmt(build_us)}; "
          f"send_rtcp (SRTCP protect + sendto) per packet: µs {fmt(send_us)}")  # fmt: skip
    for t in (pub, sub, pub_off):
        t.close()
    await udp.close()
    sinksock.close()
    gc.collect()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=19.0)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--cold-seconds", type=float, default=10.0)
    parser.add_argument("--spin", action="store_true", help="busy-wait in the real-cadence replay")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.runs, args.cold_seconds, args.spin))
