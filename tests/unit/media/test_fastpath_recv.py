"""Batched receive (``Demux.drain``: ``recvmmsg``) against one-by-one receive.

Two real loopback sockets get the same datagrams from the same senders. The compiled side reads
its socket with ``drain`` (up to 32 datagrams a system call) and demultiplexes in C; the
reference reads with ``recvfrom`` one datagram at a time into the Python
``MediaUdpProtocol.datagram_received``. Both must hand the same datagrams, decrypted the same,
to the same handlers in the same order and count the same drops: mixed STUN, DTLS, SRTP, SRTCP,
unknown first bytes and empty datagrams from bound and unknown addresses; bursts larger than a
batch; a socket with nothing to read (EAGAIN); a closed socket; a failing handler.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.fastpath import native
from zvonok.media.transport.receiver import Receiver as PyReceiver
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.udp import MediaUdpProtocol

from .test_transport_udp import until

pytestmark = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")

KEY = bytes(range(AEAD_AES_128_GCM.master_length))


class _Endpoint:
    """A transport as the socket sees it: with a receiver (``media_in``) or without."""

    def __init__(self, log: list[Any], receiver: Any = None, compiled: bool = False) -> None:
        self.log = log
        self.receiver = receiver
        if receiver is not None and compiled:
            self.media_in = receiver
        self.fail_on: bytes | None = None

    def handle_media(self, data: bytes, addr: Any) -> None:
        if data == self.fail_on:
            raise RuntimeError("handler failed")
        if self.receiver is not None:
            self.receiver.receive(data)
        else:
            self.log.append(("media", data, addr))

    def handle_dtls(self, data: bytes, addr: Any) -> None:
        self.log.append(("dtls", data, addr))

    def handle_stun(self, request: Any, addr: Any) -> bool:
        self.log.append(("stun", addr))
        return False


def _receiver(log: list[Any], compiled: bool) -> Any:
    assert native is not None
    make = native.Receiver if compiled else PyReceiver
    receiver = make(lambda d: log.append(("rtcp", d)), lambda p: log.append(("rtp", p)))
    session = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    receiver.set_srtp(*session.rx_handle(), session)
    return receiver


def udp_socket(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    """A non-blocking UDP socket on a loopback port, with a large receive buffer."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.setblocking(False)
    return sock


class Rig:
    """Three senders; a compiled and a reference receiving side with the same bindings.

    Sender 0 is bound to an endpoint with a receiver (SRTP decrypted), sender 1 to one without
    (``handle_media``), sender 2 to nothing."""

    def __init__(self) -> None:
        self.senders = [udp_socket() for _ in range(3)]
        self.sockets = [udp_socket(), udp_socket()]  # compiled, reference
        self.logs: list[list[Any]] = [[], []]
        self.protocols = [MediaUdpProtocol(), MediaUdpProtocol()]
        self.endpoints: list[list[_Endpoint]] = []
        for index, (protocol, log) in enumerate(zip(self.protocols, self.logs, strict=True)):
            compiled = index == 0
            with_receiver = _Endpoint(log, _receiver(log, compiled), compiled)
            without = _Endpoint(log)
            protocol.bind_address(self.senders[0].getsockname(), with_receiver)
            protocol.bind_address(self.senders[1].getsockname(), without)
            protocol.register_ufrag("zvnk", without)
            self.endpoints.append([with_receiver, without])
        self.demux = self.protocols[0].demux
        self.demux.fd = self.sockets[0].fileno()

    def close(self) -> None:
        for sock in self.senders + self.sockets:
            sock.close()

    def send(self, sender: int, data: bytes) -> None:
        for sock in self.sockets:
            self.senders[sender].sendto(data, sock.getsockname())

    def receive_compiled(self, expected: int, max_batches: int = 4) -> list[int]:
        """Drain until ``expected`` datagrams were read; the count of each drain."""
        counts: list[int] = []
        deadline = time.monotonic() + 2.0
        while sum(counts) < expected and time.monotonic() < deadline:
            counts.append(self.demux.drain(max_batches))
        return counts

    def receive_reference(self, expected: int) -> None:
        """One ``recvfrom`` per datagram into the Python ``datagram_received``."""
        got = 0
        deadline = time.monotonic() + 2.0
        while got < expected and time.monotonic() < deadline:
            try:
                data, addr = self.sockets[1].recvfrom(65536)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            MediaUdpProtocol.datagram_received(self.protocols[1], data, addr)
            got += 1


