"""ICE-TCP (RFC 6544 passive) with RFC 4571 framing: the framer, the candidates, and a real
MediaWorker's TCP listener driven over loopback by a client doing STUN, DTLS and SRTP in frames,
plus the hostile cases (garbage, half frames, oversized lengths, idle connections, the cap)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import AsyncIterator

import aioice
import pytest
import uvloop
from aioice import stun
from hypothesis import given
from hypothesis import strategies as st

from zvonok.media.forwarding.router import CodecInfo, Router
from zvonok.media.transport import tcp as tcp_module
from zvonok.media.transport.dtls import split_records
from zvonok.media.transport.framing import MAX_FRAME, Frame, FrameReader, frame
from zvonok.media.transport.ice import IceParameters
from zvonok.media.transport.tcp import MAX_CHECK_FRAME, TcpSendTarget
from zvonok.media.transport.transport import ConnectionState, WebRtcTransport
from zvonok.media.worker import MediaWorker, host_candidates, tcp_priority

from .dtls_client import RTCP, RTP, DtlsClient
from .test_transport_udp import REMOTE, Recorder, until

# -- RFC 4571 framing -------------------------------------------------------------------------


def test_frame_round_trip() -> None:
    assert bytes(Frame(b"abc")) == b"\x00\x03abc" == frame(b"abc")
    assert Frame.parse(b"\x00\x03abc") == Frame(b"abc")
    assert bytes(Frame(b"")) == b"\x00\x00"
    big = bytes(MAX_FRAME)
    assert Frame.parse(frame(big)).payload == big
    with pytest.raises(ValueError, match="exceeds"):
        frame(bytes(MAX_FRAME + 1))
    with pytest.raises(ValueError, match="exceeds"):
        Frame(bytes(MAX_FRAME + 1))
    with pytest.raises(ValueError, match="truncated"):
        Frame.parse(b"\x00")
    with pytest.raises(ValueError, match="does not match"):
        Frame.parse(b"\x00\x03ab")
    with pytest.raises(ValueError, match="does not match"):
        Frame.parse(b"\x00\x03abcd")


def test_reader_half_frames_wait_for_the_rest() -> None:
    reader = FrameReader()
    stream = frame(b"first") + frame(b"") + frame(b"second")
    out: list[bytes] = []
    for i in range(len(stream)):
        out += reader.feed(stream[i : i + 1])
    assert out == [b"first", b"second"]  # the empty frame is skipped
    assert reader.pending == 0
    assert reader.feed(b"\x00\x05ab") == [] and reader.pending == 4
    assert reader.feed(b"cde\x00") == [b"abcde"] and reader.pending == 1


def test_reader_full_length_frame_with_nothing_behind() -> None:
    reader = FrameReader()
    assert reader.feed(b"\xff\xff") == []
    assert reader.pending == 2
    assert reader.feed(bytes(MAX_FRAME - 1)) == []
    assert reader.pending == MAX_FRAME + 1
    assert reader.feed(b"\x01") == [bytes(MAX_FRAME - 1) + b"\x01"]
    assert reader.pending == 0


def test_reader_refuses_frames_longer_than_allowed() -> None:
    reader = FrameReader(MAX_CHECK_FRAME)
    assert reader.feed(frame(bytes(MAX_CHECK_FRAME))) == [bytes(MAX_CHECK_FRAME)]
    with pytest.raises(ValueError, match="exceeds"):
        reader.feed((MAX_CHECK_FRAME + 1).to_bytes(2, "big"))
    assert reader.pending == 0
    with pytest.raises(ValueError):
        FrameReader(MAX_FRAME + 1)


@given(
    payloads=st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=7000), max_size=30),
)
def test_reader_any_chunking_gives_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in payloads)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    reader = FrameReader()
    out: list[bytes] = []
    for start, stop in zip(points, points[1:], strict=False):
        out += reader.feed(stream[start:stop])
    assert out == payloads and reader.pending == 0


@given(st.binary(max_size=4000))
def test_reader_garbage_stays_bounded(data: bytes) -> None:
    reader = FrameReader(MAX_CHECK_FRAME)
    try:
        for frame_ in reader.feed(data):
            assert len(frame_) <= MAX_CHECK_FRAME
    except ValueError:
        assert reader.pending == 0
    assert reader.pending <= 2 + MAX_CHECK_FRAME


# -- candidates -------------------------------------------------------------------------------


def test_tcp_candidates_follow_udp_with_lower_priority() -> None:
    lines = host_candidates(["10.0.0.5", "127.0.0.1"], 40000, 40001)
    assert lines == [
        "candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host",
        "candidate:2 1 udp 2130706175 127.0.0.1 40000 typ host",
        "candidate:3 1 tcp 2124414975 10.0.0.5 40001 typ host tcptype passive",
        "candidate:4 1 tcp 2124414719 127.0.0.1 40001 typ host tcptype passive",
    ]
    # RFC 6544 §4.2: (2^24)*126 + (2^8)*((2^13)*4 + 8191) + (256 - 1)
    assert tcp_priority(0) == (1 << 24) * 126 + (1 << 8) * ((1 << 13) * 4 + 8191) + 255
    parsed = [aioice.Candidate.from_sdp(line.split(":", 1)[1]) for line in lines]
    assert [c.transport for c in parsed] == ["udp", "udp", "tcp", "tcp"]
    assert [c.tcptype for c in parsed] == [None, None, "passive", "passive"]
    assert len({c.foundation for c in parsed}) == 4
    udp = [c.priority for c in parsed if c.transport == "udp"]
    tcp = [c.priority for c in parsed if c.transport == "tcp"]
    assert min(udp) > max(tcp) and tcp == sorted(tcp, reverse=True)
    many = host_candidates([f"10.0.{i // 250}.{i % 250 + 1}" for i in range(300)], 1, 2)
    prios = [int(line.split()[3]) for line in many]
    assert min(prios[:300]) > max(prios[300:])
    assert host_candidates(["127.0.0.1"], 5) == [
        "candidate:1 1 udp 2130706431 127.0.0.1 5 typ host"
    ]


# -- a real worker's listener ------------------------------------------------------------------


@pytest.fixture
async def tcp_worker() -> AsyncIterator[MediaWorker]:
    media = MediaWorker(
        host="127.0.0.1",
        port=0,
        ice_tcp=True,
        tcp_port=0,
        tcp_max_connections=8,
        tcp_auth_timeout=0.5,
    )
    await media.start()
    yield media
    await media.close()


class TcpPeer:
    """A client ICE-TCP connection (the active side) on loopback."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.queue: list[bytes] = []
        self.addr: tuple[str, int] = writer.get_extra_info("sockname")[:2]

    @classmethod
    async def open(cls, worker: MediaWorker) -> TcpPeer:
        assert worker.tcp is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.tcp.port)
        return cls(reader, writer)

    def close(self) -> None:
        self.writer.close()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, payload: bytes) -> None:
        await self.send_raw(frame(payload))

    async def recv(self, wait: float = 2.0) -> bytes | None:
        """The next frame; None on timeout or EOF."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self.queue:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                return None
            if not data:
                return None
            self.queue += self.frames.feed(data)
        return self.queue.pop(0)

    async def closed_by_server(self, wait: float = 2.0) -> bool:
        """True once the server closed (frames before the end, e.g. close_notify, are read)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.queue += self.frames.feed(data)
        return False

    async def check(
        self, local: IceParameters, *, use_candidate: bool = True
    ) -> stun.Message | None:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{local.ufrag}:{REMOTE.ufrag}"
        request.attributes["PRIORITY"] = 1845501695
        request.attributes["ICE-CONTROLLING"] = 42
        if use_candidate:
            request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(local.pwd.encode())
        await self.send(bytes(request))
        data = await self.recv(wait=1.0)
        return None if data is None else stun.parse_message(data)

    async def handshake(self, client: DtlsClient) -> None:
        outgoing = client.step([])
        for _ in range(10):
            for record in outgoing:
                await self.send(record)
            if client.done:
                return
            reply = await self.recv()
            outgoing = client.step(split_records(reply) if reply else [])
        raise AssertionError("DTLS handshake over TCP did not finish")


