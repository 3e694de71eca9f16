"""Micro-benchmark of VP8 temporal-layer capping (not a test; not collected by pytest).

Usage: ``.venv/bin/python tests/bench_temporal.py [PACKETS]``.

A video producer (compiled ``ProducerCore`` and fan-out) feeds consumers whose compiled
forwarders protect (SRTP AES-GCM) and send to a loopback socket, with Chrome-shaped VP8 packets
(three temporal layers, the 0, 2, 1, 2 pattern, 3 packets of 1,000 bytes a frame). Measured in
µs of CPU per packet the producer receives (process time, medians of 7, interleaved):

1. one consumer, uncapped (the compiled path: the forwarder in the fan-out);
2. one consumer with ``temporal_target = 2`` (the ``_TemporalFilter`` in the fan-out, dropping
   nothing: the Python path's whole overhead);
3. one consumer with ``temporal_target = 0`` (drops 3 frames of 4);
4. ten consumers, uncapped, and ten of which one is capped at 0: the extra cost of one capped
   subscriber in a fan-out;
5. the layer's temporal measurement (``ProducerLayer._walk_history``), per packet walked.
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from collections.abc import Callable

from zvonok.media.fastpath import native
from zvonok.media.forwarding.consumer import Consumer
from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import CodecInfo, Router
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession

PATTERN = (0, 2, 1, 2)


def packets(count: int) -> list[bytes]:
    out = []
    for n in range(count):
        frame, k = divmod(n, 3)
        tid = PATTERN[frame % 4]
        pid = frame & 0x7FFF
        desc = bytes(
            (0x90 if k == 0 else 0x80, 0xE0, 0x80 | pid >> 8, pid & 0xFF, frame // 4 & 0xFF)
        )
        desc += bytes((tid << 6 | (0x20 if frame % 8 in (1, 2) else 0),))
        payload = desc + (b"\x01" + bytes(993))
        header = bytes((0x80, 97 | (0x80 if k == 2 else 0))) + (n & 0xFFFF).to_bytes(2, "big")
        header += (3000 * frame & 0xFFFF_FFFF).to_bytes(4, "big") + (0x1234).to_bytes(4, "big")
        out.append(header + payload)
    return out


class _Sink:
    def __init__(self, target: object) -> None:
        self.rtp_target = target

    def send_rtp(self, packet: bytes | bytearray) -> None:
        pass

    def send_rtcp(self, packet: bytes | bytearray) -> None:
        pass


def setup(
    consumers: int, caps: list[int | None]
) -> tuple[Producer, list[Consumer], list[socket.socket]]:
    assert native is not None, "the compiled fast path is not built"
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    tx.setblocking(False)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    key = bytes(range(AEAD_AES_128_GCM.master_length))
    srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=key, rx_master=key)
    target = native.SendTarget(tx.fileno(), lambda d, a: None)
    target.set_srtp(*srtp.tx_handle(), srtp)
    target.set_address(rx.getsockname())
    target.enabled = True
    router = Router(clock=time.monotonic)
    producer = router.create_producer(
        producer_id="v", sink=_Sink(target), kind="video", codecs={97: CodecInfo("VP8", 90000)},
        ssrc=0x1234, rtx_ssrc=None, rtx_payload_types={},
    )  # fmt: skip
    made = []
    for n in range(consumers):
        c = router.create_consumer(
            producer, consumer_id=f"c{n}", sink=_Sink(target), ssrc=0x2000 + n, rtx_ssrc=None,
            payload_types={97: 96}, rtx_payload_types={}, ext_id_map={}, cname="x",
        )  # fmt: skip
        c.temporal_target = caps[n] if n < len(caps) else None
        made.append(c)
    # keep the keyframe wait out of the measure: every forwarder starts at once
    for c in made:
        c.core.blocked = False
    producer.layers[0].want_keyframe = False
    return producer, made, [tx, rx]  # the sockets live as long as the caller holds them


def run(consumers: int, caps: list[int | None], data: list[bytes]) -> float:
    producer, made, sockets = setup(consumers, caps)
    receive = producer.receive_rtp
    start = time.process_time()
    for packet in data:
        receive(packet)
    spent = time.process_time() - start
    target = made[0].core.target  # type: ignore[attr-defined]
    assert target.tx_packets and not target.send_errors, "nothing was sent"
    for s in sockets:
        s.close()
    return spent / len(data) * 1e6


def walk(data: list[bytes]) -> float:
    producer, _, sockets = setup(0, [])
    layer = producer.layers[0]
    spent = 0.0
    for at in range(0, len(data), 120):  # ~4 ticks a second at 480 packets/s
        for packet in data[at : at + 120]:
            layer.receive_rtp(packet)
        start = time.process_time()
        layer._walk_history()
        spent += time.process_time() - start
    for s in sockets:
        s.close()
    return spent / len(data) * 1e6


def median(fn: Callable[[], float], runs: int = 7) -> float:
    return statistics.median(fn() for _ in range(runs))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30_000
    data = packets(count)
    cases: dict[str, Callable[[], float]] = {
        "1 consumer, uncapped (compiled)": lambda: run(1, [None], data),
        "1 consumer, cap 2 (filter, drops nothing)": lambda: run(1, [2], data),
        "1 consumer, cap 0 (drops 3 frames of 4)": lambda: run(1, [0], data),
        "10 consumers, uncapped": lambda: run(10, [None], data),
        "10 consumers, 1 capped at 2": lambda: run(10, [2], data),
        "layer temporal measure (per packet walked)": lambda: walk(data),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(7):  # interleaved
        for name, fn in cases.items():
            results[name].append(fn())
    for name, values in results.items():
        print(f"{name:45s} {statistics.median(values):6.2f} µs per packet received")


if __name__ == "__main__":
    main()
