"""Multi-homed hosts: every datagram leaves from the address the peer sent to (issue 16).

On loopback every 127.x.y.z address is local, so one namespace shows the failure: a client that
sends to 127.0.0.2 is answered by a socket bound to 0.0.0.0 from 127.0.0.1 (the kernel's choice
by route) unless the answer names its source. ``pktinfo.py`` parses and builds the ancillary
data (exact bytes); real sockets show the destination read and the source used; the compiled
``SendTarget`` (``sendmsg`` and the ``sendmmsg`` batch) and ``Demux.drain`` do the same; and a
``MediaWorker`` on ``0.0.0.0`` and on ``::`` (compiled and pure Python) answers the check, runs
DTLS and sends SRTP and SRTCP from 127.0.0.2 to a client that sent there. A socket bound to one
address is left alone.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from zvonok.media.fastpath import native
from zvonok.media.packets.rtp import ext_id_table
from zvonok.media.transport import pktinfo, target, udp
from zvonok.media.transport.address import socket_address
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.worker import MediaWorker

from .dtls_client import RTCP, RTP, DtlsClient
from .test_transport_udp import REMOTE, FakeClock, Peer, Recorder, until

ANNOUNCED = "127.0.0.2"  # the address the client sends to; the route's source is 127.0.0.1
IP_PKTINFO = pktinfo.IP_PKTINFO
KEY = bytes(range(AEAD_AES_128_GCM.master_length))


def v4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


# -- parsing and building ------------------------------------------------------------------------


def test_local_address_reads_ip_pktinfo_spec_dst() -> None:
    data = struct.pack("=i4s4s", 7, v4("198.18.1.1"), v4("198.18.1.1"))
    assert pktinfo.local_address([(socket.IPPROTO_IP, IP_PKTINFO, data)]) == "198.18.1.1"


def test_local_address_reads_ipv6_pktinfo_mapped_and_native() -> None:
    mapped = struct.pack("=16sI", v6("::ffff:198.18.1.1"), 3)
    native6 = struct.pack("=16sI", v6("2001:db8::1"), 3)
    ipv6 = socket.IPPROTO_IPV6
    assert pktinfo.local_address([(ipv6, socket.IPV6_PKTINFO, mapped)]) == "::ffff:198.18.1.1"
    assert pktinfo.local_address([(ipv6, socket.IPV6_PKTINFO, native6)]) == "2001:db8::1"


def test_local_address_ignores_what_is_not_a_usable_destination() -> None:
    multicast = struct.pack("=16sI", v6("ff02::1"), 3)
    assert pktinfo.local_address([(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, multicast)]) is None
    assert pktinfo.local_address([(socket.IPPROTO_IP, IP_PKTINFO, b"\x00" * 8)]) is None
    assert pktinfo.local_address([(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, b"\x00")]) is None
    assert pktinfo.local_address([]) is None
    other = (socket.SOL_SOCKET, 29, b"\x00" * 16)  # SO_TIMESTAMP, not ours
    good = (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 1, v4("10.0.0.1"), bytes(4)))
    assert pktinfo.local_address([other, good]) == "10.0.0.1"


def test_source_ancillary_bytes() -> None:
    inet, inet6 = socket.AF_INET, socket.AF_INET6
    assert pktinfo.source_ancillary("198.18.1.1", inet) == [
        (socket.IPPROTO_IP, IP_PKTINFO, bytes(4) + v4("198.18.1.1") + bytes(4))
    ]
    assert pktinfo.source_ancillary("::ffff:198.18.1.1", inet) == [
        (socket.IPPROTO_IP, IP_PKTINFO, bytes(4) + v4("198.18.1.1") + bytes(4))
    ]
    mapped = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, v6("::ffff:198.18.1.1") + bytes(4))]
    assert pktinfo.source_ancillary("198.18.1.1", inet6) == mapped
    assert pktinfo.source_ancillary("::ffff:198.18.1.1", inet6) == mapped
    assert pktinfo.source_ancillary("2001:db8::1", inet6) == [
        (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, v6("2001:db8::1") + bytes(4))
    ]
    with pytest.raises(ValueError, match="is IPv6 but the socket is IPv4"):
        pktinfo.source_ancillary("2001:db8::1", inet)
    with pytest.raises(ValueError, match="is not an IP address"):
        pktinfo.source_ancillary("example.org", inet)


@pytest.mark.parametrize(
    ("family", "host", "expected"),
    [
        (socket.AF_INET, "0.0.0.0", True),
        (socket.AF_INET6, "::", True),
        (socket.AF_INET, "127.0.0.1", False),
        (socket.AF_INET6, "::1", False),
    ],
)
def test_enable_only_on_a_wildcard_socket(family: int, host: str, expected: bool) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        assert pktinfo.enable(sock) is expected


# -- real sockets --------------------------------------------------------------------------------


@pytest.fixture(params=["0.0.0.0", "::"])
def wildcard(request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    host: str = request.param
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, 0))
    sock.settimeout(2)
    assert pktinfo.enable(sock)
    yield sock
    sock.close()


@pytest.fixture
def client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def test_the_answer_leaves_from_the_address_the_client_sent_to(
    wildcard: socket.socket, client: socket.socket
) -> None:
    port = wildcard.getsockname()[1]
    client.sendto(b"check", (ANNOUNCED, port))
    data, ancdata, _flags, addr = wildcard.recvmsg(2048, pktinfo.ANCILLARY_SPACE)
    local = pktinfo.local_address(ancdata)
    assert data == b"check"
    assert local == (ANNOUNCED if wildcard.family == socket.AF_INET else "::ffff:" + ANNOUNCED)
    # Without a source the kernel picks one by route: the client would discard this answer.
    wildcard.sendto(b"by route", addr)
    assert client.recvfrom(2048) == (b"by route", ("127.0.0.1", port))
    wildcard.sendmsg([b"answer"], pktinfo.source_ancillary(local, wildcard.family), 0, addr)
    assert client.recvfrom(2048) == (b"answer", (ANNOUNCED, port))


# -- the compiled path ---------------------------------------------------------------------------

needs_native = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")


def keyed_target(sock: socket.socket, fallback: list[Any]) -> Any:
    assert native is not None
    srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    t = native.SendTarget(sock.fileno(), lambda d, a: fallback.append((d, a)))
    t.set_srtp(*srtp.tx_handle(), srtp)
    t.enabled = True
    return t


def peer_of(sock: socket.socket, client: socket.socket) -> tuple[Any, ...]:
    host, port = client.getsockname()
    return ("::ffff:" + host, port, 0, 0) if sock.family == socket.AF_INET6 else (host, port)


@needs_native
def test_compiled_target_sends_from_its_source(
    wildcard: socket.socket, client: socket.socket
) -> None:
    port = wildcard.getsockname()[1]
    fallback: list[Any] = []
    t = keyed_target(wildcard, fallback)
    t.set_address(peer_of(wildcard, client), ANNOUNCED)
    assert t.source == ANNOUNCED and t.ready
    t.send(RTP)  # one sendmsg
    assert native is not None
    forwarder = native.Forwarder(
        target=t, ssrc=0xCAFE, payload_types={111: 111}, ext_table=ext_id_table({}), video=False,
        ts_offset=0, last_out_seq=0,
    )  # fmt: skip
    fanout = native.Fanout()
    fanout.set([forwarder])
    fanout.forward(bytes.fromhex("80 6f 00 02 00 00 03 c0 11 22 33 44") + b"\x05" * 50, False)
    sources = [client.recvfrom(2048)[1] for _ in range(2)]  # sendmsg, then the sendmmsg batch
    assert sources == [(ANNOUNCED, port)] * 2
    assert t.tx_packets == 2 and t.send_errors == 0 and not fallback
    t.set_address(peer_of(wildcard, client))  # no source: the kernel's choice again
    assert t.source is None
    t.send(RTP)
    assert client.recvfrom(2048)[1] == ("127.0.0.1", port)


@needs_native
def test_compiled_target_refuses_a_source_it_cannot_use(client: socket.socket) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        t = keyed_target(sock, [])
        with pytest.raises(ValueError, match="not a numeric IP address: example.org"):
            t.set_address(("127.0.0.1", 9), "example.org")
        with pytest.raises(ValueError, match="source 2001:db8::1 is IPv6 but the peer is IPv4"):
            t.set_address(("127.0.0.1", 9), "2001:db8::1")
        with pytest.raises(TypeError, match="source must be a str or None"):
            t.set_address(("127.0.0.1", 9), 5)
        assert t.address is None and t.source is None  # nothing half-set
        t.set_address(("127.0.0.1", 9), "::ffff:127.0.0.2")  # a mapped source, unwrapped
        t.set_address(None, ANNOUNCED)
        assert not t.ready


@needs_native
def test_drain_hands_stun_its_destination(wildcard: socket.socket, client: socket.socket) -> None:
    assert native is not None
    calls: list[tuple[Any, ...]] = []
    demux = native.Demux({}, lambda *args: calls.append(args), wildcard.fileno())
    demux.pktinfo = True
    wildcard.setblocking(False)
    port = wildcard.getsockname()[1]
    client.sendto(b"\x00\x01stun", (ANNOUNCED, port))
    client.sendto(b"\x16dtls", ("127.0.0.1", port))
    client.sendto(b"\x00\x01stun", ("127.0.0.1", port))

    async def drained() -> None:
        await until(lambda: demux.drain(4) >= 0 and len(calls) == 3)

    asyncio.run(drained())
    mapped = "" if wildcard.family == socket.AF_INET else "::ffff:"
    peer = peer_of(wildcard, client)
    assert calls == [
        (b"\x00\x01stun", peer, mapped + ANNOUNCED),
        (b"\x16dtls", peer),  # only a check needs to know where it arrived
        (b"\x00\x01stun", peer, mapped + "127.0.0.1"),
    ]


# -- the worker, end to end ----------------------------------------------------------------------


class HomedPeer(Peer):
    """A client on 127.0.0.1 that sends to another local address and records every source."""

    def __init__(self, server: tuple[str, int]) -> None:
        super().__init__(server)
        self.sources: list[tuple[str, int]] = []

    async def recv(self, wait: float = 2.0) -> bytes | None:
        try:
            data, src = await asyncio.wait_for(self.loop.sock_recvfrom(self.sock, 4096), wait)
        except TimeoutError:
            return None
        self.sources.append((src[0], src[1]))
        return data


@pytest.fixture(params=["compiled", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(udp, "native", None)
        monkeypatch.setattr(target, "native", None)
    elif native is None:
        pytest.skip("the compiled fast path is not built")
    return str(request.param)


@pytest.fixture(params=["0.0.0.0", "::"])
async def homed_worker(request: pytest.FixtureRequest, path: str) -> AsyncIterator[MediaWorker]:
    media = MediaWorker(host=request.param, port=0, clock=FakeClock())
    await media.start()
    yield media
    await media.close()


async def test_worker_on_a_wildcard_answers_from_the_address_sent_to(
    homed_worker: MediaWorker, path: str
) -> None:
    worker = homed_worker
    assert worker.udp.pktinfo
    assert (worker.udp.demux is not None) is (path == "compiled")
    peer = HomedPeer((ANNOUNCED, worker.port))
    try:
        recorder = Recorder()
        transport = worker.create_transport(recorder)
        response = await peer.check(transport.local_ice)
        assert response is not None, "no answer from the address the check went to"
        client = DtlsClient()
        transport.set_remote(REMOTE, client.fingerprints)
        await peer.handshake(client)
        await until(lambda: transport.rtp_target.ready)
        srtp = client.srtp()
        await peer.send(srtp.protect_rtp(RTP))
        await until(lambda: bool(recorder.rtp))
        transport.send_rtp(bytearray(RTP))
        transport.send_rtcp(RTCP)
        first, second = await peer.recv(), await peer.recv()
        assert first is not None and srtp.unprotect_rtp(first) == RTP
        assert second is not None and srtp.unprotect_rtcp(second) == RTCP
        assert len(peer.sources) >= 4  # the check's answer, DTLS, SRTP, SRTCP
        assert set(peer.sources) == {(ANNOUNCED, worker.port)}, peer.sources
        selected = transport.selected_address
        assert selected is not None
        key = socket_address(selected, worker.udp.family)
        assert transport.rtp_target.source == worker.udp.source_of(key) is not None
    finally:
        peer.close()


async def test_each_check_is_answered_from_its_own_destination(
    homed_worker: MediaWorker,
) -> None:
    """A check to another local address (a second candidate of the server) is answered from
    there; the nominated pair's source stays until a check to the other one nominates it."""
    worker = homed_worker
    peer = HomedPeer((ANNOUNCED, worker.port))
    try:
        transport = worker.create_transport(Recorder())
        assert await peer.check(transport.local_ice) is not None
        peer.server = ("127.0.0.3", worker.port)
        assert await peer.check(transport.local_ice, use_candidate=False) is not None
        addr = transport.selected_address
        assert addr is not None
        assert peer.sources == [(ANNOUNCED, worker.port), ("127.0.0.3", worker.port)]
        mapped = "::ffff:" if worker.udp.family == socket.AF_INET6 else ""
        key = socket_address(addr, worker.udp.family)
        assert worker.udp.source_of(key) == mapped + ANNOUNCED
        assert await peer.check(transport.local_ice) is not None  # nominates 127.0.0.3
        assert worker.udp.source_of(key) == mapped + "127.0.0.3"
        assert transport.rtp_target.source == mapped + "127.0.0.3"
    finally:
        peer.close()


async def test_a_worker_bound_to_one_address_reads_no_destinations() -> None:
    worker = MediaWorker(host="127.0.0.1", port=0, clock=FakeClock())
    await worker.start()
    try:
        assert not worker.udp.pktinfo
        assert worker.udp.source_of(("127.0.0.1", 9)) is None
    finally:
        await worker.close()
