"""Micro-benchmark of transport-wide CC's cost (not a test; not collected by pytest).

Usage: ``.venv/bin/python tests/bench_twcc.py [FANOUT ...]``.
1. The hot path of ``zvonok.bench.hotpath`` (datagram in → SRTP unprotect → producer → compiled
   fan-out → rewrite, SRTP protect, ``sendmmsg``), with a transport-cc element in every packet,
   once with transport-cc off and once with the publisher's arrivals recorded and every
   subscriber's copies stamped: µs of CPU per copy, medians of 9, interleaved.
2. Feedback in Python at 280 packets/s (about 2.5 Mbit/s of video) and 10 feedback packets/s:
   reading a subscriber's (parse, pairing with the send history, estimator) and building a
   publisher's, in ms of CPU per second of call.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from typing import Any

from zvonok.bench.hotpath import PAYLOAD, _Endpoint
from zvonok.media.forwarding.router import Router
from zvonok.media.forwarding.twcc import Downlink, FeedbackBuilder
from zvonok.media.forwarding.types import CodecInfo
from zvonok.media.packets.rtcp import TransportFeedback, parse_compound
from zvonok.media.transport.dtls import DtlsCertificate
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.transport import ConnectionState, WebRtcTransport
from zvonok.media.transport.udp import MediaUdpProtocol

PACKETS = 3000


def packet(seq: int) -> bytes:
    # audio level (id 1), mid "0" (id 4), transport-cc (id 3), one padding byte
    ext = bytes([0x10, 0x9E, 0x40, ord("0"), 0x31, seq >> 8 & 0xFF, seq & 0xFF, 0])
    header = struct.pack("!BBHIIHH", 0x90, 111, seq, seq * 960, 0x1234, 0xBEDE, 2)
    return header + ext + bytes(PAYLOAD)


async def measure(fanout: int, twcc: bool) -> float:
    loop = asyncio.get_running_loop()
    key = bytes(range(AEAD_AES_128_GCM.master_length))
    udp = MediaUdpProtocol()
    await loop.create_datagram_endpoint(lambda: udp, local_addr=("127.0.0.1", 0))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink_addr = sink.getsockname()
    context = DtlsCertificate.generate().make_context()
    router = Router()

    def transport(index: int, listener: Any) -> WebRtcTransport:
        t = WebRtcTransport(
            transport_id=f"t{index}", listener=listener, udp=udp, dtls_context=context,
            fingerprint=("sha-256", ""), candidates=list, loop=loop, clock=time.monotonic,
            consent_timeout=30.0, dtls_timeout=10.0, on_closed=lambda _t: None,
        )  # fmt: skip
        t._set_state(ConnectionState.CONNECTING)
        t.dtls_connected(SrtpSession(AEAD_AES_128_GCM, tx_master=key, rx_master=key))
        t._ice.selected = sink_addr
        t.rtp_target.set_address(sink_addr)
        if index == 0:
            udp.bind_address(("127.0.0.1", 10000), t)
        return t

    endpoint = _Endpoint()
    publisher = transport(0, endpoint)
    if twcc:
        publisher.set_twcc_receive(3)
    producer = router.create_producer(
        producer_id="p", sink=publisher, kind="audio", codecs={111: CodecInfo("opus", 48000)},
        ssrc=0x1234, rtx_ssrc=None, rtx_payload_types={},
    )  # fmt: skip
    endpoint.add_producer(producer)
    subscribers = []
    for i in range(fanout):
        t = transport(i + 1, _Endpoint())
        if twcc:
            t.set_twcc_send(3)
        subscribers.append(t)
        router.create_consumer(
            producer, consumer_id=f"c{i}", sink=t, ssrc=i + 1, rtx_ssrc=None,
            payload_types={111: 111}, rtx_payload_types={}, ext_id_map={1: 1, 3: 3},
            cname="bench",
        )  # fmt: skip
    client = SrtpSession(AEAD_AES_128_GCM, tx_master=key, rx_master=key)
    wire = [client.protect_rtp(packet(seq)) for seq in range(1, PACKETS + 1)]
    addr = ("127.0.0.1", 10000)
    receive = udp.datagram_received
    start = time.process_time()
    for data in wire:
        receive(data, addr)
    elapsed = time.process_time() - start
    sent = sum(c.packets_sent for c in router.consumers.values())
    stamped = sum(t.rtp_target.twcc_stamped for t in subscribers)
    publisher.close()
    router.close()
    await udp.close()
    sink.close()
    if sent != PACKETS * fanout or stamped != (sent if twcc else 0):
        raise RuntimeError(f"sent {sent}, stamped {stamped} of {PACKETS * fanout}")
    return elapsed / sent * 1e6


class _History:
    def __init__(self) -> None:
        self.sent: dict[int, tuple[int, int]] = {}

    def set_twcc_receive(self, ext_id: int) -> None:
        pass

    def set_twcc_send(self, ext_id: int) -> None:
        pass

    def twcc_lookup(self, seq: int) -> tuple[int, int] | None:
        return self.sent.get(seq)


class _Route:
    on_transport_feedback: Any = None


def feedback_cost(seconds: int = 60, per_feedback: int = 28) -> tuple[float, float]:
    """(ms CPU per subscriber-second reading feedback, ms per publisher-second building it)."""
    history = _History()
    now = [0]
    downlink = Downlink(history, _Route(), clock_us=lambda: now[0])
    downlink.probing = False
    spacing = 1_000_000 // (10 * per_feedback)
    raw = []
    for k in range(seconds * 10):
        base = k * per_feedback
        for s in range(base, base + per_feedback):
            history.sent[s & 0xFFFF] = (s * spacing, 1150)
        arrivals: list[int | None] = [
            s * spacing + 20_000 for s in range(base, base + per_feedback)
        ]
        raw.append(bytes(TransportFeedback.build(1, 2, k, base & 0xFFFF, arrivals)))
    start = time.process_time()
    for k, data in enumerate(raw):
        now[0] = (k + 1) * per_feedback * spacing + 40_000
        (fb,) = parse_compound(data)
        assert isinstance(fb, TransportFeedback)
        downlink.on_feedback(fb)
    reading = (time.process_time() - start) / seconds
    builder = FeedbackBuilder(1)
    batches = [
        [((k * per_feedback + i) & 0xFFFF, (k * per_feedback + i) * spacing)
         for i in range(per_feedback)]
        for k in range(seconds * 10)
    ]  # fmt: skip
    start = time.process_time()
    for batch in batches:
        for fb in builder.build(batch, 5):
            bytes(fb)
    building = (time.process_time() - start) / seconds
    return reading * 1e3, building * 1e3


async def main(fanouts: list[int]) -> None:
    for fanout in fanouts:
        off: list[float] = []
        on: list[float] = []
        for _ in range(9):
            off.append(await measure(fanout, False))
            on.append(await measure(fanout, True))
        off.sort()
        on.sort()
        print(
            f"fan-out {fanout:2d}: transport-cc off {off[4]:.3f} µs per copy, on {on[4]:.3f} "
            f"({on[4] - off[4]:+.3f}; minima {off[0]:.3f} / {on[0]:.3f})"
        )
    reading, building = feedback_cost()
    print(
        f"feedback at 280 packets/s: reading {reading:.2f} ms CPU per subscriber-second, "
        f"building {building:.2f} ms per publisher-second"
    )


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [1, 3, 21]))
