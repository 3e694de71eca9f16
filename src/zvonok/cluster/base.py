"""Cluster interfaces (see shared design ``cluster.md`` §2), as narrow Protocols.

Single-node mode wires ``cluster.local``; a Redis implementation of the same Protocols comes
with multi-node support. Nothing here imports rooms, signaling or media.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..ids import RoomKey, SessionId, UserId


@dataclass(frozen=True, slots=True)
class SessionBinding:
    """Who owns a session id, and in which room it lives."""

    user_id: UserId
    room: RoomKey


class SessionDirectory(Protocol):
    """sessionId → user binding, cluster-wide: nobody can take over another user's session."""

    async def bind(self, session_id: SessionId, binding: SessionBinding) -> SessionBinding:
        """Bind the id if free and return the binding now in force (maybe someone else's)."""
        ...

    async def release(
        self, session_id: SessionId, binding: SessionBinding, *, linger: float = 0.0
    ) -> None:
        """End the binding if it is still ``binding`` (compare-and-delete). With ``linger`` the id
        stays reserved for the same user (any room) for that many seconds: others get the old
        binding back from ``bind``, the same user binds it again."""
        ...

    async def lookup(self, session_id: SessionId) -> SessionBinding | None: ...


class RoomDirectory(Protocol):
    """room → owning node lease (trivially this node in single-node mode)."""

    async def claim(self, room: RoomKey) -> str:
        """Claim the room for this node, or return the node that owns it."""
        ...

    async def release(self, room: RoomKey) -> None: ...


class ClusterHealth(Protocol):
    """``ok`` / ``degraded`` / ``reconciling``; single node is always ``ok``."""

    @property
    def status(self) -> str: ...
