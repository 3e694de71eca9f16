"""The compiled packet ring (``_fastpath.PacketRing``) against its pure-Python reference
(``forwarding.history.PacketHistory``): the same sequences of put/get/clear give the same
answers (wrapping and out-of-range sequence numbers, late packets, overwrites, every length
including the ones neither keeps); its buffers follow the packets' sizes (64-byte classes,
swapped through a small pool, nothing allocated for a stream of steady sizes) and are freed by
``clear`` and with the ring; a producer keeping its history in either
answers NACKs with the same packets."""

from __future__ import annotations

import gc
import secrets
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvonok.media.fastpath import native
from zvonok.media.forwarding import layers
from zvonok.media.forwarding.history import (
    MAX_PACKET,
    MAX_SIZE,
    MIN_PACKET,
    PacketHistory,
    make_history,
)
from zvonok.media.forwarding.producer import Producer
from zvonok.media.forwarding.router import Router

from .forwarding_fakes import VP8_DELTA, VP8_KEY, FakeClock, FakeSink, consumer, make_video, rtp

if TYPE_CHECKING:
    from zvonok.media._fastpath import PacketRing

pytestmark = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")
GRAIN = native.RING_GRAIN if native is not None else 64
POOL = native.RING_POOL if native is not None else 4


def packet(seq: int, size: int, fill: int) -> bytes:
    """``size`` bytes whose bytes 2-3 carry ``seq`` (when that long), the rest from ``fill``."""
    body = bytes((fill + 7 * i) & 0xFF for i in range(size))
    if size < 4:
        return body
    return body[:2] + (seq & 0xFFFF).to_bytes(2, "big") + body[4:]


SEQS = st.one_of(
    st.integers(0, 0xFFFF),
    st.integers(0, 40),  # collisions in small rings, and the wrap from 0xFFFF
    st.integers(0xFFF0, 0xFFFF),
    st.integers(-3, -1),  # neither ring keeps or finds these; put wraps them like & mask
    st.integers(0x10000, 0x10003),
)
SIZES = st.one_of(
    st.integers(MIN_PACKET, 1300),
    st.sampled_from([0, 3, MIN_PACKET - 1, MIN_PACKET, MAX_PACKET - 1, MAX_PACKET, MAX_PACKET + 1]),
)
Op = tuple[str, int, int, int, int]  # (kind, slot seq, packet seq, size, fill)