async def connect_tcp(
    worker: MediaWorker, peer: TcpPeer
) -> tuple[WebRtcTransport, Recorder, DtlsClient]:
    recorder = Recorder()
    transport = worker.create_transport(recorder)
    response = await peer.check(transport.local_ice)
    assert response is not None and response.message_class == stun.Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == peer.addr
    assert response.check_message_integrity(transport.local_ice.pwd.encode())
    client = DtlsClient()
    transport.set_remote(REMOTE, client.fingerprints)
    await peer.handshake(client)
    await until(lambda: transport.state is ConnectionState.CONNECTED)
    return transport, recorder, client


async def test_worker_announces_tcp_after_udp(tcp_worker: MediaWorker) -> None:
    assert tcp_worker.tcp is not None
    transport = tcp_worker.create_transport(Recorder())
    assert transport.local_candidates() == [
        f"candidate:1 1 udp 2130706431 127.0.0.1 {tcp_worker.port} typ host",
        f"candidate:2 1 tcp 2124414975 127.0.0.1 {tcp_worker.tcp.port} typ host tcptype passive",
    ]


async def test_tcp_port_defaults_to_the_udp_number() -> None:
    media = MediaWorker(host="127.0.0.1", port=0, ice_tcp=True)
    await media.start()
    try:
        assert media.tcp is not None and media.tcp.port == media.port
    finally:
        await media.close()


