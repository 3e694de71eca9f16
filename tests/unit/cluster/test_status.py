"""What ``zvonok cluster status`` prints and ``/metrics`` adds in a cluster, without Redis: the
status document of a local node, the table of a document, the media addresses taken from host
candidates, and the ``zvonok_cluster_*`` families (every one documented in docs/operations.md).
Redis itself is exercised in tests/integration/cluster/test_serve_cluster.py."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zvonok.admin.cluster_cli import format_status
from zvonok.cluster.base import NodeInfo
from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.node import RedisCluster
from zvonok.cluster.status import local_status, node_json
from zvonok.cluster_node import NODES_COUNT_TTL, ClusterCollector, NodeStats, udp_addresses
from zvonok.media.worker import host_candidates

DOCS = Path(__file__).parents[3] / "docs"


def test_udp_addresses_of_host_candidates() -> None:
    lines = host_candidates(["192.0.2.7", "2001:db8::1"], 40001, tcp_port=40100)
    assert udp_addresses(lines) == ["192.0.2.7:40001", "[2001:db8::1]:40001"]


def test_a_local_node_lists_itself_and_its_rooms() -> None:
    node = NodeInfo("host:8080", "b1", load=0.25, addresses=("192.0.2.7:40000",), rooms=1)
    status = local_status(node, ["chat:1"])
    assert status["backend"] == "local" and status["health"] == "ok"
    assert status["node"] == "host:8080"
    assert status["nodes"] == [node_json(node, now_ms=None, me="host:8080")]
    assert status["nodes"][0]["heartbeatAgeMs"] is None and status["nodes"][0]["self"]
    assert status["rooms"] == [
        {"room": "chat:1", "owner": "host:8080", "epoch": None, "valid": True}
    ]


def test_heartbeat_age_is_read_on_one_clock() -> None:
    node = NodeInfo("n1", "b", updated_ms=10_000)
    assert node_json(node, now_ms=11_500, me=None)["heartbeatAgeMs"] == 1500
    assert node_json(node, now_ms=9_000, me=None)["heartbeatAgeMs"] == 0  # never negative


def test_the_table() -> None:
    nodes = [
        node_json(NodeInfo("n2", "b2", load=0.5, rooms=2, sessions=3, updated_ms=1), now_ms=2001,
                  me="n1"),
        node_json(NodeInfo("n1", "b1", addresses=("a:1", "a:2")), now_ms=2001, me="n1"),
    ]  # fmt: skip
    rooms = [
        {"room": "chat:1", "owner": "n1", "epoch": 4, "valid": True},
        {"room": "group:x", "owner": "n9", "epoch": 2, "valid": False},
    ]
    document = {"backend": "redis", "node": "n1", "health": "degraded", "nodes": nodes,
                "rooms": rooms, "roomsTruncated": True}  # fmt: skip
    lines = format_status(document)
    assert lines[0] == "cluster: redis, health degraded (as seen by n1); 2 node(s), 2+ room(s)"
    assert lines[1].split() == ["NODE", "STATE", "LOAD", "ROOMS", "SESSIONS", "HEARTBEAT",
                                "ADDRESSES"]  # fmt: skip
    assert lines[2].split() == ["n2", "serving", "0.500", "2", "3", "2.0", "s", "-"]
    assert lines[3].split() == ["n1*", "serving", "0.000", "0", "0", "-", "a:1,a:2"]
    assert lines[5].split() == ["ROOM", "OWNER", "EPOCH"]
    assert lines[6].split() == ["chat:1", "n1", "4"]
    assert lines[7].startswith("group:x") and "stale" in lines[7]
    assert lines[-1] == "(more rooms than listed)"


def test_node_stats_without_media() -> None:
    stats = NodeStats()
    assert (stats.load(), stats.rooms(), stats.sessions(), stats.addresses()) == (0.0, 0, 0, ())


async def test_cluster_families_are_documented() -> None:
    # a real backend whose client never connects: collecting reads only its counters
    cluster = RedisCluster(connect(RedisTarget(url="redis://127.0.0.1:9/0")), node_id="n1")
    try:
        registry = CollectorRegistry()
        collector = ClusterCollector(cluster)
        registry.register(collector)
        families = {
            f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
        }
        health = {s.labels["state"]: s.value for s in families["zvonok_cluster_health"].samples}
        assert health == {"ok": 1.0, "degraded": 0.0, "reconciling": 0.0}
        assert families["zvonok_cluster_redis_errors"].samples[0].value == 0
        documented = set(re.findall(r"`(zvonok_[a-z_]+)`", (DOCS / "operations.md").read_text()))
        documented = {re.sub(r"_(total)$", "", name) for name in documented}
        assert set(families) <= documented, set(families) - documented
    finally:
        await cluster.client.aclose()


async def test_the_dead_nodes_this_node_reaped_are_a_counter() -> None:
    """``RedisNodeRegistry.reaped`` (its reap script removed a dead peer's key; counted against
    redis-server in tests/integration/cluster/test_signal_bus.py) is on ``/metrics``."""
    cluster = RedisCluster(connect(RedisTarget(url="redis://127.0.0.1:9/0")), node_id="n1")
    try:
        registry = CollectorRegistry()
        registry.register(ClusterCollector(cluster))
        assert registry.get_sample_value("zvonok_cluster_nodes_reaped_total") == 0
        cluster.registry.reaped = 2
        assert registry.get_sample_value("zvonok_cluster_nodes_reaped_total") == 2
        families = text_string_to_metric_families(generate_latest(registry).decode())
        assert {f.type for f in families if f.name == "zvonok_cluster_nodes_reaped"} == {"counter"}
    finally:
        await cluster.client.aclose()


async def test_scrapes_in_a_burst_count_the_nodes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = RedisCluster(connect(RedisTarget(url="redis://127.0.0.1:9/0")), node_id="n1")
    asked: list[float] = []

    async def nodes() -> list[str]:
        asked.append(time.monotonic())
        return ["n1", "n2"]

    monkeypatch.setattr(cluster.registry, "nodes", nodes)
    try:
        collector = ClusterCollector(cluster)
        for _ in range(20):  # a burst of scrapes: one Redis call
            await collector.refresh()
        assert len(asked) == 1 and collector.nodes_live == 2
        collector._counted_at = time.monotonic() - NODES_COUNT_TTL  # a TTL has passed
        await collector.refresh()
        assert len(asked) == 2
    finally:
        await cluster.client.aclose()
