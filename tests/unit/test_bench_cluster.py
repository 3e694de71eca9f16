"""``zvonok bench --nodes 2`` helpers that need no Redis: RESP bulk replies and the latency
figures of ``join_split``."""

from __future__ import annotations

from zvonok.bench.cluster import _stats, bulk


def test_bulk_reads_a_string_and_nothing_else() -> None:
    assert bulk(b"$6\r\nbench0\r\n") == "bench0"
    assert bulk(b"$0\r\n\r\n") == ""
    assert bulk(b"$-1\r\n") is None  # no such field
    assert bulk(b"-WRONGTYPE Operation against a key\r\n") is None
    assert bulk(b"+OK\r\n") is None


def test_stats_are_milliseconds_from_nanoseconds() -> None:
    values = [ms * 1_000_000 for ms in range(1, 21)]  # 1..20 ms
    assert _stats(values) == {"count": 20, "p50": 10.5, "p95": 20.0, "max": 20.0}
    assert _stats([]) == {"count": 0, "p50": None, "p95": None, "max": None}