async def test_stun_dtls_srtp_over_tcp(tcp_worker: MediaWorker) -> None:
    peer = await TcpPeer.open(tcp_worker)
    try:
        changes: list[str] = []
        transport, recorder, client = await connect_tcp(tcp_worker, peer)
        transport.on_target_change = lambda: changes.append("changed")
        assert transport.selected_protocol == "tcp"
        assert transport.selected_address == peer.addr
        assert isinstance(transport.rtp_target, TcpSendTarget)
        srtp = client.srtp()
        await peer.send(srtp.protect_rtp(RTP))
        await peer.send(srtp.protect_rtcp(RTCP))
        await until(lambda: bool(recorder.rtp and recorder.rtcp))
        assert recorder.rtp == [RTP] and recorder.rtcp == [RTCP]
        transport.send_rtp(bytearray(RTP))
        transport.send_rtcp(RTCP)
        first, second = await peer.recv(), await peer.recv()
        assert first is not None and second is not None
        assert srtp.unprotect_rtp(first) == RTP
        assert srtp.unprotect_rtcp(second) == RTCP
        assert transport.tx_packets == 2 and transport.rx_packets == 2
        # Consent checks keep arriving over the connection.
        response = await peer.check(transport.local_ice, use_candidate=False)
        assert response is not None and response.message_class == stun.Class.RESPONSE
        assert tcp_worker.tcp is not None and tcp_worker.tcp.connections == 1
        transport.close()
        assert await peer.closed_by_server()
        await until(lambda: tcp_worker.tcp is not None and tcp_worker.tcp.connections == 0)
        assert changes == []
    finally:
        peer.close()


async def test_path_change_rebuilds_forwarders(tcp_worker: MediaWorker) -> None:
    """A consumer created before ICE (bound to the UDP target, compiled when built) sends over
    TCP once the TCP pair is selected, with its numbering carried over."""
    publisher = tcp_worker.create_transport(Recorder())
    subscriber = tcp_worker.create_transport(Recorder())
    router = Router()
    producer = router.create_producer(
        producer_id="p", sink=publisher, kind="audio", codecs={111: CodecInfo("opus", 48000)},
        ssrc=0x1111, rtx_ssrc=None, rtx_payload_types={},
    )  # fmt: skip
    consumer = router.create_consumer(
        producer, consumer_id="c", sink=subscriber, ssrc=0x2222, rtx_ssrc=None,
        payload_types={111: 111}, rtx_payload_types={}, ext_id_map={}, cname="x",
    )  # fmt: skip
    consumer.start()
    before = consumer.core
    subscriber.on_target_change = consumer.retarget
    peer = await TcpPeer.open(tcp_worker)
    try:
        response = await peer.check(subscriber.local_ice)
        assert response is not None and response.message_class == stun.Class.RESPONSE
        assert consumer.core is not before
        assert consumer.core.last_out_seq == before.last_out_seq
        assert consumer.core.ts_offset == before.ts_offset
        client = DtlsClient()
        subscriber.set_remote(REMOTE, client.fingerprints)
        await peer.handshake(client)
        await until(lambda: subscriber.state is ConnectionState.CONNECTED)
        srtp = client.srtp()
        packet = bytes.fromhex("80 6f 00 07 00 00 00 10 00 00 11 11") + b"\x01" * 40
        producer.receive_rtp(packet)
        data = await peer.recv()
        assert data is not None
        plain = srtp.unprotect_rtp(data)
        assert plain[8:12] == (0x2222).to_bytes(4, "big") and plain[12:] == packet[12:]
        assert consumer.packets_sent == 1 and subscriber.tx_packets == 1
    finally:
        peer.close()


