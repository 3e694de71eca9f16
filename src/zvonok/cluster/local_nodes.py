"""``LocalNodeRegistry``: the ``NodeRegistry`` of single-node mode (shared design ``cluster.md``
§2: "self only"). Every room goes to this node while it is serving; a draining node alone has
nowhere to put one (``ClusterFull``). No Redis, no tasks.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from .base import DRAINING, NODE_STATES, SERVING, ClusterFull, NodeInfo


class LocalNodeRegistry:
    """This node only; ``state``/``load``/``rooms``/``sessions`` are set by its owner."""

    def __init__(self, node_id: str = "local") -> None:
        self._node_id = node_id
        self.boot_id = secrets.token_hex(8)
        self.state = SERVING
        self.load = 0.0
        self.addresses: tuple[str, ...] = ()
        self.rooms = 0
        self.sessions = 0

    @property
    def node_id(self) -> str:
        return self._node_id

    async def nodes(self) -> Sequence[NodeInfo]:
        return [
            NodeInfo(
                node_id=self._node_id,
                boot_id=self.boot_id,
                state=self.state,
                load=self.load,
                addresses=self.addresses,
                rooms=self.rooms,
                sessions=self.sessions,
            )
        ]

    def set_state(self, state: str) -> None:
        """``serving`` or ``draining``; a draining node is not picked for new rooms."""
        if state not in NODE_STATES:
            raise ValueError(f"unknown node state {state!r}")
        self.state = state

    @property
    def draining(self) -> bool:
        return self.state == DRAINING

    async def pick(self) -> str:
        if self.state != SERVING:
            raise ClusterFull("this node is draining and there is no other")
        return self._node_id