@contextmanager
def rig() -> Iterator[Rig]:
    r = Rig()
    try:
        yield r
    finally:
        r.close()


@st.composite
def traffic(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    """(sender, datagram): SRTP in order, replayed and tampered, SRTCP-typed, STUN, DTLS,
    unknown first bytes and empty datagrams, from bound and unknown senders."""
    srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    seq = draw(st.integers(0, 0xFFFF))
    out: list[tuple[int, bytes]] = []
    for _ in range(draw(st.integers(1, 80))):
        kind = draw(st.sampled_from(["srtp", "srtp", "srtp", "tampered", "srtcp", "stun",
                                     "dtls", "unknown", "empty", "short"]))  # fmt: skip
        sender = draw(st.integers(0, 2))
        if kind in ("srtp", "tampered"):
            seq = (seq + 1) & 0xFFFF
            rtp = struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0x1111)
            data = bytearray(srtp.protect_rtp(rtp + bytes(draw(st.integers(0, 1100)))))
            if kind == "tampered":
                data[-1] ^= 1
        elif kind == "srtcp":
            data = bytearray([0x80, 200]) + draw(st.binary(min_size=10, max_size=40))
        elif kind == "stun":
            data = bytearray([draw(st.integers(0, 3))]) + draw(st.binary(max_size=60))
        elif kind == "dtls":
            data = bytearray([draw(st.integers(20, 63))]) + draw(st.binary(max_size=60))
        elif kind == "unknown":
            first = draw(st.one_of(st.integers(4, 19), st.integers(64, 127), st.integers(192, 255)))
            data = bytearray([first]) + draw(st.binary(max_size=30))
        elif kind == "short":
            data = bytearray([0x80]) + draw(st.binary(max_size=10))
        else:
            data = bytearray()
        out.append((sender, bytes(data)))
    return out


def _same(r: Rig) -> None:
    assert r.logs[0] == r.logs[1]
    compiled, reference = r.protocols
    assert compiled.dropped == reference.dropped
    assert compiled.stun_refused == reference.stun_refused
    for name in ("rx_packets", "rx_bytes", "srtp_errors", "rx_dropped"):
        assert getattr(r.endpoints[0][0].receiver, name) == getattr(
            r.endpoints[1][0].receiver, name
        ), name


@settings(max_examples=60, deadline=None)
@given(stream=traffic())
def test_batched_receive_delivers_what_one_by_one_receive_delivers(
    stream: list[tuple[int, bytes]],
) -> None:
    with rig() as r:
        for sender, data in stream:
            r.send(sender, data)
        counts = r.receive_compiled(len(stream))
        r.receive_reference(len(stream))
        assert sum(counts) == len(stream) == r.demux.rx_datagrams
        _same(r)


def test_a_burst_larger_than_a_batch_keeps_its_order_and_is_read_in_batches() -> None:
    assert native is not None and native.RX_BATCH == 32
    with rig() as r:
        burst = [bytes([0x90]) + struct.pack("!H", i) + bytes(20) for i in range(100)]
        for data in burst:
            r.send(1, data)
        time.sleep(0.05)  # all 100 queued (loopback delivers within sendto)
        assert r.demux.drain(2) == 64  # two full batches, then the loop's other work runs
        assert r.demux.rx_calls == 2
        assert r.demux.drain(4) == 36  # a full batch and a short one: the queue is empty
        assert r.demux.rx_calls == 4
        r.receive_reference(100)
        _same(r)
        assert [e[1] for e in r.logs[0]] == burst


