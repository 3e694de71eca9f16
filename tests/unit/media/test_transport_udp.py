"""End to end on loopback UDP: a MediaWorker and a client socket doing STUN, DTLS and SRTP."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable
from unittest import mock

import aioice
import pytest
from aioice import stun

from zvonok.media.transport.ice import IceParameters
from zvonok.media.transport.srtp import SrtpSession
from zvonok.media.transport.transport import ConnectionState, WebRtcTransport
from zvonok.media.transport.udp import MAX_ADDRESSES_PER_ENDPOINT
from zvonok.media.worker import (
    TRANSPORT_SWEEP_INTERVAL,
    MediaWorker,
    host_candidates,
    local_ipv4_addresses,
)

from .dtls_client import RTCP, RTP, DtlsClient

REMOTE = IceParameters("peer", "peerpasswordpeerpassword")


def state(transport: WebRtcTransport) -> ConnectionState:
    """The current state (a call, so that mypy does not keep an earlier narrowing)."""
    return transport.state


class Recorder:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.states: list[ConnectionState] = []

    def on_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def on_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def on_state(self, state: ConnectionState) -> None:
        self.states.append(state)


class Peer:
    """A client UDP socket on loopback."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.addr: tuple[str, int] = self.sock.getsockname()
        self.loop = asyncio.get_running_loop()

    def close(self) -> None:
        self.sock.close()

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendto(self.sock, data, self.server)

    async def recv(self, wait: float = 2.0) -> bytes | None:
        try:
            data, _ = await asyncio.wait_for(self.loop.sock_recvfrom(self.sock, 4096), wait)
        except TimeoutError:
            return None
        return data

    async def check(
        self,
        local: IceParameters,
        *,
        use_candidate: bool = True,
        attrs: dict[str, object] | None = None,
    ) -> stun.Message | None:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{local.ufrag}:{REMOTE.ufrag}"
        request.attributes["PRIORITY"] = 1853824767
        request.attributes["ICE-CONTROLLING"] = 42
        if use_candidate:
            request.attributes["USE-CANDIDATE"] = None
        request.attributes.update(attrs or {})
        request.add_message_integrity(local.pwd.encode())
        await self.send(bytes(request))
        data = await self.recv(wait=0.5)
        return None if data is None else stun.parse_message(data)

    async def handshake(self, client: DtlsClient) -> None:
        outgoing = client.step([])
        for _ in range(10):
            for datagram in outgoing:
                await self.send(datagram)
            if client.done:
                return
            reply = await self.recv()
            outgoing = client.step([reply] if reply else [])
        raise AssertionError("DTLS handshake did not finish")


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def worker(clock: FakeClock) -> AsyncIterator[MediaWorker]:
    media = MediaWorker(host="127.0.0.1", port=0, clock=clock)
    await media.start()
    yield media
    await media.close()


@pytest.fixture
async def peer(worker: MediaWorker) -> AsyncIterator[Peer]:
    client = Peer(("127.0.0.1", worker.port))
    yield client
    client.close()


def assert_success(
    response: stun.Message | None, addr: tuple[str, int], local: IceParameters
) -> None:
    """``response`` is a binding success for ``addr`` signed with ``local``'s password."""
    assert response is not None, "no answer to the check"
    assert response.message_method == stun.Method.BINDING
    assert response.message_class == stun.Class.RESPONSE, response
    assert response.attributes["XOR-MAPPED-ADDRESS"] == addr
    assert response.check_message_integrity(local.pwd.encode())


async def connect(
    worker: MediaWorker, peer: Peer, profiles: bytes | None = None
) -> tuple[WebRtcTransport, Recorder, DtlsClient, SrtpSession]:
    recorder = Recorder()
    transport = worker.create_transport(recorder)
    response = await peer.check(transport.local_ice)
    assert response is not None and response.message_class == stun.Class.RESPONSE
    client = DtlsClient(profiles=profiles)
    transport.set_remote(REMOTE, client.fingerprints)
    await peer.handshake(client)
    await until(lambda: transport.state is ConnectionState.CONNECTED)
    return transport, recorder, client, client.srtp()


async def test_binding_response(worker: MediaWorker, peer: Peer) -> None:
    transport = worker.create_transport(Recorder())
    response = await peer.check(transport.local_ice)
    assert response is not None
    assert response.attributes["XOR-MAPPED-ADDRESS"] == peer.addr
    assert response.check_message_integrity(transport.local_ice.pwd.encode())
    assert state(transport) is ConnectionState.CONNECTING
    assert transport.selected_address == peer.addr and transport.stun_requests == 1


