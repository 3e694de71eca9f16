"""Receive coalescing (``Demux.set_window``/``readable``/``tick``) and the copies of one
``recvmmsg`` leaving together.

Coalescing changes only when the socket is read, never what is delivered: the same datagrams
read by the socket's reader and the coalescing timer in any interleaving must reach the same
handlers, decrypted the same, in the same order, with the same counters, as the one-by-one
Python reference (``MediaUdpProtocol.datagram_received``). The switch itself: wake-ups faster
than one a window (on average) hand the reads to the timer, two empty ticks hand them back.
The copies forwarded while a batch is read are sent together after it, and before anything the
Python path sends for a later datagram of that batch (STUN answers, RTCP).
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.fastpath import native
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.udp import MediaUdpProtocol

from .test_fastpath_recv import KEY, Rig, _Endpoint, _same, _udp, rig, traffic
from .test_transport_udp import until

pytestmark = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")


class Modes:
    """``on_mode`` for a rig: records the switches (the loop's reader off/on)."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, polling: bool) -> None:
        self.calls.append(polling)


def _wake(r: Rig) -> int:
    """What the event loop would call now: the timer's callback while polling, else the
    socket's."""
    return int(r.demux.tick() if r.demux.polling else r.demux.readable())


@settings(max_examples=60, deadline=None)
@given(
    stream=traffic(),
    chunks=st.lists(st.integers(1, 12), min_size=1, max_size=40),
    window=st.sampled_from([1, 50, 300, 2000]),
)
def test_coalesced_reads_deliver_what_one_by_one_receive_delivers(
    stream: list[tuple[int, bytes]], chunks: list[int], window: int
) -> None:
    with rig() as r:
        modes = Modes()
        assert r.demux.set_window(window, modes) == r.demux.timer_fd >= 0
        sent = 0
        for size in chunks:  # send a chunk, then one wake-up, as the loop would
            for sender, data in stream[sent : sent + size]:
                r.send(sender, data)
            sent = min(sent + size, len(stream))
            _wake(r)
        for sender, data in stream[sent:]:
            r.send(sender, data)
        deadline = time.monotonic() + 2.0
        while r.demux.rx_datagrams < len(stream) and time.monotonic() < deadline:
            _wake(r)
        r.receive_reference(len(stream))
        assert r.demux.rx_datagrams == len(stream)
        _same(r)
        # the switches alternate, starting with "polling", and end where the demux is
        assert modes.calls == [i % 2 == 0 for i in range(len(modes.calls))]
        assert bool(modes.calls and modes.calls[-1]) == r.demux.polling
        assert r.demux.rx_switches == len(modes.calls)


def test_fast_wake_ups_hand_the_reads_to_the_timer_and_silence_hands_them_back() -> None:
    with rig() as r:
        modes = Modes()
        timer = r.demux.set_window(100_000, modes)  # 100 ms: every wake-up below is "fast"
        assert r.demux.window_us == 100_000 and not r.demux.polling
        r.send(1, b"\x90\x00" + bytes(20))
        time.sleep(0.01)
        assert r.demux.readable() == 1
        # the first wake-up after a long quiet spell does not switch (average of the gaps)
        assert modes.calls == [] and not r.demux.polling
        for i in range(1, 20):
            r.send(1, bytes([0x90, i]) + bytes(20))
            time.sleep(0.002)
            assert r.demux.readable() == 1
            if r.demux.polling:
                break
        assert r.demux.polling and modes.calls == [True]
        assert select.select([timer], [], [], 0.5)[0] == [timer]  # the timer is armed
        r.send(1, b"\x90\xff" + bytes(20))
        time.sleep(0.01)
        assert r.demux.tick() == 1 and r.demux.polling  # a tick that reads: still polling
        assert r.demux.tick() == 0 and r.demux.polling  # one empty tick: still polling
        assert r.demux.tick() == 0 and not r.demux.polling  # two: back to the socket's reader
        assert modes.calls == [True, False]
        assert r.demux.tick() == 0 and r.demux.rx_ticks == 3  # a late tick does nothing
        assert select.select([timer], [], [], 0.15)[0] == []  # the timer was disarmed
        r.receive_reference(i + 2)
        _same(r)


def test_a_window_of_zero_turns_coalescing_off_and_close_releases_the_timer() -> None:
    with rig() as r:
        modes = Modes()
        assert r.demux.set_window(0, modes) == -1
        for i in range(10):
            r.send(1, bytes([0x90, i]) + bytes(20))
            time.sleep(0.001)
            r.demux.readable()
        assert modes.calls == [] and not r.demux.polling and r.demux.timer_fd == -1
        timer = r.demux.set_window(100_000, modes)
        for i in range(10):
            r.send(1, bytes([0x90, i]) + bytes(20))
            time.sleep(0.001)
            r.demux.readable()
        assert r.demux.polling and modes.calls == [True]
        assert r.demux.set_window(0, modes) == -1  # off while polling: the reader comes back
        assert not r.demux.polling and modes.calls == [True, False]
        r.demux.close_window()
        assert r.demux.timer_fd == -1
        with pytest.raises(OSError):
            select.select([timer], [], [], 0)  # closed
        with pytest.raises(ValueError):
            r.demux.set_window(-1, modes)
        with pytest.raises(ValueError):
            r.demux.set_window(100_001, modes)
        with pytest.raises(TypeError):
            r.demux.set_window(10, None)


def _forwarding_rig(r: Rig, out: socket.socket) -> tuple[Any, list[int]]:
    """The compiled side's SRTP sender (0) delivers each decrypted packet to a compiled
    fan-out of one forwarder that sends to ``out``; the list records, at each delivery, how
    many copies its target had sent by then."""
    assert native is not None
    target = native.SendTarget(r.sockets[0].fileno(), lambda d, a: None)
    srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    target.set_srtp(*srtp.tx_handle(), srtp)
    target.set_address(out.getsockname())
    target.enabled = True
    table = bytes(256)
    forwarder = native.Forwarder(
        target=target, ssrc=0xCAFE, payload_types={111: 111}, ext_table=table, video=False,
        ts_offset=0, last_out_seq=0,
    )  # fmt: skip
    fanout = native.Fanout()
    fanout.set([forwarder])
    sent_before: list[int] = []

    def deliver(packet: bytes) -> None:
        sent_before.append(target.tx_packets)
        fanout.forward(packet, False)

    receiver = native.Receiver(lambda d: None, deliver)
    receiver.set_srtp(*srtp.rx_handle(), srtp)
    r.endpoints[0][0].media_in = receiver
    r.endpoints[0][0].receiver = receiver
    return target, sent_before


def test_the_copies_of_one_batch_leave_together_and_before_a_later_answer() -> None:
    out = _udp()
    try:
        with rig() as r:
            target, sent_before = _forwarding_rig(r, out)
            srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)

            def rtp(seq: int) -> bytes:
                return srtp.protect_rtp(struct.pack("!BBHII", 0x80, 111, seq, seq, 1) + bytes(30))

            # A datagram for the Python path (sender 1, bound without a receiver) answers on
            # the same socket: its answer must leave after the copies of the packets before it.
            def answer(data: bytes, addr: Any) -> None:
                r.sockets[0].sendto(b"answer", out.getsockname())

            r.endpoints[0][1].handle_media = answer  # type: ignore[method-assign]
            for seq in (1, 2, 3):
                r.senders[0].sendto(rtp(seq), r.sockets[0].getsockname())
            r.senders[1].sendto(b"\x90" + bytes(20), r.sockets[0].getsockname())
            for seq in (4, 5):
                r.senders[0].sendto(rtp(seq), r.sockets[0].getsockname())
            time.sleep(0.02)
            assert r.demux.drain(1) == 6 and r.demux.rx_calls == 1
            # while the batch was read nothing had left until the Python path's turn
            assert sent_before == [0, 0, 0, 3, 3]
            assert target.tx_packets == 5
            got = []
            out.settimeout(0.5)
            for _ in range(6):
                got.append(out.recv(2048))
            check = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
            kinds = [d if d == b"answer" else check.unprotect_rtp(d)[2:4] for d in got]
            seqs = [struct.pack("!H", s) for s in (1, 2, 3)]
            assert kinds == [*seqs, b"answer", *(struct.pack("!H", s) for s in (4, 5))]
            # outside a drain a fan-out still sends at once
            r.endpoints[0][0].media_in.receive(rtp(6))
            assert target.tx_packets == 6
    finally:
        out.close()