def test_one_waiting_datagram_costs_one_call() -> None:
    with rig() as r:
        r.send(1, b"\x90" + bytes(20))
        time.sleep(0.02)
        assert r.demux.drain(4) == 1
        assert (r.demux.rx_wakeups, r.demux.rx_calls, r.demux.rx_datagrams) == (1, 1, 1)


def test_mixed_stun_dtls_and_srtp_in_one_batch() -> None:
    srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    rtp = [srtp.protect_rtp(struct.pack("!BBHII", 0x80, 111, s, s, 0x1111) + bytes(40))
           for s in range(1, 4)]  # fmt: skip
    stun = b"\x00\x01\x00\x00" + bytes(16)  # a binding request without USERNAME: refused
    dtls = b"\x16\xfe\xfd" + bytes(20)
    with rig() as r:
        for sender, data in [(0, rtp[0]), (1, stun), (1, dtls), (0, rtp[1]), (0, b"\x80\xc8"
                             + bytes(20)), (2, rtp[2]), (1, b""), (0, rtp[2])]:  # fmt: skip
            r.send(sender, data)
        time.sleep(0.02)
        assert r.demux.drain(1) == 8 and r.demux.rx_calls == 1
        r.receive_reference(8)
        _same(r)
        kinds = [e[0] for e in r.logs[0]]
        assert kinds == ["rtp", "dtls", "rtp", "rtcp", "rtp"]
        assert r.protocols[0].stun_refused == 1 and r.protocols[0].dropped == 2


def test_nothing_to_read_returns_at_once() -> None:
    with rig() as r:
        assert r.demux.drain(4) == 0  # EAGAIN
        assert (r.demux.rx_wakeups, r.demux.rx_calls, r.demux.rx_datagrams) == (1, 0, 0)
        with pytest.raises(ValueError):
            r.demux.drain(0)


def test_a_closed_socket_reads_nothing_and_a_wrong_descriptor_is_an_error() -> None:
    with rig() as r:
        r.send(1, b"\x90" + bytes(20))
        r.demux.fd = -1  # what close() does
        assert r.demux.drain(4) == 0
        fd = os.open(os.devnull, os.O_RDONLY)
        try:
            r.demux.fd = fd
            with pytest.raises(OSError):
                r.demux.drain(4)
        finally:
            os.close(fd)
        assert r.logs[0] == []


def test_a_failing_handler_does_not_lose_the_rest_of_its_batch() -> None:
    datagrams = [bytes([0x90, i]) + bytes(20) for i in range(5)]
    with rig() as r:
        r.endpoints[0][1].fail_on = datagrams[1]
        for data in datagrams:
            r.send(1, data)
        time.sleep(0.02)
        with pytest.raises(RuntimeError, match="handler failed"):
            r.demux.drain(4)
        assert [e[1] for e in r.logs[0]] == [d for d in datagrams if d != datagrams[1]]
        assert r.demux.rx_datagrams == 5


def test_a_handler_may_not_drain_again() -> None:
    with rig() as r:
        demux = r.demux

        def again(data: bytes, addr: Any) -> None:
            demux.drain(1)

        r.endpoints[0][1].handle_media = again  # type: ignore[method-assign]
        r.send(1, b"\x90" + bytes(20))
        time.sleep(0.02)
        with pytest.raises(RuntimeError, match="from a datagram handler"):
            demux.drain(1)
        assert demux.drain(1) == 0  # and the next wake-up works


