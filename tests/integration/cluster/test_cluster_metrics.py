"""The relay counters of ``/metrics`` in a Redis cluster (issue 14): two real ``zvonok serve``
nodes on one real ``redis-server``; alice joins a room through node0, bob through node1, so one
of the two joins is relayed to the room's owner. The edge counts a relayed join and session, the
owner a served one; the edge times the relayed join's legs (the lease lookup, the request, the
bus hops) and the owner its side of it; the signal bus counts frames both ways on one open link;
a leave brings the session gauges back to 0. The counters of reaped nodes and skipped lease
look-aheads are on both nodes' ``/metrics`` at 0, and every ``zvonok_cluster_*`` family the
Grafana dashboard's cluster panels name is on a node's ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from ..harness.redis import RedisServer
from ..harness.server import ServerFactory, ZvonokServer
from ..test_signaling import client
from .test_cluster_calls import start_nodes

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

DOCS = Path(__file__).parents[3] / "docs"


async def scrape(server: ZvonokServer) -> dict[str, float]:
    """The ``zvonok_cluster_relay_*`` / ``zvonok_cluster_bus_*`` / ``zvonok_cluster_nodes_reaped``
    samples, by name and labels."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(server.http_url + "/metrics")).text
    pattern = r"^(zvonok_cluster_(?:relay_|bus_|nodes_reaped)\S+) (\S+)$"
    samples = re.findall(pattern, text, re.MULTILINE)
    return {name: float(value) for name, value in samples}


def _family(name: str) -> str:
    return re.sub(r"_(bucket|count|sum|total)$", "", name)


async def test_a_relayed_join_moves_the_relay_counters(
    zvonok_server_factory: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    nodes = start_nodes(
        zvonok_server_factory, redis_server, tmp_path / "shared", 2, ZVONOK_WORKERS="1"
    )
    group = nodes[0].create_group(["alice", "bob"])
    before = [await scrape(node) for node in nodes]
    # the dashboard's cluster panels name only families a cluster node exposes
    async with httpx.AsyncClient(timeout=10) as http:
        exposition = (await http.get(nodes[0].http_url + "/metrics")).text
    exposed = {_family(n) for n in re.findall(r"^(zvonok_cluster_[a-z_]+)", exposition, re.M)}
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    panels = {_family(m) for e in exprs for m in re.findall(r"zvonok_cluster_[a-z_]+", e)}
    assert len(panels) >= 10 and panels <= exposed, panels - exposed
    for sample in before:
        assert sample['zvonok_cluster_relay_joins_total{direction="relayed"}'] == 0
        assert sample['zvonok_cluster_relay_sessions{direction="served"}'] == 0
        assert 'zvonok_cluster_bus_frames_total{direction="out"}' in sample
        assert "zvonok_cluster_bus_links" in sample
        assert sample["zvonok_cluster_nodes_reaped_total"] == 0  # both nodes live
        assert sample["zvonok_cluster_relay_look_ahead_skipped_total"] == 0
    async with (
        client(nodes[0], "alice", group, kind="group") as alice,
        client(nodes[1], "bob", group, kind="group") as bob,
    ):
        await alice.join()
        await bob.join()
        during = [await scrape(node) for node in nodes]
        relayed = [s['zvonok_cluster_relay_joins_total{direction="relayed"}'] for s in during]
        served = [s['zvonok_cluster_relay_joins_total{direction="served"}'] for s in during]
        assert sorted(relayed) == [0, 1] and sorted(served) == [0, 1], during
        edge = relayed.index(1)
        owner = 1 - edge
        assert served[owner] == 1
        assert during[edge]['zvonok_cluster_relay_sessions{direction="relayed"}'] == 1
        assert during[owner]['zvonok_cluster_relay_sessions{direction="served"}'] == 1
        legs = 'zvonok_cluster_relay_leg_seconds_count{leg="%s"}'
        assert during[edge][legs % "request"] == during[edge][legs % "bus"] == 1, during
        assert during[owner][legs % "serve"] == 1 and during[owner][legs % "request"] == 0
        assert during[edge][legs % "locate"] == 1  # the lease lookup (or placement) in Redis
        for sample in during:
            assert sample["zvonok_cluster_bus_links"] == 1
            assert sample['zvonok_cluster_bus_frames_total{direction="out"}'] > 0
            assert sample['zvonok_cluster_bus_frames_total{direction="in"}'] > 0
        await (alice if edge == 0 else bob).send("leave")

        deadline = time.monotonic() + 10
        while (await scrape(nodes[owner]))['zvonok_cluster_relay_sessions{direction="served"}']:
            assert time.monotonic() < deadline, "the served session stayed"
            await asyncio.sleep(0.1)
    assert (await scrape(nodes[edge]))['zvonok_cluster_relay_sessions{direction="relayed"}'] == 0