async def test_garbage_first_frame_closes(tcp_worker: MediaWorker) -> None:
    server = tcp_worker.tcp
    assert server is not None
    for junk in (frame(b"\x16\xfe\xfd" + bytes(40)), frame(bytes(30)), frame(b"\x80" * 50)):
        peer = await TcpPeer.open(tcp_worker)
        try:
            await peer.send_raw(junk)
            assert await peer.closed_by_server()
        finally:
            peer.close()
    assert server.refused >= 3
    peer = await TcpPeer.open(tcp_worker)
    try:
        assert await peer.check(IceParameters("nobody", "x" * 24)) is None
        assert await peer.closed_by_server()
        assert server.last_refusal == "STUN USERNAME names no live session: 'nobody'"
    finally:
        peer.close()
    await until(lambda: server.connections == 0)


async def test_oversized_first_frame_closes_at_once(tcp_worker: MediaWorker) -> None:
    peer = await TcpPeer.open(tcp_worker)
    try:
        await peer.send_raw(b"\xff\xff")  # a 65535-byte frame announced, nothing behind it
        assert await peer.closed_by_server(wait=0.3)
    finally:
        peer.close()


async def test_silent_and_half_frame_connections_time_out(tcp_worker: MediaWorker) -> None:
    server = tcp_worker.tcp
    assert server is not None
    silent = await TcpPeer.open(tcp_worker)
    half = await TcpPeer.open(tcp_worker)
    try:
        await half.send_raw(b"\x00\x50\x00\x01")  # 80 bytes announced, 2 sent
        await until(lambda: server.connections == 2)
        assert not await silent.closed_by_server(wait=0.2)
        assert await silent.closed_by_server(wait=1.0)
        assert await half.closed_by_server(wait=1.0)
        assert server.timed_out == 2
        await until(lambda: server.connections == 0)
    finally:
        silent.close()
        half.close()


async def test_bad_frame_after_authentication_is_dropped(tcp_worker: MediaWorker) -> None:
    peer = await TcpPeer.open(tcp_worker)
    try:
        transport, recorder, client = await connect_tcp(tcp_worker, peer)
        await peer.send(b"\xff" * 20)  # no RFC 7983 range
        await peer.send(b"\x80\x6f" + bytes(40))  # SRTP-looking, not authentic
        await until(lambda: transport.srtp_errors == 1)
        srtp = client.srtp()
        await peer.send(srtp.protect_rtp(RTP))
        await until(lambda: recorder.rtp == [RTP])
        await peer.send_raw(b"\xff\xff" + bytes(100))  # a long frame, cut short: waits
        assert not await peer.closed_by_server(wait=0.2)
        assert transport.state is ConnectionState.CONNECTED
    finally:
        peer.close()


async def test_cap_evicts_unauthenticated_first(tcp_worker: MediaWorker) -> None:
    server = tcp_worker.tcp
    assert server is not None
    peer = await TcpPeer.open(tcp_worker)
    idle: list[TcpPeer] = []
    try:
        transport, _, _ = await connect_tcp(tcp_worker, peer)
        for _ in range(3 * server.max_connections):
            idle.append(await TcpPeer.open(tcp_worker))
        await until(lambda: server.accepted == 1 + len(idle))
        assert server.connections == server.max_connections
        assert server.evicted == len(idle) - (server.max_connections - 1)
        assert transport.state is ConnectionState.CONNECTED
        response = await peer.check(transport.local_ice, use_candidate=False)
        assert response is not None and response.message_class == stun.Class.RESPONSE
    finally:
        peer.close()
        for other in idle:
            other.close()
    await until(lambda: server.connections == 0, within=3.0)


