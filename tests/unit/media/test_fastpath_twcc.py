"""Transport-wide CC on the hot path: the compiled ``SendTarget`` stamps and remembers exactly as
the Python ``TwccStamper``, and the compiled ``Receiver`` records arrivals as the Python one
(draft-holmer-rmcat-transport-wide-cc-extensions-01)."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvonok.media.fastpath import native
from zvonok.media.packets.rtp import build_extension_block
from zvonok.media.transport.receiver import TWCC_ARRIVALS
from zvonok.media.transport.receiver import Receiver as PyReceiver
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, SrtpSession
from zvonok.media.transport.target import TWCC_SENT, TwccStamper, find_extension

from .test_fastpath import KEY, packets, pair, wire

pytestmark = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")

TWCC_ID = 5  # the publisher's id 2, renumbered by test_fastpath.EXT_MAP


def twcc_packet(seq: int, twcc: int, *, ssrc: int = 0x1111, ext_id: int = 3) -> bytes:
    block = build_extension_block([(4, b"0"), (ext_id, struct.pack("!H", twcc))])
    header = struct.pack("!BBHII", 0x90, 96, seq & 0xFFFF, seq * 3000, ssrc)
    return header + block + bytes(200)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(video=st.booleans(), stream=st.lists(packets(), min_size=1, max_size=25))
def test_compiled_stamping_matches_the_reference(
    video: bool, stream: list[tuple[bytes, bool]]
) -> None:
    with wire() as w:
        compiled, reference, _ = pair(w, video=video)
        compiled.target.set_twcc(TWCC_ID)
        assert w.last_reference_target is not None
        w.last_reference_target.set_twcc(TWCC_ID)
        w.last_reference_target.twcc_seq = compiled.target.twcc_seq = 0xFFFE  # wraps
        for packet, keyframe in stream:
            compiled.forward(packet, keyframe)
            reference.forward(packet, keyframe)
        expected = w.reference_sent
        assert w.received(len(expected)) == expected
        target, ref = compiled.target, w.last_reference_target
        assert (target.twcc_seq, target.twcc_stamped) == (ref.twcc_seq, ref.twcc_stamped)
        for i in range(ref.twcc_stamped):
            seq = (0xFFFE + i) & 0xFFFF
            mine, theirs = target.twcc_lookup(seq), ref.twcc_lookup(seq)
            assert mine is not None and theirs is not None and mine[1] == theirs[1]


def test_stamps_one_and_two_byte_elements_and_records_sizes() -> None:
    stamper = TwccStamper()
    plain = twcc_packet(1, 0xAAAA)
    assert stamper.stamp(plain) is plain  # not enabled: id 0 matches nothing
    stamper.set_twcc(3)
    out = stamper.stamp(plain)
    found = find_extension(out, 3)
    assert found is not None and out[found[0] : found[0] + 2] == b"\x00\x00"
    two = struct.pack("!BBHII", 0x90, 96, 1, 0, 1) + struct.pack("!HH", 0x1000, 2)
    two += bytes([3, 2, 0xAA, 0xAA, 0, 0, 0, 0])
    out = stamper.stamp(two)
    assert out[16:20] == bytes([3, 2, 0, 1])
    assert stamper.twcc_lookup(1) == (stamper.twcc_lookup(1) or (0, 0))[:1] + (len(two),)
    assert stamper.twcc_lookup(2) is None and stamper.twcc_lookup(70000) is None
    short = (
        struct.pack("!BBHII", 0x90, 96, 1, 0, 1) + struct.pack("!HH", 0xBEDE, 1) + b"\x30\x07\0\0"
    )
    assert stamper.stamp(short) is short  # a 1-byte element cannot hold the seq


def test_compiled_target_refuses_bad_ids_and_forgets_old_seqs() -> None:
    assert native is not None
    with wire() as w:
        target: Any = w.target()
        with pytest.raises(ValueError, match="0..255"):
            target.set_twcc(256)
        target.set_twcc(3)
        for i in range(TWCC_SENT + 10):
            target.send(twcc_packet(i, 0))
        assert target.twcc_stamped == TWCC_SENT + 10 and target.twcc_seq == TWCC_SENT + 10
        assert target.twcc_lookup(5) is None  # overwritten by seq TWCC_SENT + 5
        assert target.twcc_lookup(TWCC_SENT + 5) is not None
        target.set_twcc(0)
        target.send(twcc_packet(TWCC_SENT + 10, 0))
        assert target.twcc_stamped == TWCC_SENT + 10 and target.tx_packets == TWCC_SENT + 11


def _receivers() -> tuple[Any, PyReceiver, list[int]]:
    assert native is not None
    wakes = [0, 0]
    compiled = native.Receiver(lambda d: None, lambda p: None)
    reference = PyReceiver(lambda d: None, lambda p: None)
    session = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    compiled.set_srtp(*session.rx_handle(), session)
    other = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    reference.set_srtp(0, 0, other)

    def wake(i: int) -> Any:
        return lambda: wakes.__setitem__(i, wakes[i] + 1)

    compiled.set_twcc(3, wake(0))
    reference.set_twcc(3, wake(1))
    return compiled, reference, wakes


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 0xFFFF), st.sampled_from([3, 3, 3, 7]), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_compiled_receiver_records_as_the_reference(
    stream: list[tuple[int, int, bool]],
) -> None:
    compiled, reference, wakes = _receivers()
    sender = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    drains: list[tuple[list[int], list[int]]] = []
    for n, (twcc, ext_id, drain) in enumerate(stream):
        data = sender.protect_rtp(twcc_packet(n, twcc, ssrc=0x2000 + n, ext_id=ext_id))
        compiled.receive(data)
        reference.receive(data)
        if drain:
            got, want = compiled.twcc_drain(), reference.twcc_drain()
            drains.append(([s for s, _ in got], [s for s, _ in want]))
    assert all(a == b for a, b in drains)
    assert wakes[0] == wakes[1]
    for name in ("twcc_recorded", "twcc_ssrc", "twcc_overflow", "rx_packets"):
        assert getattr(compiled, name) == getattr(reference, name), name


def test_receiver_ring_is_bounded_and_wakes_once_per_idle_period() -> None:
    compiled, reference, wakes = _receivers()
    sender = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    for n in range(TWCC_ARRIVALS + 5):
        data = sender.protect_rtp(twcc_packet(n, n))
        compiled.receive(data)
        reference.receive(data)
    assert wakes == [1, 1]
    got = compiled.twcc_drain()
    assert len(got) == TWCC_ARRIVALS and got[0][0] == 5 and compiled.twcc_overflow == 5
    assert [s for s, _ in reference.twcc_drain()] == [s for s, _ in got]
    assert compiled.twcc_drain() == [] and reference.twcc_drain() == []  # asleep now
    data = sender.protect_rtp(twcc_packet(9999, 9999))
    compiled.receive(data)
    reference.receive(data)
    assert wakes == [2, 2]
    arrival = compiled.twcc_drain()[0][1]
    assert abs(arrival - time.monotonic_ns() // 1000) < 1_000_000  # the same clock


def test_receiver_wake_errors_propagate() -> None:
    assert native is not None
    receiver = native.Receiver(lambda d: None, lambda p: None)
    session = SrtpSession(AEAD_AES_128_GCM, tx_master=KEY, rx_master=KEY)
    receiver.set_srtp(*session.rx_handle(), session)

    def boom() -> None:
        raise RuntimeError("boom")

    receiver.set_twcc(3, boom)
    with pytest.raises(RuntimeError, match="boom"):
        receiver.receive(session.protect_rtp(twcc_packet(1, 1)))
    with pytest.raises(ValueError, match="0..255"):
        receiver.set_twcc(300)
    with pytest.raises(TypeError, match="callable"):
        receiver.set_twcc(3, 5)
