"""In-process microbenchmark of the forwarding hot path, without the generator.

Owns ``measure_hotpath``: a real ``MediaUdpProtocol`` → ``WebRtcTransport`` (SRTP unprotect) →
``MediaEndpoint`` → ``Producer`` → forwarders (rewrite, SRTP protect, send) chain on a real
loopback UDP socket whose copies go to one socket nobody reads (the kernel drops them once its
buffer is full), fed pre-protected packets straight into ``datagram_received``. It measures the
server's own per-copy cost, kernel send included, without the receive side of the kernel and
without a client; ``zvonok bench`` measures the whole. Run it with
``python -m zvonok.bench.hotpath [FANOUT ...]``; ``ZVONOK_PURE_PYTHON=1`` measures the
pure-Python reference instead of the compiled loop. Imports the server's media modules (the
server never imports this).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from typing import Any

from ..media.fastpath import native
from ..media.forwarding.endpoint import MediaEndpoint
from ..media.forwarding.router import Router
from ..media.forwarding.types import CodecInfo
from ..media.transport.dtls import DtlsCertificate
from ..media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from ..media.transport.transport import ConnectionState, WebRtcTransport
from ..media.transport.udp import MediaUdpProtocol

PACKETS = 3000


class _Endpoint(MediaEndpoint):
    """A session's media endpoint that ignores the transport's state changes."""

    def on_state(self, state: ConnectionState) -> None:
        pass


PAYLOAD = 1100


#: The transport-cc header-extension id of ``measure_hotpath(twcc_element=True)``.
TWCC_ID = 3


def _packet(seq: int, twcc_element: bool = False) -> bytes:
    ext = bytes([0x10, 0x9E, 0x40, ord("0")])  # audio level (id 1) + mid "0" (id 4)
    if twcc_element:  # + transport-cc (id 3) and one padding byte
        ext += bytes([TWCC_ID << 4 | 1, seq >> 8 & 0xFF, seq & 0xFF, 0])
    header = struct.pack("!BBHIIHH", 0x90, 111, seq, seq * 960, 0x1234, 0xBEDE, len(ext) // 4)
    return header + ext + bytes(PAYLOAD)


async def measure_hotpath(
    fanout: int, packets: int = PACKETS, *, twcc_element: bool = False, twcc: bool = False
) -> float:
    """Microseconds of CPU per delivered copy at ``fanout`` (process time, one run).

    ``twcc_element``: every packet carries a transport-cc element (forwarded as is); ``twcc``:
    also record the publisher's arrivals and stamp every copy (transport-wide CC on)."""
    twcc_element = twcc_element or twcc
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
        publisher.set_twcc_receive(TWCC_ID)
    producer = router.create_producer(
        producer_id="p", sink=publisher, kind="audio", codecs={111: CodecInfo("opus", 48000)},
        ssrc=0x1234, rtx_ssrc=None, rtx_payload_types={},
    )  # fmt: skip
    endpoint.add_producer(producer)
    ext_id_map = {1: 1, TWCC_ID: TWCC_ID} if twcc_element else {1: 1}
    subscribers = []
    for i in range(fanout):
        t = transport(i + 1, _Endpoint())
        if twcc:
            t.set_twcc_send(TWCC_ID)
        subscribers.append(t)
        router.create_consumer(
            producer, consumer_id=f"c{i}", sink=t, ssrc=i + 1, rtx_ssrc=None,
            payload_types={111: 111}, rtx_payload_types={}, ext_id_map=ext_id_map,
            cname="bench",
        )  # fmt: skip
    client = SrtpSession(AEAD_AES_128_GCM, tx_master=key, rx_master=key)
    wire = [client.protect_rtp(_packet(seq, twcc_element)) for seq in range(1, packets + 1)]
    addr = ("127.0.0.1", 10000)
    receive = udp.datagram_received
    start = time.process_time()
    for data in wire:
        receive(data, addr)
    elapsed = time.process_time() - start
    sent = sum(c.packets_sent for c in router.consumers.values())
    stamped = sum(t.rtp_target.twcc_stamped for t in subscribers)
    publisher.close()  # its transport-cc feedback timer, when on
    router.close()
    await udp.close()
    sink.close()
    if sent != packets * fanout:
        raise RuntimeError(f"hot path delivered {sent} of {packets * fanout} copies")
    if stamped != (sent if twcc else 0):
        raise RuntimeError(f"hot path stamped {stamped} of {sent} copies")
    return elapsed / sent * 1e6


async def _main(fanouts: list[int]) -> None:
    for fanout in fanouts:
        runs = sorted([await measure_hotpath(fanout) for _ in range(5)])
        print(
            f"fan-out {fanout:3d}: {runs[2]:6.2f} µs per copy (median of 5; min {runs[0]:.2f})"
            f" [{'compiled' if native is not None else 'pure Python'}]"
        )


if __name__ == "__main__":
    asyncio.run(_main([int(a) for a in sys.argv[1:]] or [1, 3, 21]))
