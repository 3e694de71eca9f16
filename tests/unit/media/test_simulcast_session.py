"""Simulcast end to end in one process: a negotiated simulcast m-line (``PublishedTrack`` with
rids) becomes a layered producer on a real worker transport, the publisher's endpoint learns the
layers' SSRCs from the rid extension, and a subscriber's compiled forwarder switches layers."""

from __future__ import annotations

import socket

from zvonok.media.fastpath import native
from zvonok.media.forwarding.router import Router
from zvonok.media.forwarding.types import MID_URI, REPAIRED_RID_URI, RID_URI
from zvonok.media.sdp.description import RtpCodec
from zvonok.media.sdp.slots import AcceptedSend, PublishedTrack
from zvonok.media.session import MediaSession, consumer_params, producer_params
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.worker import MediaWorker

from .forwarding_fakes import VP8_DELTA, rtp
from .test_simulcast import VP8_SIZES

EXTENSIONS = {MID_URI: 4, RID_URI: 10, REPAIRED_RID_URI: 11}


def simulcast_track() -> PublishedTrack:
    return PublishedTrack(
        mid="1",
        kind="video",
        ssrc=None,
        rtx_ssrc=None,
        codecs={96: RtpCodec(96, "VP8", 90000, rtcp_fb=["nack", "nack pli", "ccm fir"])},
        rtx={97: 96},
        extensions=dict(EXTENSIONS),
        msid=("stream", "camera"),
        rids=("q", "h", "f"),
    )


def test_producer_params_of_a_simulcast_track() -> None:
    params = producer_params("cam", simulcast_track())
    assert params.rids == ("q", "h", "f") and params.ssrc is None and params.rtx_ssrc is None
    assert params.extensions == EXTENSIONS


def key_target(session: MediaSession, peer: socket.socket) -> None:
    """What DTLS completion does to the subscriber's send target: keyed, addressed, enabled (a
    video forwarder starts only at a keyframe its target can send)."""
    key = bytes(range(AEAD_AES_128_GCM.master_length))
    srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=key, rx_master=key)
    target = session.transport.rtp_target
    target.set_srtp(*srtp.tx_handle(), srtp)
    target.set_address(peer.getsockname())
    target.enabled = True


async def test_learn_and_switch_through_media_sessions(worker: MediaWorker) -> None:
    router = Router()
    alice = MediaSession(worker=worker, router=router, on_state=lambda state: None)
    bob = MediaSession(worker=worker, router=router, on_state=lambda state: None)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        key_target(bob, peer)
        producer = alice.produce(producer_params("cam", simulcast_track()))
        assert [layer.rid for layer in producer.layers] == ["q", "h", "f"]
        for i, rid in enumerate("qhf"):
            first = rtp(100 * i, 9000 * i, pt=96, ssrc=0x100 + i, payload=VP8_SIZES[i],
                        ext=[(4, b"1"), (10, rid.encode())])  # fmt: skip
            alice.endpoint.on_rtp(first)
        assert [layer.ssrc for layer in producer.layers] == [0x100, 0x101, 0x102]
        assert [layer.width for layer in producer.layers] == [320, 640, 1280]

        accepted = AcceptedSend("cam", "0", [RtpCodec(100, "VP8", 90000, rtcp_fb=["nack"])], {}, {})
        params = consumer_params(
            "b/cam", simulcast_track(), accepted, ssrc=5, rtx_ssrc=6, cname="a"
        )
        assert params is not None
        consumer = bob.consume(producer, params)
        assert consumer.current_layer == 2  # the highest active layer
        assert type(consumer.core).__module__.endswith("_fastpath") == (native is not None)
        consumer.target_layer = 0  # nothing sent yet: it waits on layer 0 directly
        alice.endpoint.on_rtp(rtp(1, 100, pt=96, ssrc=0x100, payload=VP8_SIZES[0]))
        alice.endpoint.on_rtp(rtp(2, 200, pt=96, ssrc=0x100, payload=VP8_DELTA))
        assert consumer.packets_sent == 2 and consumer.current_layer == 0
        consumer.target_layer = 1
        alice.endpoint.on_rtp(rtp(101, 300, pt=96, ssrc=0x101, payload=VP8_DELTA))
        alice.endpoint.on_rtp(rtp(3, 300, pt=96, ssrc=0x100, payload=VP8_DELTA))
        assert consumer.current_layer == 0 and consumer.packets_sent == 3
        alice.endpoint.on_rtp(rtp(102, 400, pt=96, ssrc=0x101, payload=VP8_SIZES[1]))
        assert consumer.current_layer == 1 and consumer.layer_switches == 1
        assert (
            consumer.packets_sent == 4
            and consumer.core.last_out_seq == (consumer.core.seq_offset + 102) & 0xFFFF
        )
        alice.close_producer("cam")
        assert consumer.closed and alice.endpoint.unknown_ssrc == 3
    finally:
        alice.close()
        bob.close()
        peer.close()
