"""Fakes shared by the forwarding tests: a clock, a transport sink that records what it would
send, an RTP packet builder, and a video producer and consumers wired the usual way."""

from __future__ import annotations

import struct

from zvonok.media.forwarding.consumer import Consumer
from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import CodecInfo, Router
from zvonok.media.packets.rtcp import parse_compound
from zvonok.media.packets.rtp import build_extension_block

PUB_SSRC = 0x11110000
PUB_RTX_SSRC = 0x11110001
VP8 = {97: CodecInfo("VP8", 90000)}
OPUS = {111: CodecInfo("opus", 48000)}
VP8_KEY = bytes.fromhex("9080 05 00 9d012a") + bytes(20)  # X S PID=0 | I | picture id | P=0
VP8_DELTA = bytes.fromhex("9080 06 01") + bytes(20)  # the same descriptor, P=1


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeSink:
    """Records what a transport would protect and send."""

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send_rtp(self, packet: bytes | bytearray) -> None:
        self.rtp.append(bytes(packet))

    def send_rtcp(self, packet: bytes | bytearray) -> None:
        self.rtcp.append(bytes(packet))

    def feedback(self) -> list[object]:
        return [p for data in self.rtcp for p in parse_compound(data)]


def rtp(
    seq: int,
    ts: int = 0,
    *,
    pt: int = 97,
    ssrc: int = PUB_SSRC,
    payload: bytes = VP8_DELTA,
    marker: bool = False,
    ext: list[tuple[int, bytes]] | None = None,
) -> bytes:
    block = build_extension_block(ext or [])
    first = 0x90 if block else 0x80
    second = pt | (0x80 if marker else 0)
    return struct.pack("!BBHII", first, second, seq & 0xFFFF, ts, ssrc) + block + payload


def make_video(
    router: Router, sink: FakeSink, codecs: dict[int, CodecInfo] | None = None
) -> Producer:
    return router.create_producer(
        producer_id="video",
        sink=sink,
        kind="video",
        codecs=codecs or VP8,
        ssrc=PUB_SSRC,
        rtx_ssrc=PUB_RTX_SSRC,
        rtx_payload_types={98: 97},
    )


def consumer(
    router: Router,
    producer: Producer,
    n: int = 0,
    *,
    rtx: bool = True,
    pts: dict[int, int] | None = None,
) -> tuple[Consumer, FakeSink]:
    sink = FakeSink()
    c = router.create_consumer(
        producer,
        consumer_id=f"c{n}",
        sink=sink,
        ssrc=0x2000 + n,
        rtx_ssrc=0x3000 + n if rtx else None,
        payload_types=pts or {97: 96 + n},
        rtx_payload_types={96 + n: 120 + n} if rtx else {},
        ext_id_map={3: 10 + n},
        cname=f"pub-{n}",
    )
    return c, sink