@st.composite
def operations(draw: st.DrawFn) -> list[Op]:
    ops: list[Op] = []
    for _ in range(draw(st.integers(0, 120))):
        kind = draw(st.sampled_from(["put"] * 6 + ["get"] * 3 + ["clear"]))
        seq = draw(SEQS)
        carried = seq if draw(st.integers(0, 4)) else draw(SEQS)  # a slot/packet mismatch
        ops.append((kind, seq, carried, draw(SIZES), draw(st.integers(0, 255))))
    return ops


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.sampled_from([1, 2, 4, 16, 64, 512]), ops=operations())
def test_the_compiled_ring_answers_as_the_reference(size: int, ops: list[Op]) -> None:
    assert native is not None
    reference, compiled = PacketHistory(size), native.PacketRing(size)
    assert (compiled.size, compiled.mask) == (reference.size, reference.mask) == (size, size - 1)
    asked: set[int] = set()
    held: dict[int, int] = {}  # slot -> the class of its buffer: its last packet kept
    for kind, seq, carried, length, fill in ops:
        if kind == "put":
            data = packet(carried, length, fill)
            reference.put(seq, data)
            compiled.put(seq, data)
            asked.add(carried)
            if MIN_PACKET <= length <= MAX_PACKET:
                held[seq & (size - 1)] = -(-length // GRAIN)
        elif kind == "get":
            assert compiled.get(seq) == reference.get(seq), seq
            asked.add(seq)
        else:
            reference.clear()
            compiled.clear()
            held.clear()
            assert compiled.allocated == compiled.pooled == 0
        # each slot's buffer is of its last packet's class; the pool holds a few more
        assert compiled.allocated - compiled.pooled == GRAIN * sum(held.values())
        assert 0 <= compiled.pooled <= POOL * GRAIN * sum(range(-(-MAX_PACKET // GRAIN) + 1))
    for seq in asked | set(range(0, 0x10000, 97)):
        assert compiled.get(seq) == reference.get(seq), seq


@pytest.mark.parametrize("size", [0, -4, 3, 1000, 2 * MAX_SIZE])
def test_both_refuse_the_same_sizes(size: int) -> None:
    assert native is not None
    with pytest.raises(ValueError) as expected:
        PacketHistory(size)
    with pytest.raises(ValueError) as got:
        native.PacketRing(size)
    assert str(got.value) == str(expected.value)


def test_the_compiled_ring_takes_bytes_and_int_seqs() -> None:
    assert native is not None
    ring = native.PacketRing(4)
    with pytest.raises(TypeError):
        ring.put(1, bytearray(20))
    with pytest.raises(TypeError):
        ring.put("1", bytes(20))
    with pytest.raises(TypeError):
        ring.get(1.0)
    assert ring.get(1 << 80) is None
    ring.put(1 << 80, packet(0, 20, 1))  # the low bits choose the slot, as seq & mask does
    assert ring.get(0) == packet(0, 20, 1)


def test_slot_buffers_follow_the_packets_sizes_through_the_pool_and_go_with_clear() -> None:
    assert native is not None
    ring = native.PacketRing(64)
    assert ring.allocated == 0  # nothing until the first packet
    for seq in range(32):
        ring.put(seq, packet(seq, 100, seq))
    assert (ring.allocated, ring.pooled) == (32 * 128, 0)  # half the slots, 64-byte classes
    for seq in range(64, 64 * 20):  # twenty laps, each slot's packets in one class (65-128)
        ring.put(seq, packet(seq, 70 + (seq & 63) // 2, seq))
    assert (ring.allocated, ring.pooled) == (64 * 128, 0)  # one buffer a slot, reused
    ring.put(5, packet(5, 1200, 0))  # another class: a new buffer, the old one waits
    assert (ring.allocated, ring.pooled) == (64 * 128 + 1216, 128)
    ring.put(69, packet(69, 100, 0))  # back: the slot takes the waiting one, leaves its own
    assert (ring.allocated, ring.pooled) == (64 * 128 + 1216, 1216)
    for seq in range(6):  # six slots to 1,216: one from the pool, five allocated; of their
        ring.put(seq, packet(seq, 1200, seq))  # 128-byte buffers four wait, two are freed
    assert ring.get(5) == packet(5, 1200, 5) and ring.get(69) is None
    assert (ring.allocated, ring.pooled) == (62 * 128 + 6 * 1216, 4 * 128)
    ring.put(6, packet(6, MAX_PACKET, 0))  # the largest class; a fifth 128 is freed
    assert (ring.allocated, ring.pooled) == (61 * 128 + 6 * 1216 + 1536, 4 * 128)
    ring.put(7, packet(7, MAX_PACKET + 1, 0))  # not kept: the slot is emptied
    assert ring.get(7) is None and ring.allocated == 61 * 128 + 6 * 1216 + 1536
    assert ring.__sizeof__() > ring.allocated
    ring.clear()
    assert (ring.allocated, ring.pooled) == (0, 0) and ring.get(5) is None


def test_a_video_streams_buffers_stay_near_its_packets_sizes() -> None:
    """Most video packets fill the MTU, the last of a frame is shorter: the buffers held are
    within a class of each packet (as bytes objects' headers and malloc's rounding were), not
    the largest size each slot ever saw."""
    assert native is not None
    ring = native.PacketRing(512)
    sizes = [1180 if seq % 10 < 7 else 100 + (seq * 37) % 1000 for seq in range(512 * 20)]
    for seq, size in enumerate(sizes):
        ring.put(seq, packet(seq, size, seq))
    kept = sum(sizes[-512:])
    assert kept < ring.allocated - ring.pooled <= kept + 512 * GRAIN
    assert ring.pooled <= POOL * GRAIN * sum(range(25))


def test_the_ring_copies_without_an_allocation_per_packet() -> None:
    """After the first lap, a lap of puts allocates nothing the ring keeps and leaves the
    traced heap where it was (tracemalloc sees PyMem_Malloc)."""
    assert native is not None
    ring = native.PacketRing(512)
    packets = [packet(seq, 1100 + seq % 64, seq) for seq in range(512 * 3)]
    for seq in range(512):
        ring.put(seq, packets[seq])
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for seq in range(512, 512 * 3):
            ring.put(seq, packets[seq])
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1024


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _filled_producer(router: Router) -> tuple[Producer, PacketRing]:
    producer = make_video(router, FakeSink())
    assert native is not None and type(producer.history) is native.PacketRing
    for seq in range(1000):
        producer.receive_rtp(rtp(seq, seq * 3000, payload=VP8_DELTA + bytes(1000)))
    return producer, cast("PacketRing", producer.history)


def test_a_producers_ring_is_freed_on_close_and_with_the_producer() -> None:
    tracemalloc.start()
    try:
        baseline = _traced()
        router = Router(clock=FakeClock())
        producer, ring = _filled_producer(router)
        assert ring.allocated == 512 * 1088  # 1,062-byte packets, 64-byte grain
        assert _traced() - baseline > 512 * 1062
        producer.close()
        assert ring.allocated == 0  # closing empties the ring
        assert _traced() - baseline < 128 * 1024
        del producer, ring
        router.close()
        del router
        assert _traced() - baseline < 64 * 1024  # the ring went with its producer
    finally:
        tracemalloc.stop()


def test_a_dropped_ring_frees_its_buffers() -> None:
    assert native is not None
    tracemalloc.start()
    try:
        baseline = _traced()
        ring = native.PacketRing(512)
        for seq in range(512):
            ring.put(seq, packet(seq, 1000, seq))
        assert _traced() - baseline >= 512 * 1024
        del ring  # not cleared: the buffers go with it
        assert _traced() - baseline < 4096
        ring = native.PacketRing(512)
        for seq in range(2048):  # sizes that change class: buffers wait in the pool
            ring.put(seq, packet(seq, 200 + (seq * 97) % 1200, seq))
        assert ring.pooled > 0 and _traced() - baseline >= ring.allocated
        ring.clear()  # the slots' buffers and the pool's go; the slot table stays
        assert _traced() - baseline < 512 * 16 + 4096
    finally:
        tracemalloc.stop()


@contextmanager
def python_rings() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layers, "make_history", PacketHistory)
        yield


def test_each_ring_gives_the_producer_that_ring(each_ring: str) -> None:
    producer = make_video(Router(clock=FakeClock()), FakeSink())
    assert native is not None
    wanted = PacketHistory if each_ring == "python" else native.PacketRing
    assert type(producer.history) is wanted
    assert type(producer.layers[0].ring) is wanted
    assert type(make_history(4)) is native.PacketRing


Step = tuple[int, int, int]  # (seq step, payload length, NACK this many of the last sent)


@st.composite
def publishing(draw: st.DrawFn) -> list[Step]:
    steps = st.sampled_from([1, 1, 1, 1, 2, 3, -1, -2, 0, 300, 600])
    return [
        (draw(steps), draw(st.integers(0, 1300)), draw(st.sampled_from([0, 0, 0, 1, 3, 40])))
        for _ in range(draw(st.integers(1, 120)))
    ]


def run_call(start: int, steps: list[Step]) -> tuple[list[bytes], list[bytes], int]:
    """A publisher's packets through a video producer to two subscribers (one with RTX, one
    without); NACKs of recent and long-gone numbers along the way: what each got, and RTX."""
    clock = FakeClock()
    router = Router(clock=clock)
    producer: Producer = make_video(router, FakeSink())
    with pytest.MonkeyPatch.context() as patch:  # the same output numbering both times
        patch.setattr(secrets, "randbits", lambda bits: 0x5A5A_5A5A & ((1 << bits) - 1))
        (with_rtx, sink1), (plain, sink2) = (
            consumer(router, producer, 1),
            consumer(router, producer, 2, rtx=False),
        )
    seq = start
    producer.receive_rtp(rtp(seq, 0, payload=VP8_KEY))
    for step, length, nack in steps:
        seq = (seq + step) & 0xFFFF
        clock.now += 0.001
        producer.receive_rtp(rtp(seq, seq * 90, payload=VP8_DELTA + bytes(length)))
        for target, sink in ((with_rtx, sink1), (plain, sink2)):
            if nack and sink.rtp:
                newest = sink.rtp[-1][2] << 8 | sink.rtp[-1][3]
                target.receive_nack([(newest - back * 17) & 0xFFFF for back in range(nack)])
    return sink1.rtp, sink2.rtp, with_rtx.rtx_sent


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(0, 0xFFFF), steps=publishing())
def test_a_producer_answers_nacks_alike_with_either_ring(start: int, steps: list[Step]) -> None:
    compiled = run_call(start, steps)
    with python_rings():
        reference = run_call(start, steps)
    assert compiled == reference


def test_nacks_are_answered_from_the_ring_until_a_lap_overwrote_them(each_ring: str) -> None:
    assert run_call(100, [(1, 50, 0)] * 60 + [(1, 50, 3)])[2] == 3  # 0, 17, 34 back
    # 600 packets on, 40 NACKed 0, 17, ... 663 back: the ring holds the last 512 (0..510 back)
    assert run_call(100, [(1, 50, 0)] * 600 + [(1, 50, 40)])[2] == 31