def test_ipv6_addresses_look_like_the_event_loops() -> None:
    try:
        receiver, sender = udp_socket(socket.AF_INET6, "::1"), udp_socket(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    reference = udp_socket(socket.AF_INET6, "::1")
    try:
        log: list[Any] = []
        protocol = MediaUdpProtocol()
        protocol.bind_address(sender.getsockname(), _Endpoint(log))
        protocol.demux.fd = receiver.fileno()
        sender.sendto(b"\x90" + bytes(20), receiver.getsockname())
        sender.sendto(b"\x90" + bytes(20), reference.getsockname())
        time.sleep(0.02)
        assert protocol.demux.drain(1) == 1
        _, addr = reference.recvfrom(100)
        assert log == [("media", b"\x90" + bytes(20), addr)]
        assert len(addr) == 4
    finally:
        for sock in (receiver, sender, reference):
            sock.close()


async def test_open_reads_in_batches_and_close_releases_the_socket() -> None:
    protocol = MediaUdpProtocol()
    log: list[Any] = []
    peer = udp_socket()
    sock = udp_socket()
    protocol.bind_address(peer.getsockname(), _Endpoint(log))
    await protocol.open(sock)
    try:
        assert protocol.fileno == sock.fileno() == protocol.demux.fd
        for i in range(40):
            peer.sendto(bytes([0x90, i]) + bytes(10), sock.getsockname())
        await until(lambda: len(log) >= 40)
        assert [e[1][1] for e in log] == list(range(40))
        assert protocol.demux.rx_calls < 40  # read in batches, not one wake-up per datagram
        protocol.sendto(b"reply", peer.getsockname())  # sending goes out on the same socket
        await asyncio.sleep(0.02)
        assert peer.recvfrom(100) == (b"reply", sock.getsockname())
    finally:
        await protocol.close()
        peer.close()
    assert protocol.fileno == -1 and protocol.demux.fd == -1 and sock.fileno() == -1
    protocol.sendto(b"late", ("127.0.0.1", 9))  # nothing, no error
    await protocol.close()  # twice is fine


async def test_a_blocked_socket_queues_in_order_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zvonok.media.transport import udp

    monkeypatch.setattr(udp, "MAX_SEND_BACKLOG", 3)
    protocol = MediaUdpProtocol()
    peer, sock = udp_socket(), udp_socket()
    await protocol.open(sock)
    try:
        blocked = True
        real = sock.sendto

        class Blocking(socket.socket):
            __slots__ = ()

            def sendto(self, data: Any, addr: Any) -> int:  # type: ignore[override]
                if blocked:
                    raise BlockingIOError
                return real(data, addr)

        sock.__class__ = Blocking
        for i in range(5):
            protocol.sendto(bytes([i]), peer.getsockname())
        assert protocol.send_dropped == 2
        blocked = False
        protocol._flush()
        await asyncio.sleep(0.02)
        assert [peer.recvfrom(10)[0] for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]
    finally:
        sock.__class__ = socket.socket
        await protocol.close()
        peer.close()


async def test_a_dual_stack_socket_reads_ipv4_peers_in_its_own_form_and_sends_to_either() -> None:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError:
        pytest.skip("no IPv6")
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0))
    sock.setblocking(False)
    protocol = MediaUdpProtocol()
    log: list[Any] = []
    peer = udp_socket()
    await protocol.open(sock)
    try:
        assert protocol.family == socket.AF_INET6
        protocol.bind_address(peer.getsockname(), _Endpoint(log))  # the IPv4 form is converted
        peer.sendto(b"\x90" + bytes(10), ("127.0.0.1", sock.getsockname()[1]))
        await until(lambda: len(log) == 1)
        assert log[0][2] == ("::ffff:127.0.0.1", peer.getsockname()[1], 0, 0)
        protocol.sendto(b"v4 form", peer.getsockname())
        protocol.sendto(b"socket form", log[0][2])
        await asyncio.sleep(0.02)
        assert [peer.recvfrom(100)[0] for _ in range(2)] == [b"v4 form", b"socket form"]
    finally:
        await protocol.close()
        peer.close()
