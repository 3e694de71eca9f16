"""``zvonok bench --nodes 2`` helpers that need no Redis: RESP bulk replies and the latency
figures of ``join_split``."""

from __future__ import annotations

from zvonok.bench.cluster import _stats, bulk, parse_legs, plan_routes


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


def test_late_joiners_split_evenly_whichever_node_owns_the_room() -> None:
    # 1:1 calls: placement put chats 1, 3 and 5 on bench1 although their senders joined bench0;
    # the old plan (late joiner i through node i % 2) made all six joins direct
    owners = {("chat", str(n)): "bench1" if n % 2 else "bench0" for n in range(6)}
    rooms = [("chat", str(n)) for n in range(6)]
    routes = plan_routes(owners, ["bench0", "bench1"], rooms)
    assert routes == [0, 0, 0, 0, 0, 0]
    through_owner = [
        owners[room] == f"bench{node}" for room, node in zip(rooms, routes, strict=True)
    ]
    assert through_owner == [True, False, True, False, True, False]


def test_a_group_room_alternates_through_its_owner_and_the_other_node() -> None:
    owners = {("group", "g"): "bench1"}
    assert plan_routes(owners, ["bench0", "bench1"], [("group", "g")] * 5) == [1, 0, 1, 0, 1]
    # no lease (not expected): the first node counts as the owner
    assert plan_routes({}, ["bench0", "bench1"], [("group", "h")] * 3) == [0, 1, 0]


METRICS = """\
# HELP zvonok_cluster_relay_leg_seconds Legs of the signaling relayed between nodes.
# TYPE zvonok_cluster_relay_leg_seconds histogram
zvonok_cluster_relay_leg_seconds_bucket{le="0.0005",leg="locate"} 0.0
zvonok_cluster_relay_leg_seconds_bucket{le="0.001",leg="locate"} 1.0
zvonok_cluster_relay_leg_seconds_bucket{le="0.002",leg="locate"} 3.0
zvonok_cluster_relay_leg_seconds_bucket{le="+Inf",leg="locate"} 4.0
zvonok_cluster_relay_leg_seconds_bucket{le="0.0005",leg="send_wait"} 4.0
zvonok_cluster_relay_leg_seconds_bucket{le="+Inf",leg="send_wait"} 10.0
zvonok_cluster_relay_leg_seconds_count{leg="locate"} 4.0
zvonok_cluster_relay_leg_seconds_sum{leg="locate"} 0.006
zvonok_cluster_relay_leg_seconds_count{leg="serve"} 0.0
zvonok_cluster_relay_leg_seconds_sum{leg="serve"} 0.0
zvonok_cluster_relay_leg_seconds_count{leg="send_wait"} 10.0
zvonok_cluster_relay_leg_seconds_sum{leg="send_wait"} 1.5e-03
# TYPE zvonok_cluster_relay_located counter
zvonok_cluster_relay_located_total{source="held"} 12.0
zvonok_cluster_relay_located_total{source="lease"} 4.0
zvonok_cluster_relay_located_created{source="lease"} 1.7e+09
"""


def test_parse_legs_reads_means_and_how_owners_were_found() -> None:
    assert parse_legs(METRICS) == {
        "legs": {
            # the 2nd of 4 is halfway through the (1, 2] ms bucket, which holds 2
            "locate": {"count": 4, "mean_ms": 1.5, "p50_ms": 1.5},
            "send_wait": {"count": 10, "mean_ms": 0.15, "p50_ms": None},  # beyond the buckets
        },
        "located": {"held": 12, "lease": 4},
    }