async def test_one_connection_per_session(tcp_worker: MediaWorker) -> None:
    server = tcp_worker.tcp
    assert server is not None
    first = await TcpPeer.open(tcp_worker)
    second = await TcpPeer.open(tcp_worker)
    try:
        transport, _, _ = await connect_tcp(tcp_worker, first)
        # Without a nomination, a second connection does not take over the selected one.
        assert await second.check(transport.local_ice, use_candidate=False) is None
        assert await second.closed_by_server()
        third = await TcpPeer.open(tcp_worker)
        try:
            response = await third.check(transport.local_ice)
            assert response is not None and response.message_class == stun.Class.RESPONSE
            assert await first.closed_by_server()
            assert transport.selected_address == third.addr
            await until(lambda: server.connections == 1)
        finally:
            third.close()
    finally:
        first.close()
        second.close()


async def test_fds_are_freed(tcp_worker: MediaWorker) -> None:
    before = len(os.listdir("/proc/self/fd"))
    peers = [await TcpPeer.open(tcp_worker) for _ in range(20)]
    rng = random.Random(7)
    for peer in peers:
        await peer.send_raw(rng.randbytes(rng.randrange(1, 60)))
    for peer in peers:
        peer.close()
    assert tcp_worker.tcp is not None
    server = tcp_worker.tcp
    await until(lambda: server.connections == 0, within=3.0)
    await asyncio.sleep(0.1)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_stun_dtls_srtp_over_tcp_on_uvloop() -> None:
    """The server runs uvloop, whose TCP transport is not an ``asyncio.Transport`` subclass."""

    async def main() -> None:
        media = MediaWorker(host="127.0.0.1", port=0, ice_tcp=True, tcp_port=0)
        await media.start()
        try:
            peer = await TcpPeer.open(media)
            try:
                transport, recorder, client = await connect_tcp(media, peer)
                srtp = client.srtp()
                await peer.send(srtp.protect_rtp(RTP))
                await until(lambda: recorder.rtp == [RTP])
                transport.send_rtp(RTP)
                data = await peer.recv()
                assert data is not None and srtp.unprotect_rtp(data) == RTP
            finally:
                peer.close()
        finally:
            await media.close()

    uvloop.run(main())


async def test_slow_reader_is_dropped_not_waited_on(
    tcp_worker: MediaWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tcp_worker.tcp
    assert server is not None
    server.send_buffer = 16 * 1024
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    peer = TcpPeer(reader, writer)
    try:
        transport, _, _ = await connect_tcp(tcp_worker, peer)
        target = transport.rtp_target
        assert isinstance(target, TcpSendTarget) and target.connection is not None
        conn = target.connection
        packet = RTP[:12] + bytes(1100)
        sent = 0
        while conn.tx_dropped == 0 and sent < 100_000:  # the peer reads nothing from now on
            transport.send_rtp(packet)
            sent += 1
        assert conn.tx_dropped == 1 and not conn.closed
        assert conn.transport is not None
        assert conn.transport.get_write_buffer_size() <= server.send_buffer + 2 * len(packet)
        for _ in range(100):
            transport.send_rtp(packet)  # dropped at once: nothing is queued, nothing awaited
        assert conn.tx_dropped == 101 and target.send_errors == 101
        monkeypatch.setattr(tcp_module, "SLOW_READER_TIMEOUT", 0.2)
        await asyncio.sleep(0.3)
        transport.send_rtp(packet)
        assert conn.closed and server.slow_readers == 1
        await until(lambda: server.connections == 0)
    finally:
        peer.close()


async def test_dual_stack_listener_answers_ipv4_clients_in_ipv4_form() -> None:
    media = MediaWorker(host="::", port=0, announce_ips=["127.0.0.1"], ice_tcp=True, tcp_port=0)
    await media.start()
    try:
        peer = await TcpPeer.open(media)
        try:
            transport, _, _ = await connect_tcp(media, peer)  # checks XOR-MAPPED-ADDRESS
            assert transport.selected_address == peer.addr
            assert peer.addr[0] == "127.0.0.1"
        finally:
            peer.close()
    finally:
        await media.close()
