"""Isolation of sessions on the media plane: RTCP and RTP naming another session's SSRCs.

The integration level cannot send authenticated RTCP from a client without its SRTP keys, so
this runs at unit level against ``MediaEndpoint`` (one per session, the transport's listener):
everything a participant's SRTP context decrypts reaches only its own endpoint. Proves that
PLI, FIR, NACK, RR/SR and REMB naming the SSRCs of another session's consumers, of the
publisher's media or RTX stream, or of a session in another room change nothing outside the
sender's own session, even when the sender's consumer SSRC collides with the victim's.
"""

from __future__ import annotations

from zvonok.media.forwarding.endpoint import MediaEndpoint
from zvonok.media.forwarding.router import Router
from zvonok.media.packets.rtcp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    SenderReport,
    build_compound,
)
from zvonok.media.packets.rtp import rtp_seq

from .forwarding_fakes import (
    PUB_RTX_SSRC,
    PUB_SSRC,
    VP8_KEY,
    FakeClock,
    FakeSink,
    consumer,
    make_video,
    rtp,
)


def hostile_compound(victim_ssrcs: list[int], seqs: list[int]) -> bytes:
    """Every feedback type, each aimed at every victim SSRC, as one compound packet."""
    packets: list[object] = [
        ReceiverReport(77, [ReportBlock(s, 255, 100_000, 9, 3, 0, 0) for s in victim_ssrcs]),
        SenderReport(PUB_SSRC, 5 << 40, 999, 1, 1),  # spoofing the publisher's SSRC
        Remb(77, 1_000, victim_ssrcs),
    ]
    for ssrc in victim_ssrcs:
        packets += [Nack(77, ssrc, seqs), Pli(77, ssrc), Fir(77, 0, [(ssrc, 9)])]
    return build_compound(packets)  # type: ignore[arg-type]


def test_rtcp_for_another_sessions_ssrcs_changes_nothing_there() -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    pub_sink = FakeSink()
    producer = make_video(router, pub_sink)
    alice, bob, mallory = (MediaEndpoint(clock=clock) for _ in range(3))
    alice.add_producer(producer)
    bob_consumer, bob_sink = consumer(router, producer, 0)
    bob.add_consumer(bob_consumer)
    mallory_consumer = router.create_consumer(
        producer,
        consumer_id="mallory",
        sink=FakeSink(),
        ssrc=bob_consumer.ssrc,  # the same SSRC as bob's consumer: a collision
        rtx_ssrc=None,
        payload_types={97: 96},
        rtx_payload_types={},
        ext_id_map={},
        cname="pub",
    )
    mallory.add_consumer(mallory_consumer)
    other_room = Router(clock=clock)
    far_producer = make_video(other_room, FakeSink())
    far_consumer, _ = consumer(other_room, far_producer, 5)
    alice.on_rtp(rtp(1, payload=VP8_KEY))
    alice.on_rtp(rtp(2))
    sent = [rtp_seq(p) for p in bob_sink.rtp]
    assert len(sent) == 2
    before = (
        bob_consumer.rtx_sent,
        bob_consumer.keyframe_requests_received,
        bob_consumer.fraction_lost,
        producer.last_sr,
        len(pub_sink.rtcp),
        len(bob_sink.rtp),
        far_consumer.keyframe_requests_received,
    )
    victims = [bob_consumer.ssrc, bob_consumer.rtx_ssrc or 0, PUB_SSRC, PUB_RTX_SSRC]
    victims.append(far_consumer.ssrc)
    mallory.on_rtcp(hostile_compound(victims, sent))
    after = (
        bob_consumer.rtx_sent,
        bob_consumer.keyframe_requests_received,
        bob_consumer.fraction_lost,
        producer.last_sr,
        len(pub_sink.rtcp),
        len(bob_sink.rtp),
        far_consumer.keyframe_requests_received,
    )
    assert after == before
    # Only mallory's own consumer (which happens to share the SSRC) saw her feedback.
    assert mallory_consumer.keyframe_requests_received > 0
    assert mallory.plis == len(victims) and mallory.nacks == len(victims)
    # The same feedback from bob's own connection does reach bob's consumer.
    bob.on_rtcp(bytes(Pli(77, bob_consumer.ssrc)))
    assert bob_consumer.keyframe_requests_received == before[1] + 1


def test_rtp_with_another_sessions_ssrc_is_not_forwarded() -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    producer = make_video(router, FakeSink())
    alice, mallory = MediaEndpoint(clock=clock), MediaEndpoint(clock=clock)
    alice.add_producer(producer)
    bob_consumer, bob_sink = consumer(router, producer, 0)
    alice.on_rtp(rtp(1, payload=VP8_KEY))
    forwarded = len(bob_sink.rtp)
    # mallory sends media with alice's SSRCs (media and RTX) on her own connection
    for seq in range(2, 40):
        mallory.on_rtp(rtp(seq, payload=VP8_KEY))
        mallory.on_rtp(rtp(seq, ssrc=PUB_RTX_SSRC, pt=98))
    assert len(bob_sink.rtp) == forwarded
    assert producer.packets_received == 1 and mallory.unknown_ssrc == 76
    assert bob_consumer.ssrc not in (PUB_SSRC, PUB_RTX_SSRC)
