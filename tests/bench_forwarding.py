"""Micro-benchmark of the forwarding hot path (not a test; not collected by pytest).

Usage: ``.venv/bin/python tests/bench_forwarding.py [packets] [consumers]``.
Prints µs per inbound packet for ``MediaEndpoint.on_rtp`` → ``Producer.receive_rtp`` → fan-out
to N consumers (each rewriting SSRC/PT/seq/ts and header-extension ids on a copy) with a no-op
sink, and the same divided per copy out. Packets look like Chrome's VP8: 1,200 bytes with
mid, abs-send-time and transport-cc extensions; the subscribers keep abs-send-time only.
"""

from __future__ import annotations

import struct
import sys
import time

from zvonok.media.forwarding.endpoint import MediaEndpoint
from zvonok.media.forwarding.router import CodecInfo, Router
from zvonok.media.packets.rtp import build_extension_block, ext_id_table, rewrite_rtp

SSRC = 0x1234_5678
EXTENSIONS = [(4, b"0"), (2, b"\x01\x02\x03"), (3, b"\x00\x01")]  # mid, abs-send-time, twcc


class NullSink:
    def send_rtp(self, packet: bytes | bytearray) -> None:
        pass

    def send_rtcp(self, packet: bytes | bytearray) -> None:
        pass


def packets(count: int) -> list[bytes]:
    block = build_extension_block(EXTENSIONS)
    key = bytes.fromhex("9080 05 00 9d012a")
    delta = bytes.fromhex("9080 06 01")
    out = []
    for i in range(count):
        payload = (key if i == 0 else delta).ljust(1200 - 12 - len(block), b"\x55")
        header = struct.pack("!BBHII", 0x90, 96, i & 0xFFFF, i // 4 * 3000, SSRC)
        out.append(header + block + payload)
    return out


def run(count: int, fanout: int, ext_map: dict[int, int]) -> float:
    router = Router()
    endpoint = MediaEndpoint()
    producer = router.create_producer(
        producer_id="p", sink=NullSink(), kind="video", codecs={96: CodecInfo("VP8", 90000)},
        ssrc=SSRC, rtx_ssrc=None, rtx_payload_types={},
    )  # fmt: skip
    endpoint.add_producer(producer)
    for n in range(fanout):
        router.create_consumer(
            producer, consumer_id=f"c{n}", sink=NullSink(), ssrc=0x1000 + n, rtx_ssrc=None,
            payload_types={96: 100}, rtx_payload_types={}, ext_id_map=ext_map, cname="x",
        )  # fmt: skip
    data = packets(count)
    on_rtp = endpoint.on_rtp
    start = time.perf_counter()
    for packet in data:
        on_rtp(packet)
    elapsed = time.perf_counter() - start
    assert all(c.packets_sent == count for c in router.consumers.values())
    router.close()
    return elapsed / count * 1e6


def rewrite_only(count: int) -> tuple[float, float]:
    data = packets(count)
    same, drop = ext_id_table({4: 4, 2: 2, 3: 3}), ext_id_table({2: 2})
    results = []
    for table in (same, drop):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for packet in data:
                rewrite_rtp(packet, 1, 100, 5, 6, table)
            best = min(best, time.perf_counter() - start)
        results.append(best / count * 1e6)
    return results[0], results[1]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    fanout = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    keep, drop = rewrite_only(count)
    print(f"rewrite_rtp alone: {keep:.2f} µs (ids remapped in place), {drop:.2f} µs (2 removed)")
    for label, ext_map in (("keep all 3 ext", {4: 4, 2: 2, 3: 3}), ("keep 1 of 3 ext", {2: 2})):
        for n in (1, 3, fanout):
            per_packet = min(run(count, n, ext_map) for _ in range(3))
            print(
                f"{label}: fan-out {n:2d}: {per_packet:7.2f} µs per packet in, "
                f"{per_packet / n:5.2f} µs per copy out"
            )


if __name__ == "__main__":
    main()