async def test_open_with_a_window_reads_on_the_timer_while_busy_and_closes_it() -> None:
    protocol = MediaUdpProtocol(rx_window_us=5000)
    log: list[Any] = []
    peer, sock = _udp(), _udp()
    protocol.bind_address(peer.getsockname(), _Endpoint(log))
    await protocol.open(sock)
    demux = protocol.demux
    try:
        timer = demux.timer_fd
        assert demux.window_us == 5000 and timer >= 0
        # Four datagrams every ~1 ms: faster than one a window (5 ms). The average of the gaps
        # starts at 1 s and needs ~20 quick wake-ups to fall below the window: 100 bursts.
        for i in range(400):
            peer.sendto(bytes([0x90, i % 256]) + bytes(10), sock.getsockname())
            if i % 4 == 3:
                await asyncio.sleep(0.0005)
        await until(lambda: len(log) >= 400, within=5.0)
        assert [e[1][1] for e in log] == [i % 256 for i in range(400)]
        assert demux.rx_ticks > 0 and demux.rx_switches >= 1
        assert demux.rx_wakeups < 400  # several datagrams a wake-up
        await until(lambda: not demux.polling)  # quiet: the socket's reader is back
        peer.sendto(b"\x90\x01late", sock.getsockname())
        await until(lambda: len(log) == 401)
    finally:
        await protocol.close()
        peer.close()
    assert demux.timer_fd == -1 and demux.fd == -1
    with pytest.raises(OSError):
        select.select([timer], [], [], 0)


