"""The compiled ``Demux``'s peer table (socket address -> compiled receiver) never outlives
``MediaUdpProtocol._by_addr``, the table it remembers answers from.

Real loopback sockets and real SRTP: a drain hands each peer's datagrams to the receiver its
address is bound to *now*: after a rebind to another endpoint, an eviction, an ``unregister`` or
a transport's ``close``, the next datagram goes where ``_by_addr`` says (or is dropped), never to
a receiver remembered from before; and hundreds of peers each reach their own receiver through
the table.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any

import pytest

from zvonok.media.fastpath import native
from zvonok.media.transport.dtls import DtlsCertificate
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.transport import ConnectionState, WebRtcTransport
from zvonok.media.transport.udp import MAX_ADDRESSES_PER_ENDPOINT, MediaUdpProtocol

from .test_fastpath_recv import udp_socket
from .test_transport_udp import until

pytestmark = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")

KEY = bytes(range(AEAD_AES_128_GCM.master_length))


class _Endpoint:
    """A transport as the socket sees it: a compiled receiver as ``media_in``."""

    def __init__(self) -> None:
        assert native is not None
        self.rtp: list[bytes] = []
        self.media_in = native.Receiver(lambda d: None, self.rtp.append)
        self.session = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
        self.media_in.set_srtp(*self.session.rx_handle(), self.session)

    def handle_media(self, data: bytes, addr: Any) -> None:
        self.media_in.receive(data)

    def handle_dtls(self, data: bytes, addr: Any) -> None:
        pass

    def handle_stun(self, request: Any, addr: Any) -> bool:
        return False


class Peer:
    """One sender with its own SRTP stream (SSRC ``ssrc``, sequence numbers from 1)."""

    def __init__(self, ssrc: int, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = udp_socket(family, host)
        self.ssrc = ssrc
        self.seq = 0
        self.srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)

    @property
    def addr(self) -> Any:
        return self.sock.getsockname()

    def send(self, to: Any) -> bytes:
        """Send the next packet; its plaintext."""
        self.seq += 1
        rtp = struct.pack("!BBHII", 0x80, 111, self.seq, self.seq * 960, self.ssrc) + bytes(30)
        self.sock.sendto(self.srtp.protect_rtp(rtp), to)
        return rtp


def _drain(protocol: MediaUdpProtocol, expected: int) -> None:
    read = 0
    deadline = time.monotonic() + 2.0
    while read < expected and time.monotonic() < deadline:
        read += protocol.demux.drain(4)
    assert read == expected


class Rig:
    def __init__(self) -> None:
        self.sock = udp_socket()
        self.protocol = MediaUdpProtocol()
        self.protocol.demux.fd = self.sock.fileno()
        self.to = self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def rig() -> Any:
    r = Rig()
    yield r
    r.close()


def test_a_rebound_address_reaches_its_new_receiver_at_once(rig: Rig) -> None:
    old, new = _Endpoint(), _Endpoint()
    peer = Peer(0x1111)
    try:
        rig.protocol.bind_address(peer.addr, old)
        first = [peer.send(rig.to), peer.send(rig.to)]
        _drain(rig.protocol, 2)
        assert old.rtp == first
        assert rig.protocol.demux.peers == 1 and rig.protocol.demux.peer_hits >= 1
        rig.protocol.bind_address(peer.addr, new)  # the peer's address now belongs to ``new``
        second = [peer.send(rig.to), peer.send(rig.to)]
        _drain(rig.protocol, 2)
        assert old.rtp == first and new.rtp == second
    finally:
        peer.sock.close()


def test_an_unbound_or_evicted_address_stops_reaching_its_old_receiver(rig: Rig) -> None:
    endpoint = _Endpoint()
    peers = [Peer(0x2000 + i) for i in range(MAX_ADDRESSES_PER_ENDPOINT + 1)]
    try:
        for peer in peers[:-1]:
            rig.protocol.bind_address(peer.addr, endpoint)
        for peer in peers[:-1]:
            peer.send(rig.to)
        _drain(rig.protocol, len(peers) - 1)
        assert len(endpoint.rtp) == len(peers) - 1
        assert rig.protocol.demux.peers == len(peers) - 1
        rig.protocol.bind_address(peers[-1].addr, endpoint)  # one too many: the oldest goes
        peers[0].send(rig.to)
        peers[1].send(rig.to)
        _drain(rig.protocol, 2)
        assert len(endpoint.rtp) == len(peers) and rig.protocol.dropped == 1
        rig.protocol.unregister(endpoint, [])  # every address forgotten
        for peer in peers:
            peer.send(rig.to)
        _drain(rig.protocol, len(peers))
        assert len(endpoint.rtp) == len(peers) and rig.protocol.dropped == 1 + len(peers)
        assert endpoint.media_in.rx_packets == len(peers)
        assert rig.protocol.demux.peers == 0
    finally:
        for peer in peers:
            peer.sock.close()


def test_hundreds_of_peers_each_reach_their_own_receiver(rig: Rig) -> None:
    count = 300
    endpoints = [_Endpoint() for _ in range(count)]
    peers = [Peer(0x10000 + i) for i in range(count)]
    try:
        for peer, endpoint in zip(peers, endpoints, strict=True):
            rig.protocol.bind_address(peer.addr, endpoint)
        sent: list[list[bytes]] = [[] for _ in range(count)]
        for _ in range(3):
            for i, peer in enumerate(peers):
                sent[i].append(peer.send(rig.to))
            _drain(rig.protocol, count)  # a round at a time: within the socket's buffer
        assert [e.rtp for e in endpoints] == sent
        assert rig.protocol.demux.peers == count
        assert rig.protocol.demux.peer_hits == 2 * count  # the first of each filled the table
    finally:
        for peer in peers:
            peer.sock.close()


def test_ipv6_peers_are_told_apart_by_their_whole_address() -> None:
    try:
        sock = udp_socket(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    protocol = MediaUdpProtocol()
    protocol.demux.fd = sock.fileno()
    peers = [Peer(0x3000 + i, socket.AF_INET6, "::1") for i in range(3)]
    endpoints = [_Endpoint() for _ in peers]
    try:
        for peer, endpoint in zip(peers[:2], endpoints[:2], strict=True):
            protocol.bind_address(peer.addr, endpoint)
        sent: list[list[bytes]] = [[], [], []]
        for _ in range(2):
            for i, peer in enumerate(peers):
                sent[i].append(peer.send(sock.getsockname()))
        _drain(protocol, 6)
        assert [e.rtp for e in endpoints] == [sent[0], sent[1], []]
        assert protocol.dropped == 2 and protocol.demux.peers == 2
        assert protocol.demux.peer_hits == 2
    finally:
        sock.close()
        for peer in peers:
            peer.sock.close()


class _Listener:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []

    def on_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def on_rtcp(self, packet: bytes) -> None:
        pass

    def on_state(self, state: ConnectionState) -> None:
        pass


async def test_a_closed_transport_gets_nothing() -> None:
    loop = asyncio.get_running_loop()
    protocol = MediaUdpProtocol()
    sock = udp_socket()
    await protocol.open(sock)
    peer = Peer(0x4444)
    listener = _Listener()
    t = WebRtcTransport(
        transport_id="t", listener=listener, udp=protocol,
        dtls_context=DtlsCertificate.generate().make_context(), fingerprint=("sha-256", ""),
        candidates=list, loop=loop, clock=time.monotonic, consent_timeout=30.0,
        dtls_timeout=10.0, on_closed=lambda _t: None,
    )  # fmt: skip
    try:
        t._set_state(ConnectionState.CONNECTING)
        t.dtls_connected(SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY))
        protocol.bind_address(peer.addr, t)
        sent = [peer.send(sock.getsockname()) for _ in range(3)]
        await until(lambda: len(listener.rtp) >= 3)
        assert listener.rtp == sent and protocol.demux.peer_hits >= 1
        receiver = t.media_in
        t.close()
        for _ in range(3):
            peer.send(sock.getsockname())
        await until(lambda: protocol.dropped >= 3)
        assert protocol.dropped == 3  # no longer bound: not even handed to its receiver
        assert listener.rtp == sent
        assert (receiver.rx_packets, receiver.rx_dropped) == (3, 0)
    finally:
        t.close()
        await protocol.close()
        peer.sock.close()
