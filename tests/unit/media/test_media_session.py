"""MediaSession: produce/consume/close on a real worker transport and router, and the SDP ->
parameter-object translation (``producer_params``, ``consumer_params``)."""

from __future__ import annotations

import dataclasses

import pytest

from zvonok.media.forwarding.router import Router
from zvonok.media.forwarding.types import CodecInfo
from zvonok.media.sdp.description import RtpCodec
from zvonok.media.sdp.slots import AcceptedSend, PublishedTrack
from zvonok.media.session import MediaSession, consumer_params, producer_params
from zvonok.media.transport.transport import ConnectionState
from zvonok.media.worker import MediaWorker

from .forwarding_fakes import PUB_RTX_SSRC, PUB_SSRC, VP8_KEY, rtp

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
FB = ["nack", "nack pli", "ccm fir", "goog-remb"]


def published(*, mid: str = "1", kind: str = "video", ssrc: int = PUB_SSRC) -> PublishedTrack:
    return PublishedTrack(
        mid=mid,
        kind=kind,
        ssrc=ssrc,
        rtx_ssrc=PUB_RTX_SSRC,
        codecs={
            96: RtpCodec(96, "VP8", 90000, rtcp_fb=list(FB)),
            98: RtpCodec(98, "H264", 90000, fmtp={"packetization-mode": "1"}, rtcp_fb=["nack"]),
        },
        rtx={97: 96},
        extensions={MID_URI: 4, AUDIO_LEVEL_URI: 1},
        msid=("stream", "track"),
    )


def accepted(*, rtx: bool = True) -> AcceptedSend:
    return AcceptedSend(
        track_id="t1",
        mid="0",
        codecs=[RtpCodec(100, "VP8", 90000, rtcp_fb=["nack"])],
        rtx={101: 100} if rtx else {},
        extensions={MID_URI: 9, AUDIO_LEVEL_URI: 3},
    )


def test_producer_params_from_a_published_m_line() -> None:
    params = producer_params("t1", published())
    assert params.producer_id == "t1" and params.kind == "video" and params.mid == "1"
    assert params.ssrc == PUB_SSRC and params.rtx_ssrc == PUB_RTX_SSRC
    assert params.codecs == {
        96: CodecInfo("VP8", 90000, nack=True, pli=True, fir=True),
        98: CodecInfo("H264", 90000, nack=True, pli=False, fir=False),
    }
    assert params.rtx_payload_types == {97: 96}
    assert producer_params("t2", published(kind="audio")).kind == "audio"


def test_consumer_params_map_payload_types_rtx_and_extensions() -> None:
    params = consumer_params("s/t1", published(), accepted(), ssrc=5, rtx_ssrc=6, cname="pub")
    assert params is not None
    assert params.consumer_id == "s/t1" and params.cname == "pub"
    assert params.payload_types == {96: 100}  # H264 was not accepted
    assert params.rtx_payload_types == {100: 101}
    assert params.ext_id_map == {1: 3}  # the mid extension is never rewritten
    assert (params.ssrc, params.rtx_ssrc) == (5, 6)
    plain = consumer_params("s/t1", published(), accepted(rtx=False), ssrc=5, rtx_ssrc=6, cname="")
    assert plain is not None and plain.rtx_ssrc is None


def test_consumer_params_none_without_a_common_codec() -> None:
    opus_only = AcceptedSend("t1", "0", [RtpCodec(111, "opus", 48000, 2)], {}, {})
    assert consumer_params("s/t1", published(), opus_only, ssrc=5, rtx_ssrc=6, cname="") is None


async def test_produce_consume_and_close_register_in_router_and_session(
    worker: MediaWorker,
) -> None:
    router = Router()
    states: list[ConnectionState] = []
    alice = MediaSession(worker=worker, router=router, on_state=states.append)
    bob = MediaSession(worker=worker, router=router, on_state=states.append)
    assert worker.transport_count() == 2

    producer = alice.produce(producer_params("t1", published()))
    assert router.producers == {"t1": producer} and dict(alice.producers) == {"t1": producer}
    alice.endpoint.on_rtp(rtp(1, payload=VP8_KEY))
    assert producer.packets_received == 1  # the endpoint routes the track's SSRC to it

    params = consumer_params("b/t1", published(), accepted(), ssrc=5, rtx_ssrc=6, cname="a")
    assert params is not None
    consumer = bob.consume(producer, params)
    assert router.consumers == {"b/t1": consumer} and dict(bob.consumers) == {"t1": consumer}
    assert producer.consumers == [consumer]
    with pytest.raises(ValueError):
        bob.consume(producer, params)

    bob.close_consumer("t1")
    assert consumer.closed and not bob.consumers and not router.consumers
    assert producer.consumers == []

    again = bob.consume(producer, params)
    alice.close_producer("t1")
    assert producer.closed and again.closed  # closing a producer closes its consumers
    assert not alice.producers and not router.producers
    alice.endpoint.on_rtp(rtp(2))
    assert producer.packets_received == 1 and alice.endpoint.unknown_ssrc == 1

    alice.close()
    bob.close()
    bob.close()  # idempotent
    assert not bob.consumers and worker.transport_count() == 0
    with pytest.raises(ValueError):
        alice.produce(producer_params("t2", published()))
    assert states == [ConnectionState.CLOSED] * 2  # the transports report their close


async def test_close_frees_what_the_session_created(worker: MediaWorker) -> None:
    router = Router()
    alice = MediaSession(worker=worker, router=router, on_state=lambda state: None)
    bob = MediaSession(worker=worker, router=router, on_state=lambda state: None)
    producer = alice.produce(producer_params("t1", published()))
    params = consumer_params("b/t1", published(), accepted(), ssrc=5, rtx_ssrc=6, cname="a")
    assert params is not None
    consumer = bob.consume(producer, params)
    bob.close()
    assert consumer.closed and not producer.closed and router.consumers == {}
    alice.close()
    assert producer.closed and router.producers == {}
    assert worker.transport_count() == 0


async def test_a_renumbered_m_line_moves_the_transport_wide_stamp(worker: MediaWorker) -> None:
    """The subscriber renegotiated its m-line with another transport-cc id (aiortc renumbers
    extension ids in every offer it makes): the consumer's map and the transport's stamping
    both follow, the consumer stays the same object."""
    twcc = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    router = Router()
    alice = MediaSession(worker=worker, router=router, on_state=lambda s: None)
    bob = MediaSession(worker=worker, router=router, on_state=lambda s: None)
    track = dataclasses.replace(published(), extensions={MID_URI: 4, twcc: 3})
    producer = alice.produce(producer_params("t1", track))

    def sent(twcc_id: int) -> AcceptedSend:
        return dataclasses.replace(accepted(), extensions={MID_URI: 9, twcc: twcc_id})

    first = consumer_params("b/t1", track, sent(5), ssrc=5, rtx_ssrc=6, cname="a")
    consumer = bob.consume(producer, first)  # type: ignore[arg-type]
    assert bob.downlink.send_id == 5
    renumbered = consumer_params("b/t1", track, sent(12), ssrc=5, rtx_ssrc=6, cname="a")
    assert renumbered is not None and renumbered.ext_id_map[3] == 12
    bob.update_consumer(producer, renumbered)
    assert bob.downlink.send_id == 12 and bob.consumers["t1"] is consumer
    alice.update_consumer(producer, renumbered)  # not a consumer of it: nothing happens
    assert alice.downlink.send_id == 0
    alice.close()
    bob.close()
