"""Owner selection (shared design ``cluster.md`` §3): two random choices among live serving
nodes below 0.85, the edge itself when within 0.10, rooms placed since a heartbeat count, the
least loaded below 0.98 as a last resort, ``ClusterFull`` beyond."""

from __future__ import annotations

import random

import pytest

from zvonok.cluster.base import DRAINING, ClusterFull, NodeInfo
from zvonok.cluster.placement import choose_node


def nodes(**loads: float) -> list[NodeInfo]:
    return [NodeInfo(node_id=name, boot_id="b", load=load) for name, load in loads.items()]


def test_the_edge_keeps_the_room_when_close_enough() -> None:
    assert choose_node(nodes(a=0.3, b=0.25), "a", rng=random.Random(1)) == "a"


def test_the_better_of_two_when_the_edge_is_busier() -> None:
    picks = {choose_node(nodes(a=0.6, b=0.1, c=0.1), "a", rng=random.Random(s)) for s in range(20)}
    assert picks == {"b", "c"}


def test_two_choices_never_take_the_worse_of_a_pair() -> None:
    for seed in range(50):
        assert choose_node(nodes(b=0.1, c=0.5), "x", rng=random.Random(seed)) == "b"


def test_rooms_placed_since_a_heartbeat_count() -> None:
    assert choose_node(nodes(a=0.5, b=0.1), "a", placed={"b": 20}) == "a"


def test_draining_and_overloaded_nodes_are_skipped() -> None:
    infos = [NodeInfo("d", "b", state=DRAINING, load=0.0), *nodes(a=0.9, b=0.95)]
    assert choose_node(infos, "a") == "a"  # nothing below 0.85: the least loaded below 0.98
    with pytest.raises(ClusterFull):
        choose_node([NodeInfo("d", "b", state=DRAINING), *nodes(a=0.99)], "a")
    with pytest.raises(ClusterFull):
        choose_node([], "a")