@pytest.mark.parametrize("profiles", [None, b"SRTP_AES128_CM_SHA1_80"])
async def test_connect_and_media_both_ways(
    worker: MediaWorker, peer: Peer, profiles: bytes | None
) -> None:
    transport, recorder, _, srtp = await connect(worker, peer, profiles)
    assert recorder.states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
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
    assert transport.rx_packets == 2 and transport.tx_packets == 2
    assert transport.rx_bytes > 0 and transport.tx_bytes > 0 and transport.srtp_errors == 0


async def test_send_before_connected_is_dropped(worker: MediaWorker, peer: Peer) -> None:
    transport = worker.create_transport(Recorder())
    transport.send_rtp(RTP)
    await peer.check(transport.local_ice)
    transport.send_rtp(RTP)
    assert transport.tx_packets == 0
    assert await peer.recv(wait=0.2) is None


async def test_unknown_address_without_stun_is_dropped(worker: MediaWorker, peer: Peer) -> None:
    transport, recorder, client, srtp = await connect(worker, peer)
    stranger = Peer(peer.server)
    try:
        dropped = worker.udp.dropped
        await stranger.send(srtp.protect_rtp(RTP))
        await stranger.send(b"\x16\xfe\xfd" + bytes(30))
        await until(lambda: worker.udp.dropped == dropped + 2)
        assert recorder.rtp == []
    finally:
        stranger.close()


async def test_bad_credentials_refused(worker: MediaWorker, peer: Peer) -> None:
    transport = worker.create_transport(Recorder())
    wrong_pwd = IceParameters(transport.local_ice.ufrag, "x" * 24)
    assert await peer.check(wrong_pwd) is None
    assert worker.udp.last_refusal == "STUN MESSAGE-INTEGRITY does not verify"
    assert await peer.check(IceParameters("nobody", "x" * 24)) is None
    assert worker.udp.last_refusal == "STUN USERNAME names no live session: 'nobody'"
    assert worker.udp.stun_refused == 2
    assert state(transport) is ConnectionState.NEW
    assert worker.udp.endpoint_for(peer.addr) is None


async def test_role_conflict(worker: MediaWorker, peer: Peer) -> None:
    transport = worker.create_transport(Recorder())
    response = await peer.check(transport.local_ice, attrs={"ICE-CONTROLLED": 7})
    assert response is not None and response.error_code == 487
    assert state(transport) is ConnectionState.NEW


async def test_random_bytes_never_crash(worker: MediaWorker, peer: Peer) -> None:
    transport, recorder, _, srtp = await connect(worker, peer)
    stranger = Peer(peer.server)
    rng = random.Random(7983)
    try:
        for _ in range(300):
            size = rng.randint(0, 300)
            data = bytes(rng.getrandbits(8) for _ in range(size))
            await (peer if rng.random() < 0.5 else stranger).send(data)
        await peer.send(srtp.protect_rtp(RTP))
        await until(lambda: recorder.rtp == [RTP])
    finally:
        stranger.close()
    assert state(transport) is ConnectionState.CONNECTED


async def test_ice_restart_migrates_address(worker: MediaWorker, peer: Peer) -> None:
    transport, recorder, _, srtp = await connect(worker, peer)
    old = transport.local_ice
    new = transport.restart_ice()
    assert new != old and transport.local_ice == new
    # still valid until the peer uses the new ones
    assert_success(await peer.check(old), peer.addr, old)
    moved = Peer(peer.server)
    try:
        response = await moved.check(new)
        assert response is not None and response.attributes["XOR-MAPPED-ADDRESS"] == moved.addr
        assert transport.selected_address == moved.addr
        transport.send_rtp(RTP)
        data = await moved.recv()
        assert data is not None and srtp.unprotect_rtp(data) == RTP
        await moved.send(srtp.protect_rtp(RTP))
        await until(lambda: recorder.rtp == [RTP])
        assert await peer.check(old) is None  # retired
        assert state(transport) is ConnectionState.CONNECTED
        transport.close()
        notify = await moved.recv()  # close_notify follows the migration
        assert notify is not None and notify[0] == 21
    finally:
        moved.close()


