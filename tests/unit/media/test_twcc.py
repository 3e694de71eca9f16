"""Transport-wide CC above the hot path (forwarding/twcc.py) and in the transport: feedback built
from arrivals, feedback read back into packet results, the session's ``Downlink`` wiring, and a
real ``WebRtcTransport`` sending feedback every 100 ms only while packets arrive."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from zvonok.media.forwarding.bwe import DownlinkEstimator
from zvonok.media.forwarding.twcc import (
    MAX_STATUSES,
    PROBE_DURATION,
    PROBE_TICK,
    Downlink,
    FeedbackAdapter,
    FeedbackBuilder,
)
from zvonok.media.packets.rtcp import TransportFeedback, parse_compound
from zvonok.media.packets.rtp import build_extension_block
from zvonok.media.sdp.codecs import TWCC_URI
from zvonok.media.transport.dtls import DtlsCertificate
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.target import find_extension
from zvonok.media.transport.tcp import TcpSendTarget
from zvonok.media.transport.transport import ConnectionState, WebRtcTransport
from zvonok.media.transport.udp import MediaUdpProtocol

KEY = bytes(range(AEAD_AES_128_GCM.master_length))


def test_builder_reports_each_packet_once_across_the_wrap() -> None:
    builder = FeedbackBuilder(sender_ssrc=9)
    (fb,) = builder.build([(65534, 1_000), (0, 3_000), (65535, 2_500)], media_ssrc=7)
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.fb_count) == (9, 7, 65534, 0)
    assert [t for _, t in fb.arrivals()] == [1_000, 2_500, 3_000]
    # a late copy of 65535 and a new packet 2 (1 lost in between)
    (fb,) = builder.build([(65535, 4_000), (2, 5_000)], media_ssrc=7)
    assert (fb.base_seq, fb.fb_count, fb.deltas[0]) == (1, 1, None)
    assert [s for s, t in fb.arrivals() if t is not None] == [2]
    assert builder.build([], media_ssrc=7) == []
    assert builder.build([(0, 6_000)], media_ssrc=7) == []  # already reported


def test_builder_splits_long_ranges_and_large_gaps() -> None:
    builder = FeedbackBuilder(sender_ssrc=1)
    arrivals = [(s, s * 1_000) for s in range(0, 1_000)]
    packets = builder.build(arrivals, media_ssrc=2)
    assert [len(p.deltas) for p in packets] == [MAX_STATUSES, MAX_STATUSES, 200]
    assert [p.fb_count for p in packets] == [0, 1, 2]
    for p in packets:
        assert parse_compound(bytes(p)) == [p]
    # arrivals 20 s apart cannot share one packet (a delta holds ±8.19 s)
    packets = builder.build([(1_000, 0), (1_001, 20_000_000)], media_ssrc=2)
    assert [p.base_seq for p in packets] == [1_000, 1_001]
    # a jump of more than MAX_SPAN restarts the range instead of reporting 20,000 losses
    packets = builder.build([(21_000, 1)], media_ssrc=2)
    assert [(p.base_seq, len(p.deltas)) for p in packets] == [(21_000, 1)]


def test_adapter_pairs_feedback_with_the_send_history() -> None:
    sent = {s: (s * 1_000, 1_000 + s) for s in range(65530, 65536)} | {0: (70_000, 5)}
    adapter = FeedbackAdapter(sent.get)
    # reference time 2^23 - 1 (the top of the signed field), then -2^23: one 64 ms step
    first = TransportFeedback(1, 2, 65533, (1 << 23) - 1, 0, [4, None, 4])
    results = adapter.results(first)
    base = ((1 << 23) - 1) * 64_000
    assert [(r.seq, r.send_us, r.size, r.arrival_us) for r in results] == [
        (65533, 65_533_000, 66_533, base + 1_000),
        (65534, 65_534_000, 66_534, None),
        (65535, 65_535_000, 66_535, base + 2_000),
    ]
    second = TransportFeedback(1, 2, 65534, -(1 << 23), 1, [8, 8, 8, 8])
    results = adapter.results(second)
    # 65534 arrived late (lost before), 65535 is a duplicate, 0 is new, 1 was never sent
    assert [(r.seq, r.arrival_us) for r in results] == [
        (65534, base + 64_000 + 2_000),
        (0, base + 64_000 + 6_000),
    ]
    assert adapter.unknown == 1 and adapter.feedbacks == 2


@dataclass
class FakeTransport:
    receive: list[int] = field(default_factory=list)
    send: list[int] = field(default_factory=list)
    history: dict[int, tuple[int, int]] = field(default_factory=dict)

    def set_twcc_receive(self, ext_id: int) -> None:
        self.receive.append(ext_id)

    def set_twcc_send(self, ext_id: int) -> None:
        self.send.append(ext_id)

    def twcc_lookup(self, seq: int) -> tuple[int, int] | None:
        return self.history.get(seq)


@dataclass
class FakeEndpoint:
    on_transport_feedback: Any = None


@dataclass
class Params:
    ext_id_map: dict[int, int] = field(default_factory=dict)


@dataclass
class FakeProducer:
    extensions: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeCore:
    last_out_seq: int = 1000
    packets_sent: int = 500


@dataclass
class FakeConsumer:
    """The consumer surface probing uses; ``nacked`` records the resends asked for."""

    rtx_ssrc: int | None = 77
    closed: bool = False
    paused: bool = False
    current_layer: int | None = 0
    core: FakeCore = field(default_factory=FakeCore)
    nacked: list[list[int]] = field(default_factory=list)
    producer: object = None
    #: Bytes each resend puts on the wire.
    resend_size: int = 1_100
    rtx_sent: int = 0
    rtx_bytes: int = 0

    def receive_nack(self, seqs: Any) -> None:
        self.nacked.append(list(seqs))
        self.rtx_sent += len(self.nacked[-1])
        self.rtx_bytes += len(self.nacked[-1]) * self.resend_size


def test_downlink_wires_both_directions() -> None:
    publisher_transport, subscriber_transport = FakeTransport(), FakeTransport()
    publisher = Downlink(publisher_transport, FakeEndpoint())
    endpoint = FakeEndpoint()
    now = [0]
    subscriber = Downlink(subscriber_transport, endpoint, clock_us=lambda: now[0])
    assert endpoint.on_transport_feedback == subscriber.on_feedback
    producer, plain = FakeProducer({TWCC_URI: 3}), FakeProducer()
    publisher.produced(producer)
    publisher.produced(FakeProducer({TWCC_URI: 3}))  # the same id: set once
    publisher.produced(plain)
    assert publisher_transport.receive == [3]
    consumer = FakeConsumer()
    subscriber.consumed(plain, Params(ext_id_map={3: 9}), consumer)  # no transport-cc published
    assert subscriber_transport.send == [] and subscriber.estimate_bps is None
    subscriber.consumed(producer, Params(ext_id_map={1: 1}), consumer)  # the subscriber has none
    assert subscriber_transport.send == []
    subscriber.consumed(producer, Params(ext_id_map={3: 7}), consumer)
    assert subscriber_transport.send == [7]
    # the subscriber renegotiated and renumbered (aiortc does in every offer): stamping follows,
    # and the consumer stays one probe source
    subscriber.consumed(producer, Params(ext_id_map={3: 5}), consumer)
    assert subscriber_transport.send == [7, 5] and subscriber._consumers == [consumer]
    subscriber.consumed(producer, Params(ext_id_map={3: 7}), consumer)
    # feedback for 40 packets of 1,000 bytes sent 5 ms apart, all received 30 ms later
    assert subscriber_transport.send == [7, 5, 7]
    subscriber_transport.history = {s: (s * 5_000, 1_000) for s in range(40)}
    for start in (0, 20):
        fb = TransportFeedback(1, 2, start, 0, start // 20, [20] * 20)
        fb.deltas[0] = (start * 5_000 + 30_000) // 250
        now[0] = (start + 20) * 5_000 + 40_000
        endpoint.on_transport_feedback(fb)
    assert subscriber.estimate_bps is not None and subscriber.loss == 0.0
    assert subscriber.rtt is not None


# -- a real transport ---------------------------------------------------------------------------


class Listener:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def on_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def on_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def on_state(self, state: ConnectionState) -> None:
        pass


def twcc_rtp(seq: int, twcc: int, ext_id: int = 3) -> bytes:
    block = build_extension_block([(ext_id, struct.pack("!H", twcc))])
    return struct.pack("!BBHII", 0x90, 96, seq, seq * 3000, 0x5151) + block + bytes(100)


async def _transport() -> tuple[WebRtcTransport, MediaUdpProtocol, socket.socket, SrtpSession]:
    loop = asyncio.get_running_loop()
    udp = MediaUdpProtocol()
    await loop.create_datagram_endpoint(lambda: udp, local_addr=("127.0.0.1", 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    t = WebRtcTransport(
        transport_id="t", listener=Listener(), udp=udp,
        dtls_context=DtlsCertificate.generate().make_context(), fingerprint=("sha-256", ""),
        candidates=list, loop=loop, clock=time.monotonic, consent_timeout=30.0,
        dtls_timeout=10.0, on_closed=lambda _t: None,
    )  # fmt: skip
    t._set_state(ConnectionState.CONNECTING)
    t.dtls_connected(SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY))
    t._ice.selected = peer.getsockname()
    t.rtp_target.set_address(peer.getsockname())
    udp.bind_address(peer.getsockname(), t)
    client = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    return t, udp, peer, client


def _read(peer: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(peer.recv(2048))
        except BlockingIOError:
            return out


async def test_transport_sends_feedback_only_while_packets_arrive() -> None:
    t, udp, peer, client = await _transport()
    try:
        addr = peer.getsockname()
        t.set_twcc_receive(3)
        assert t._twcc_timer is None  # nothing arrived yet: no timer
        for n in range(10):
            if n != 5:
                udp.datagram_received(client.protect_rtp(twcc_rtp(n, 100 + n)), addr)
        assert t._twcc_timer is not None
        await asyncio.sleep(0.15)
        (fb,) = [p for d in _read(peer) for p in parse_compound(client.unprotect_rtcp(d))]
        assert isinstance(fb, TransportFeedback)
        assert (fb.base_seq, len(fb.deltas), fb.media_ssrc, fb.fb_count) == (100, 10, 0x5151, 0)
        assert [i for i, d in enumerate(fb.deltas) if d is None] == [5]
        await asyncio.sleep(0.12)  # a tick that finds nothing puts the transport to sleep
        assert t._twcc_timer is None and _read(peer) == []
        udp.datagram_received(client.protect_rtp(twcc_rtp(10, 110)), addr)
        await asyncio.sleep(0.15)
        (fb,) = [p for d in _read(peer) for p in parse_compound(client.unprotect_rtcp(d))]
        assert isinstance(fb, TransportFeedback) and (fb.base_seq, fb.fb_count) == (110, 1)
        udp.datagram_received(client.protect_rtp(twcc_rtp(11, 111)), addr)
        assert t._twcc_timer is not None
    finally:
        t.close()
        assert t._twcc_timer is None
        await udp.close()
        peer.close()


async def test_transport_stamps_what_it_sends() -> None:
    t, udp, peer, client = await _transport()
    try:
        t.set_twcc_send(4)
        for n in range(3):
            t.send_rtp(twcc_rtp(n, 0xAAAA, ext_id=4))
        t.send_rtp(twcc_rtp(3, 0xAAAA, ext_id=2))  # no transport-cc element: not stamped
        await asyncio.sleep(0.01)
        got = [client.unprotect_rtp(d) for d in _read(peer)]
        seqs = []
        for packet in got[:3]:
            found = find_extension(packet, 4)
            assert found is not None
            seqs.append(packet[found[0]] << 8 | packet[found[0] + 1])
        assert seqs == [0, 1, 2] and find_extension(got[3], 2) is not None
        sent = t.twcc_lookup(2)
        assert sent is not None and sent[1] == len(got[2])
        assert t.twcc_lookup(3) is None
    finally:
        t.close()
        await udp.close()
        peer.close()


async def test_downlink_probes_when_the_estimate_is_capped_by_what_is_forwarded() -> None:
    transport, endpoint = FakeTransport(), FakeEndpoint()
    now = [0]
    downlink = Downlink(transport, endpoint, clock_us=lambda: now[0])
    producer = FakeProducer({TWCC_URI: 3})
    video, audio = FakeConsumer(resend_size=200), FakeConsumer(rtx_ssrc=None)
    downlink.consumed(producer, Params(ext_id_map={3: 5}), audio)
    downlink.consumed(producer, Params(ext_id_map={3: 5}), video)
    downlink.estimator = DownlinkEstimator(start_bps=200_000)
    # 150 kbit/s forwarded (one 1,250-byte packet every 66.7 ms), arriving 30 ms later
    transport.history = {s: (s * 66_667, 1_250) for s in range(200)}
    for start in range(0, 150, 5):
        arrivals: list[int | None] = [s * 66_667 + 30_000 for s in range(start, start + 5)]
        now[0] = (start + 5) * 66_667 + 40_000
        downlink.on_feedback(TransportFeedback.build(1, 2, start // 5, start, arrivals))
    assert downlink.estimator.app_limited and downlink.probes == 1
    await asyncio.sleep(0.45)
    assert not audio.nacked and len(video.nacked) == round(PROBE_DURATION / PROBE_TICK)
    assert all(seqs and all(s <= 1000 for s in seqs) for seqs in video.nacked)
    # The first tick takes a resend as 1,100 bytes; the next ones as the 200 they measured, so
    # the cluster adds about what it aims at (2 x the estimate less the acknowledged rate).
    first, *rest = (len(seqs) for seqs in video.nacked)
    assert rest and all(n == rest[0] >= 3 * first for n in rest), video.nacked
    assert downlink._probe_timer is None  # ended: no timer while not probing
    downlink.close()
    assert downlink.closed


async def test_no_probe_beyond_what_the_tracks_can_use() -> None:
    @dataclass
    class Layer:
        bitrate: int

    @dataclass
    class Track:
        layers: list[Layer]

    transport, endpoint = FakeTransport(), FakeEndpoint()
    now = [0]
    downlink = Downlink(transport, endpoint, clock_us=lambda: now[0])
    video = FakeConsumer(producer=Track([Layer(1_000_000), Layer(2_500_000)]))
    downlink.consumed(FakeProducer({TWCC_URI: 3}), Params(ext_id_map={3: 5}), video)
    downlink.estimator = DownlinkEstimator(start_bps=3_500_000)
    # 1.6 Mbit/s forwarded (one 1,000-byte packet every 5 ms), arriving 30 ms later
    transport.history = {s: (s * 5_000, 1_000) for s in range(400)}
    for start in range(0, 300, 20):
        arrivals: list[int | None] = [s * 5_000 + 30_000 for s in range(start, start + 20)]
        now[0] = (start + 20) * 5_000 + 40_000
        downlink.on_feedback(TransportFeedback.build(1, 2, start // 20, start, arrivals))
    # capped by what is forwarded, but 3.5 Mbit/s is within 10 % of 1.5 x the best layer
    assert downlink.estimator.app_limited and downlink.probes == 0
    assert downlink.estimate_bps == 3_500_000


def test_the_ice_tcp_target_stamps_too() -> None:
    class Conn:
        peer = ("127.0.0.1", 9)
        closed = False

        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def send(self, payload: bytes) -> bool:
            self.sent.append(payload)
            return True

    target = TcpSendTarget()
    conn = Conn()
    target.set_connection(conn)  # type: ignore[arg-type]
    session = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    target.set_srtp(0, 0, session)
    target.enabled = True
    target.set_twcc(3)
    target.send(twcc_rtp(1, 0xBBBB))
    target.send(twcc_rtp(2, 0xBBBB))
    client = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    stamped = []
    for data in conn.sent:
        packet = client.unprotect_rtp(data)
        found = find_extension(packet, 3)
        assert found is not None
        stamped.append(packet[found[0]] << 8 | packet[found[0] + 1])
    assert stamped == [0, 1] and target.twcc_stamped == 2 and target.twcc_lookup(1) is not None
