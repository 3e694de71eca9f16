"""Where a new room goes: the two-choice pick of shared design ``cluster.md`` §3 "Owner
selection" (LiveKit's ``twochoice`` selector; jicofo's participant ramp-up).

A pure function over heartbeat records, so it is tested without Redis: keep the live, serving
nodes below ``CEILING`` (their load plus ``RAMP`` per room already placed on them since their last
heartbeat), take the better of two random ones, and prefer this node when it is within
``SELF_MARGIN`` of that. With none below the ceiling, the least loaded below ``HARD_CEILING``;
with none at all, ``ClusterFull``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Final

from .base import SERVING, ClusterFull, NodeInfo

#: Forwarded packets per second one media worker (or a one-process node) is taken to carry at
#: full load: a node's and a worker's load score (``cluster_node``, ``relay.front``).
PPS_CAPACITY: Final = 150_000.0
#: Sessions one media worker (or a one-process node) is taken to carry at full load.
SESSION_CAPACITY: Final = 2_000.0

CEILING = 0.85
HARD_CEILING = 0.98
SELF_MARGIN = 0.10
#: Load a freshly placed room is assumed to add until the node's next heartbeat shows it.
RAMP = 0.02


def choose_node(
    nodes: Sequence[NodeInfo],
    me: str,
    *,
    placed: Mapping[str, int] | None = None,
    rng: random.Random | None = None,
) -> str:
    """The node a new room should be claimed on. ``placed``: rooms sent to each node since its
    last heartbeat."""
    pick = rng or random
    extra = placed or {}
    loads = {
        node.node_id: node.load + RAMP * extra.get(node.node_id, 0)
        for node in nodes
        if node.state == SERVING
    }
    below = sorted(node for node, load in loads.items() if load < CEILING)
    if below:
        pair = pick.sample(below, 2) if len(below) >= 2 else below
        best = min(pair, key=lambda node: loads[node])
        if me in below and loads[me] <= loads[best] + SELF_MARGIN:
            return me
        return best
    fallback = [node for node, load in loads.items() if load < HARD_CEILING]
    if fallback:
        return min(fallback, key=lambda node: loads[node])
    raise ClusterFull("no serving node has room for a new call")
