"""The single-node ``NodeRegistry``: itself only, and nowhere to go while draining."""

from __future__ import annotations

import pytest

from zvonok.cluster.base import DRAINING, ClusterFull, NodeRegistry
from zvonok.cluster.local_nodes import LocalNodeRegistry


async def test_the_local_registry_is_this_node() -> None:
    registry: NodeRegistry = LocalNodeRegistry("n1")
    assert await registry.pick() == "n1"
    (info,) = await registry.nodes()
    assert info.node_id == "n1" and len(info.boot_id) == 16


async def test_a_draining_single_node_has_nowhere_to_place_a_room() -> None:
    registry = LocalNodeRegistry()
    registry.state = DRAINING
    with pytest.raises(ClusterFull):
        await registry.pick()
