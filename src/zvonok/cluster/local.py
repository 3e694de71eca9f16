"""Single-node implementations of the cluster interfaces: dictionaries in this process.

Also the test double for code written against ``cluster.base``.
"""

from __future__ import annotations

from ..ids import RoomKey, SessionId
from .base import SessionBinding


class LocalSessionDirectory:
    """Session bindings kept in a dict; entries are released when sessions end."""

    def __init__(self) -> None:
        self._bindings: dict[SessionId, SessionBinding] = {}

    async def bind(self, session_id: SessionId, binding: SessionBinding) -> SessionBinding:
        return self._bindings.setdefault(session_id, binding)

    async def release(self, session_id: SessionId, binding: SessionBinding) -> None:
        if self._bindings.get(session_id) == binding:
            del self._bindings[session_id]

    async def lookup(self, session_id: SessionId) -> SessionBinding | None:
        return self._bindings.get(session_id)

    def __len__(self) -> int:
        return len(self._bindings)


class LocalRoomDirectory:
    """Every room belongs to this node."""

    def __init__(self, node_id: str = "local") -> None:
        self.node_id = node_id
        self._rooms: set[RoomKey] = set()

    async def claim(self, room: RoomKey) -> str:
        self._rooms.add(room)
        return self.node_id

    async def release(self, room: RoomKey) -> None:
        self._rooms.discard(room)

    def __len__(self) -> int:
        return len(self._rooms)


class LocalClusterHealth:
    """A single node is always healthy as far as the cluster goes."""

    @property
    def status(self) -> str:
        return "ok"
