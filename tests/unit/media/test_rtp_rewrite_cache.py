"""``rewrite_rtp``'s per-(packet, ext table) cache gives the same bytes as the uncached path."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.packets.rtp import ext_id_table, rewrite_rtp

EXT = bytes([0x22, 1, 2, 3, 0x40, ord("1"), 0, 0])  # abs-send-time (id 2), mid "1" (id 4)


def packet(seq: int) -> bytes:
    return struct.pack("!BBHIIHH", 0x90, 96, seq, 3000, 0x1234, 0xBEDE, 2) + EXT + bytes(20)


TABLES = [ext_id_table({2: 2}), ext_id_table({2: 3, 4: 4}), ext_id_table({2: 2}), b"\x00" * 256]


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=20))
def test_cached_rewrite_equals_uncached(calls: list[tuple[int, int]]) -> None:
    packets = [packet(i) for i in range(3)]
    for n, (p, t) in enumerate(calls):
        data, table = packets[p], TABLES[t]
        cached = rewrite_rtp(data, n, 100, n, n, table)
        uncached = rewrite_rtp(bytearray(data), n, 100, n, n, table)  # bytearray: never cached
        assert cached == uncached


def test_cache_patches_header_per_call() -> None:
    data, table = packet(7), ext_id_table({2: 2})
    a = rewrite_rtp(data, 5, 100, 1, 2, table)
    b = rewrite_rtp(data, 6, 101, 3, 4, table)
    assert struct.unpack_from("!BHII", a, 1) == (100, 1, 2, 5)
    assert struct.unpack_from("!BHII", b, 1) == (101, 3, 4, 6)
    assert a[12:] == b[12:]
    assert a[12:16] == bytes([0xBE, 0xDE, 0, 1])  # the mid element is gone: one word left
