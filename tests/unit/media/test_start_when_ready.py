"""A video consumer starts at a keyframe its subscriber actually gets.

A subscriber's consumer is created (and asks for a keyframe) while its transport may still be in
DTLS: the send target is not keyed yet. The keyframe that answers the request must not start the
forwarder then, or the subscriber's first packets are the frames after it, which no decoder can
use until the next keyframe (seen as ~30 aiortc "failed to decode VP8 frame" warnings per
joining subscriber in tests/integration/test_hostile.py, docs/testing.md). Checked for the
compiled forwarder and the pure-Python reference, each on its own real send target.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from zvonok.media.fastpath import native
from zvonok.media.forwarding.router import Router
from zvonok.media.packets.rtp import RtpPacket
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.target import SendTarget as PySendTarget
from zvonok.media.transport.target import SendTargetLike

from .forwarding_fakes import VP8_KEY, FakeClock, FakeSink, make_video, rtp

KEY = bytes(range(AEAD_AES_128_GCM.master_length))


class TargetSink:
    """A subscriber transport reduced to its send target: what it sends, decrypted."""

    def __init__(self, rtp_target: SendTargetLike, rx: socket.socket) -> None:
        self.rtp_target = rtp_target
        self.rx = rx
        self.srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
        self.fallback: list[bytes] = []

    def send_rtp(self, packet: bytes | bytearray) -> None:
        self.rtp_target.send(packet)

    def send_rtcp(self, packet: bytes | bytearray) -> None:
        self.rtp_target.send_rtcp(packet)

    def received(self) -> list[RtpPacket]:
        """Every RTP packet that arrived so far, unprotected (compiled: on the socket; Python:
        through the target's fallback sender)."""
        data = list(self.fallback)
        self.fallback.clear()
        self.rx.settimeout(0.05)
        for _ in range(100):
            try:
                data.append(self.rx.recv(2048))
            except TimeoutError:
                break
        return [RtpPacket.parse(self.srtp.unprotect_rtp(d)) for d in data]


@pytest.fixture(params=["compiled", "python"])
def sink(request: pytest.FixtureRequest) -> Iterator[TargetSink]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    rx.bind(("127.0.0.1", 0))
    tx.setblocking(False)
    session = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    holder: list[TargetSink] = []
    target: SendTargetLike
    if request.param == "compiled":
        if native is None:
            pytest.skip("the compiled fast path is not built")
        target = native.SendTarget(tx.fileno(), lambda d, a: None)
    else:
        target = PySendTarget(-1, lambda d, a: holder[0].fallback.append(bytes(d)))
    target.set_address(rx.getsockname())
    target.enabled = True
    out = TargetSink(target, rx)
    holder.append(out)
    out.session = session  # type: ignore[attr-defined]
    yield out
    tx.close()
    rx.close()


def key_srtp(sink: TargetSink) -> None:
    """DTLS done: the target gets its SRTP session (as the transport does on CONNECTED)."""
    session: SrtpSession = sink.session  # type: ignore[attr-defined]
    sink.rtp_target.set_srtp(*session.tx_handle(), session)  # the Python target keeps the session


def test_a_keyframe_the_target_cannot_send_does_not_start_the_video(sink: TargetSink) -> None:
    clock = FakeClock()
    router = Router(clock=clock)
    producer = make_video(router, FakeSink())
    c = router.create_consumer(
        producer, consumer_id="c", sink=sink, ssrc=0x2000, rtx_ssrc=None,
        payload_types={97: 96}, rtx_payload_types={}, ext_id_map={}, cname="pub",
    )  # fmt: skip
    assert not sink.rtp_target.ready and c.waiting
    producer.receive_rtp(rtp(100, 9000, payload=VP8_KEY, marker=True))  # DTLS still going on
    assert c.waiting and c.packets_sent == 0 and c.dropped == 1
    key_srtp(sink)
    assert sink.rtp_target.ready
    producer.receive_rtp(rtp(101, 12000, marker=True))  # a delta frame: still waiting
    assert c.waiting and sink.received() == []
    clock.now += 1.1
    router.tick(clock())  # the consumer asks again (asserted in test_forwarding_consumer)
    producer.receive_rtp(rtp(102, 15000, payload=VP8_KEY, marker=True))
    producer.receive_rtp(rtp(103, 18000, marker=True))
    got = sink.received()
    assert not c.waiting and c.packets_sent == 2
    assert [p.payload for p in got] == [VP8_KEY, rtp(103)[12:]]
    assert got[1].sequence_number == (got[0].sequence_number + 1) & 0xFFFF


def test_the_first_keyframe_is_asked_for_when_the_target_can_send(sink: TargetSink) -> None:
    """Asking at creation, while DTLS goes on, would spend the layer's one request a second on a
    keyframe that starts nothing; the subscriber would wait up to a second more for its video."""
    clock = FakeClock()
    router = Router(clock=clock)
    publisher = FakeSink()
    producer = make_video(router, publisher)
    c = router.create_consumer(
        producer, consumer_id="c", sink=sink, ssrc=0x2000, rtx_ssrc=None,
        payload_types={97: 96}, rtx_payload_types={}, ext_id_map={}, cname="pub",
    )  # fmt: skip
    producer.receive_rtp(rtp(100, 9000, marker=True))  # the publisher's stream is known
    assert c.waiting and not sink.rtp_target.ready

    def plis() -> int:
        return sum(1 for p in publisher.feedback() if type(p).__name__ == "Pli")

    clock.now += 0.25
    router.tick(clock())
    assert plis() == 0  # nothing asked while the subscriber cannot get it
    key_srtp(sink)  # DTLS done 0.3 s after the consumer was made
    clock.now += 0.05
    router.tick(clock())
    assert plis() == 1  # asked at once, not a second after a wasted request
    producer.receive_rtp(rtp(101, 12000, payload=VP8_KEY, marker=True))
    assert not c.waiting and c.packets_sent == 1
    clock.now += 2.0
    router.tick(clock())
    assert plis() == 1  # started: nothing more to ask