async def test_consent_freshness(worker: MediaWorker, peer: Peer, clock: FakeClock) -> None:
    transport, recorder, _, _ = await connect(worker, peer)
    clock.now += 9
    worker.tick(clock.now)
    assert state(transport) is ConnectionState.DISCONNECTED
    transport.send_rtp(RTP)
    assert transport.tx_packets == 0
    await peer.check(transport.local_ice)
    assert state(transport) is ConnectionState.CONNECTED
    clock.now += 29
    worker.tick(clock.now)
    assert state(transport) is ConnectionState.DISCONNECTED
    clock.now += 1
    worker.tick(clock.now)
    assert state(transport) is ConnectionState.FAILED
    assert recorder.states == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.DISCONNECTED,
        ConnectionState.CONNECTED,
        ConnectionState.DISCONNECTED,
        ConnectionState.FAILED,
    ]
    assert await peer.check(transport.local_ice) is None  # a failed transport answers nothing


async def test_dtls_timeout(worker: MediaWorker, peer: Peer, clock: FakeClock) -> None:
    transport = worker.create_transport(Recorder())
    await peer.check(transport.local_ice)
    clock.now += worker.dtls_timeout - 0.1
    worker.tick(clock.now)
    assert state(transport) is ConnectionState.CONNECTING
    clock.now += 0.1
    worker.tick(clock.now)  # within the same sweep interval: not evaluated again yet
    assert state(transport) is ConnectionState.CONNECTING
    clock.now += TRANSPORT_SWEEP_INTERVAL
    worker.tick(clock.now)
    assert state(transport) is ConnectionState.FAILED


async def test_fingerprint_mismatch_fails(worker: MediaWorker, peer: Peer) -> None:
    recorder = Recorder()
    transport = worker.create_transport(recorder)
    await peer.check(transport.local_ice)
    client = DtlsClient()
    transport.set_remote(REMOTE, [("sha-256", DtlsClient().cert.fingerprint())])
    await peer.handshake(client)
    await until(lambda: transport.state is ConnectionState.FAILED)
    assert recorder.states[-1] is ConnectionState.FAILED


async def test_early_client_hello_before_answer(worker: MediaWorker, peer: Peer) -> None:
    transport = worker.create_transport(Recorder())
    await peer.check(transport.local_ice)
    client = DtlsClient()
    await peer.handshake(client)
    await asyncio.sleep(0.05)
    assert state(transport) is ConnectionState.CONNECTING
    transport.set_remote(REMOTE, client.fingerprints)
    assert state(transport) is ConnectionState.CONNECTED


async def test_close_sends_close_notify(worker: MediaWorker, peer: Peer) -> None:
    transport, recorder, client, _ = await connect(worker, peer)
    transport.close()
    transport.close()
    assert (
        recorder.states[-1] is ConnectionState.CLOSED
        and recorder.states.count(ConnectionState.CLOSED) == 1
    )
    data = await peer.recv()
    assert data is not None and data[0] == 21  # an alert record: close_notify
    assert transport.id not in worker.transports and worker.transport_count() == 0
    assert await peer.check(transport.local_ice) is None
    assert worker.udp.endpoint_for(peer.addr) is None


async def test_peer_close_notify_closes(worker: MediaWorker, peer: Peer) -> None:
    transport, recorder, client, _ = await connect(worker, peer)
    client.conn.shutdown()
    for datagram in client.drain():
        await peer.send(datagram)
    await until(lambda: transport.state is ConnectionState.CLOSED)
    assert transport.id not in worker.transports


async def test_worker_close_closes_everything(clock: FakeClock) -> None:
    media = MediaWorker(host="127.0.0.1", port=0, clock=clock)
    await media.start()
    recorder = Recorder()
    media.create_transport(recorder)
    calls: list[float] = []
    unsubscribe = media.add_tick(calls.append)
    await until(lambda: len(calls) >= 1, within=2.0)
    unsubscribe()
    unsubscribe()
    count = len(calls)
    await asyncio.sleep(0.3)
    assert len(calls) == count
    await media.close()
    await media.close()
    assert recorder.states == [ConnectionState.CLOSED] and media.transports == {}
    assert media.udp.transport is None


async def test_tick_callback_errors_do_not_stop_the_tick(worker: MediaWorker) -> None:
    calls: list[float] = []

    def broken(now: float) -> None:
        raise RuntimeError("boom")

    worker.add_tick(broken)
    worker.add_tick(calls.append)
    worker.tick(1.0)
    assert calls == [1.0]


