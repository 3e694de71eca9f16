"""In-process: the worker socket's receive path, one datagram a wake-up vs recvmmsg batches.

A real ``MediaUdpProtocol`` → ``WebRtcTransport`` (SRTP unprotect) → producer → one forwarder
(rewrite, protect, sendmmsg to a socket nobody reads), under uvloop, fed by a client socket in
the same process that sends bursts of B pre-protected packets, then waits until the server side
has taken all of them. ``uvloop`` mode serves the socket with uvloop's datagram transport (one
``datagram_received`` per datagram, the code before), ``drain`` with ``MediaUdpProtocol.open``
(``Demux.drain``: recvmmsg). CPU µs (process time, sender included: the same in both) per
packet, median of 5. Usage: PYTHONPATH=SRC python recv_micro.py
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time

import uvloop

from zvonok.bench import hotpath
from zvonok.media.forwarding.router import Router
from zvonok.media.forwarding.types import CodecInfo
from zvonok.media.transport.dtls import DtlsCertificate
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.transport import ConnectionState, WebRtcTransport
from zvonok.media.transport.udp import MediaUdpProtocol

PACKETS = 6000


async def run(mode: str, burst: int) -> float:
    loop = asyncio.get_running_loop()
    key = bytes(range(AEAD_AES_128_GCM.master_length))
    udp = MediaUdpProtocol()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    if mode == "drain":
        await udp.open(sock)
    else:
        await loop.create_datagram_endpoint(lambda: udp, sock=sock)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    context = DtlsCertificate.generate().make_context()
    router = Router()

    def transport(index: int, listener: hotpath._Endpoint) -> WebRtcTransport:
        t = WebRtcTransport(
            transport_id=f"t{index}",
            listener=listener,
            udp=udp,
            dtls_context=context,
            fingerprint=("sha-256", ""),
            candidates=list,
            loop=loop,
            clock=time.monotonic,
            consent_timeout=30.0,
            dtls_timeout=10.0,
            on_closed=lambda _t: None,
        )
        t._set_state(ConnectionState.CONNECTING)
        t.dtls_connected(SrtpSession(AEAD_AES_128_GCM, tx_master=key, rx_master=key))
        t._ice.selected = sink.getsockname()
        t.rtp_target.set_address(sink.getsockname())
        return t

    endpoint = hotpath._Endpoint()
    publisher = transport(0, endpoint)
    udp.bind_address(client.getsockname(), publisher)
    producer = router.create_producer(
        producer_id="p",
        sink=publisher,
        kind="audio",
        codecs={111: CodecInfo("opus", 48000)},
        ssrc=0x1234,
        rtx_ssrc=None,
        rtx_payload_types={},
    )
    endpoint.add_producer(producer)
    consumer = router.create_consumer(
        producer,
        consumer_id="c",
        sink=transport(1, hotpath._Endpoint()),
        ssrc=1,
        rtx_ssrc=None,
        payload_types={111: 111},
        rtx_payload_types={},
        ext_id_map={1: 1},
        cname="bench",
    )
    srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=key, rx_master=key)
    wire = [srtp.protect_rtp(hotpath._packet(seq)) for seq in range(1, PACKETS + 1)]
    dest = sock.getsockname()
    start = time.process_time()
    for i in range(0, PACKETS, burst):
        for data in wire[i : i + burst]:
            client.sendto(data, dest)
        target = min(i + burst, PACKETS)
        deadline = time.monotonic() + 2
        while consumer.packets_sent < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: {consumer.packets_sent} of {target} forwarded")
            await asyncio.sleep(0)
    elapsed = time.process_time() - start
    router.close()
    await udp.close()
    client.close()
    sink.close()
    return elapsed / PACKETS * 1e6


async def main() -> None:
    for burst in (1, 4, 32):
        for mode in ("uvloop", "drain"):
            runs = [await run(mode, burst) for _ in range(5)]
            print(
                f"burst {burst:2d} {mode:6s}: {statistics.median(runs):6.2f} µs/packet "
                f"(runs {', '.join(f'{r:.2f}' for r in runs)})"
            )


if __name__ == "__main__":
    uvloop.run(main())
