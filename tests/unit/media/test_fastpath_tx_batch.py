"""Inside ``Demux.drain`` the copies of up to ``RX_FLUSH`` (8) received datagrams leave in one
``sendmmsg``.

Real loopback sockets and SRTP on both sides: a publisher's packets are read by a drain, each
decrypted one fanned out by a compiled ``Fanout`` of ``Forwarder``s; ``native.tx_batches``
counts the send batches. What must hold besides fewer batches: every copy arrives, in
order per destination, also when the copies go out on different sockets, when a Python callback
sends to the same destination in between (the STUN/DTLS path, a target's own ``send``), when a
callback re-addresses a target whose copies are still waiting, and when a handler fails; and
``Fanout.forward`` called from Python still sends at once.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from zvonok.media.fastpath import native
from zvonok.media.packets.rtp import build_extension_block, ext_id_table
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.udp import MediaUdpProtocol

pytestmark = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")

KEY = bytes(range(AEAD_AES_128_GCM.master_length))
PTS = {111: 109}


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.setblocking(False)
    return sock


def _srtp() -> SrtpSession:
    return SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)


TWCC_ID = 3


def rtp(seq: int, ssrc: int = 0x1111, twcc: bool = False) -> bytes:
    """An Opus-typed RTP packet; with a transport-cc element (id ``TWCC_ID``) if ``twcc``."""
    if not twcc:
        return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc) + bytes(40)
    block = build_extension_block([(TWCC_ID, struct.pack("!H", seq))])
    return struct.pack("!BBHII", 0x90, 111, seq, seq * 960, ssrc) + block + bytes(40)


class Subscriber:
    """A receiving socket and the compiled target + forwarder that send to it."""

    def __init__(self, tx: socket.socket, ssrc: int) -> None:
        assert native is not None
        self.sock = _udp()
        self.srtp = _srtp()
        self.fallback: list[bytes] = []
        self.target = native.SendTarget(tx.fileno(), lambda d, a: self.fallback.append(d))
        self.target.set_srtp(*self.srtp.tx_handle(), self.srtp)
        self.target.set_address(self.sock.getsockname())
        self.target.enabled = True
        self.forwarder = native.Forwarder(
            target=self.target, ssrc=ssrc, payload_types=PTS,
            video=False, ts_offset=0, last_out_seq=0, ext_table=ext_id_table({TWCC_ID: TWCC_ID}),
        )  # fmt: skip

    def received(self, within: float = 1.0) -> list[bytes]:
        """Everything that arrived (raw datagrams), waiting until nothing more comes."""
        out: list[bytes] = []
        deadline = time.monotonic() + within
        quiet = time.monotonic() + 0.05
        while time.monotonic() < deadline and time.monotonic() < quiet:
            try:
                out.append(self.sock.recv(2048))
                quiet = time.monotonic() + 0.05
            except BlockingIOError:
                time.sleep(0.002)
        return out

    def seqs(self, datagrams: list[bytes]) -> list[int]:
        """Which of the publisher's packets the RTP copies are (by timestamp: the forwarder
        renumbers sequence numbers but keeps timestamps)."""
        return [struct.unpack("!I", self.srtp.unprotect_rtp(d)[4:8])[0] // 960 for d in datagrams]


class _Endpoint:
    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        assert native is not None
        self.session = _srtp()
        self.media_in = native.Receiver(lambda d: None, deliver)
        self.media_in.set_srtp(*self.session.rx_handle(), self.session)
        self.dtls: list[bytes] = []
        self.on_dtls: Callable[[], object] = lambda: None

    def handle_media(self, data: bytes, addr: Any) -> None:
        self.media_in.receive(data)

    def handle_dtls(self, data: bytes, addr: Any) -> None:
        self.dtls.append(data)
        self.on_dtls()

    def handle_stun(self, request: Any, addr: Any) -> bool:
        return False


class Rig:
    """A publisher -> drain -> fan-out to ``subscribers`` (on ``tx``, or ``tx2`` for odd ones)."""

    def __init__(self, subscribers: int = 2, two_sockets: bool = False) -> None:
        assert native is not None
        self.sock = _udp()  # what the drain reads
        self.tx = [_udp(), _udp()]
        self.subs = [
            Subscriber(self.tx[i % 2 if two_sockets else 0], 0xA000 + i) for i in range(subscribers)
        ]
        self.fanout = native.Fanout()
        self.fanout.set([s.forwarder for s in self.subs])
        self.before: dict[int, Callable[[], object]] = {}  # publisher seq -> run before forward
        self.fail_on: int | None = None
        self.twcc = False  # publish with a transport-cc element
        self.endpoint = _Endpoint(self.deliver)
        self.protocol = MediaUdpProtocol()
        self.protocol.demux.fd = self.sock.fileno()
        self.publisher = _udp()
        self.publisher_srtp = _srtp()
        self.protocol.bind_address(self.publisher.getsockname(), self.endpoint)

    def deliver(self, packet: bytes) -> None:
        seq = struct.unpack("!H", packet[2:4])[0]
        if seq in self.before:
            self.before[seq]()
        if seq == self.fail_on:
            raise RuntimeError("handler failed")
        self.fanout.forward(packet, False)

    def publish(self, seqs: list[int]) -> None:
        for seq in seqs:
            data = self.publisher_srtp.protect_rtp(rtp(seq, twcc=self.twcc))
            self.publisher.sendto(data, self.sock.getsockname())

    def drain(self, expected: int) -> int:
        """Drain the ``expected`` datagrams in one go; the send batches it took."""
        assert native is not None
        time.sleep(0.02)  # all queued, so one drain reads them in one recvmmsg
        batches = native.tx_batches()
        assert self.protocol.demux.drain(4) == expected
        return int(native.tx_batches() - batches)

    def close(self) -> None:
        for sock in [self.sock, self.publisher, *self.tx, *(s.sock for s in self.subs)]:
            sock.close()


@contextmanager
def rig(**kwargs: Any) -> Iterator[Rig]:
    r = Rig(**kwargs)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def one_socket() -> Iterator[Rig]:
    with rig(subscribers=3) as r:
        yield r


@pytest.fixture
def two_sockets() -> Iterator[Rig]:
    with rig(subscribers=4, two_sockets=True) as r:
        yield r


def test_the_copies_of_up_to_eight_datagrams_of_a_drain_leave_in_one_send_batch(
    one_socket: Rig,
) -> None:
    assert native is not None and native.RX_FLUSH == 8
    r = one_socket
    r.publish(list(range(1, 9)))
    assert r.drain(8) == 1  # 24 copies: one sendmmsg (without the drain: one per packet)
    r.publish(list(range(9, 30)))
    assert r.drain(21) == 3  # 8 + 8 + 5: the first of a burst does not wait for all of it
    for sub in r.subs:
        assert sub.seqs(sub.received()) == list(range(1, 30))
        assert (sub.target.tx_packets, sub.fallback) == (29, [])


def test_a_batch_is_flushed_when_full_or_the_socket_changes(two_sockets: Rig) -> None:
    assert native is not None and native.BATCH == 64
    r = two_sockets
    r.publish(list(range(1, 21)))
    assert r.drain(20) == 80  # each copy goes out on the other socket than the one before
    for sub in r.subs:
        assert sub.seqs(sub.received()) == list(range(1, 21))
    with rig(subscribers=9) as big:  # 8 packets x 9 copies: 72 = 64 + 8
        big.publish(list(range(1, 9)))
        assert big.drain(8) == 2
        for sub in big.subs:
            assert sub.seqs(sub.received()) == list(range(1, 9))


def test_python_sends_in_between_keep_the_order_per_destination(one_socket: Rig) -> None:
    r = one_socket
    sub = r.subs[0]
    # a DTLS datagram whose handler sends to the subscriber through the socket (the Python
    # path), and a target's own send (a retransmission) from a handler: both after the copies
    # of the packets before them
    r.endpoint.on_dtls = lambda: r.tx[0].sendto(b"\x16dtls", sub.sock.getsockname())
    r.before[4] = lambda: sub.target.send(rtp(1000))
    r.publish([1, 2])
    r.publisher.sendto(b"\x16" + bytes(20), r.sock.getsockname())
    r.publish([3, 4, 5])
    r.drain(6)
    got = sub.received()
    assert got[2] == b"\x16dtls"
    assert sub.seqs(got[:2] + got[3:]) == [1, 2, 3, 1000, 4, 5]


def test_a_target_readdressed_while_its_copies_wait_sends_them_where_they_were_meant(
    one_socket: Rig,
) -> None:
    r = one_socket
    moved, elsewhere = r.subs[0], _udp()
    try:
        r.before[3] = lambda: moved.target.set_address(elsewhere.getsockname())
        r.publish([1, 2, 3, 4])
        assert r.drain(4) == 1
        assert moved.seqs(moved.received()) == [1, 2]
        late = []
        time.sleep(0.02)
        while True:
            try:
                late.append(elsewhere.recv(2048))
            except BlockingIOError:
                break
        assert moved.seqs(late) == [3, 4]
    finally:
        elsewhere.close()


def test_a_failing_handler_still_sends_the_batch(one_socket: Rig) -> None:
    r = one_socket
    r.fail_on = 2
    r.publish([1, 2, 3])
    time.sleep(0.02)
    with pytest.raises(RuntimeError, match="handler failed"):
        r.protocol.demux.drain(4)
    for sub in r.subs:
        assert sub.seqs(sub.received()) == [1, 3]


def test_forward_called_outside_a_drain_sends_at_once(one_socket: Rig) -> None:
    assert native is not None
    r = one_socket
    batches = native.tx_batches()
    r.fanout.forward(rtp(7), False)
    assert native.tx_batches() == batches + 1
    for sub in r.subs:
        assert sub.target.tx_packets == 1  # already sent, not waiting for anything
        assert sub.seqs(sub.received()) == [7]


def test_transport_cc_send_times_are_taken_when_the_batch_leaves(one_socket: Rig) -> None:
    r = one_socket
    sub = r.subs[0]
    sub.target.set_twcc(TWCC_ID)
    marks: list[int] = []

    def wait() -> None:  # the copy of packet 1 waits 20 ms in the batch
        time.sleep(0.02)
        marks.append(time.monotonic_ns() // 1000)

    r.before[2] = wait
    r.twcc = True
    r.publish([1, 2])
    r.drain(2)
    assert sub.seqs(sub.received()) == [1, 2] and sub.target.twcc_stamped == 2
    first, second = sub.target.twcc_lookup(0), sub.target.twcc_lookup(1)
    assert first is not None and second is not None
    assert first[0] >= marks[0]  # the copy of packet 1 waited: its send time is when it left
    assert first[0] == second[0]  # one sendmmsg