def test_a_peer_rebound_or_unbound_reaches_its_new_endpoint_not_the_remembered_receiver() -> None:
    """``Demux`` remembers each peer address's compiled receiver after the first lookup;
    ``bind_address`` and ``unregister`` make it look again (``forget``)."""
    assert native is not None
    srtp = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)

    def rtp(seq: int) -> bytes:
        return srtp.protect_rtp(struct.pack("!BBHII", 0x80, 111, seq, seq, 1) + bytes(30))

    with rig() as r:
        protocol, peer = r.protocols[0], r.senders[0].getsockname()
        first = r.endpoints[0][0]
        log: list[Any] = []
        second = _Endpoint(log, _receiver_logging(log), compiled=True)
        r.senders[0].sendto(rtp(1), r.sockets[0].getsockname())
        time.sleep(0.01)
        assert r.demux.drain(1) == 1
        assert first.receiver.rx_packets == 1
        protocol.bind_address(peer, second)  # the peer moved to another session
        r.senders[0].sendto(rtp(2), r.sockets[0].getsockname())
        time.sleep(0.01)
        assert r.demux.drain(1) == 1
        assert first.receiver.rx_packets == 1 and second.receiver.rx_packets == 1
        assert [e[0] for e in log] == ["rtp"]
        protocol.unregister(second, [])  # gone: its datagrams are dropped by the Python path
        dropped = protocol.dropped
        r.senders[0].sendto(rtp(3), r.sockets[0].getsockname())
        time.sleep(0.01)
        assert r.demux.drain(1) == 1
        assert second.receiver.rx_packets == 1 and protocol.dropped == dropped + 1


def _receiver_logging(log: list[Any]) -> Any:
    assert native is not None
    receiver = native.Receiver(lambda d: log.append(("rtcp", d)), lambda p: log.append(("rtp", p)))
    session = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    receiver.set_srtp(*session.rx_handle(), session)
    return receiver