def test_candidates() -> None:
    assert host_candidates(["127.0.0.1"], 40000) == [
        "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"
    ]
    lines = host_candidates(["10.0.0.5", "127.0.0.1"], 5)
    assert lines[1] == "candidate:2 1 udp 2130706175 127.0.0.1 5 typ host"
    addresses = local_ipv4_addresses()
    assert addresses[-1].startswith("127.") and "127.0.0.1" in addresses
    assert MediaWorker(host="0.0.0.0").announced_ips == addresses
    assert MediaWorker(host="127.0.0.2").announced_ips == ["127.0.0.2"]
    assert MediaWorker(announce_ips=["127.0.0.3"]).announced_ips == ["127.0.0.3"]


async def test_transport_candidates_use_worker_port(worker: MediaWorker) -> None:
    transport = worker.create_transport(Recorder())
    assert transport.local_candidates() == [
        f"candidate:1 1 udp 2130706431 127.0.0.1 {worker.port} typ host"
    ]
    assert transport.fingerprint == ("sha-256", worker.certificate.fingerprint())


async def test_srtp_errors_are_counted(worker: MediaWorker, peer: Peer) -> None:
    transport, recorder, _, srtp = await connect(worker, peer)
    await peer.send(b"\x80\x6f" + bytes(40))  # RTP-looking, not authentic
    await peer.send(b"\x80\xc9" + bytes(40))  # RTCP-looking
    await peer.send(b"\x80")  # too short
    await until(lambda: transport.srtp_errors == 3)
    transport.send_rtp(bytes(2000))  # longer than libsrtp accepts
    transport.send_rtcp(bytes(2000))
    assert transport.srtp_errors == 5 and transport.tx_packets == 0
    assert recorder.rtp == [] and recorder.rtcp == []


async def test_media_before_dtls_is_counted(worker: MediaWorker, peer: Peer) -> None:
    transport = worker.create_transport(Recorder())
    await peer.check(transport.local_ice)
    transport.send_rtcp(RTCP)
    await peer.send(RTP)
    await until(lambda: transport.rx_dropped == 1)
    assert transport.srtp_errors == 0


async def test_empty_datagram_dropped(worker: MediaWorker, peer: Peer) -> None:
    await peer.send(b"")
    await until(lambda: worker.udp.dropped == 1)


async def test_address_moves_to_the_transport_that_authenticated_it(
    worker: MediaWorker, peer: Peer
) -> None:
    first = worker.create_transport(Recorder())
    second = worker.create_transport(Recorder())
    await peer.check(first.local_ice)
    assert worker.udp.endpoint_for(peer.addr) is first
    await peer.check(second.local_ice)
    assert worker.udp.endpoint_for(peer.addr) is second
    first.close()
    assert worker.udp.endpoint_for(peer.addr) is second


async def test_addresses_per_transport_are_bounded(worker: MediaWorker) -> None:
    transport = worker.create_transport(Recorder())
    peers = [Peer(("127.0.0.1", worker.port)) for _ in range(MAX_ADDRESSES_PER_ENDPOINT + 1)]
    try:
        for client in peers:
            local = transport.local_ice
            assert_success(await client.check(local), client.addr, local)
        assert worker.udp.endpoint_for(peers[0].addr) is None
        assert all(worker.udp.endpoint_for(client.addr) is transport for client in peers[1:])
    finally:
        for client in peers:
            client.close()


async def test_listener_errors_do_not_spread(worker: MediaWorker, peer: Peer) -> None:
    class Broken(Recorder):
        def on_state(self, state: ConnectionState) -> None:
            raise RuntimeError("listener bug")

    transport = worker.create_transport(Broken())
    assert_success(await peer.check(transport.local_ice), peer.addr, transport.local_ice)
    assert state(transport) is ConnectionState.CONNECTING


async def test_aioice_full_agent_connects(worker: MediaWorker) -> None:
    """An independent ICE implementation (aioice, controlling) completes its checks with us."""
    transport = worker.create_transport(Recorder())
    with mock.patch("aioice.ice.get_host_addresses", return_value=["127.0.0.1"]):
        agent = aioice.Connection(ice_controlling=True, components=1)
        await agent.gather_candidates()
    try:
        agent.remote_username = transport.local_ice.ufrag
        agent.remote_password = transport.local_ice.pwd
        agent.remote_is_lite = True
        for line in transport.local_candidates():
            await agent.add_remote_candidate(aioice.Candidate.from_sdp(line.split(":", 1)[1]))
        await agent.add_remote_candidate(None)
        await asyncio.wait_for(agent.connect(), 5.0)
        assert state(transport) is ConnectionState.CONNECTING
        assert transport.selected_address == ("127.0.0.1", agent.local_candidates[0].port)
    finally:
        await agent.close()
