"""Cluster interfaces (see shared design ``cluster.md`` §2), as narrow Protocols.

Single-node mode wires ``cluster.local``; ``cluster.redis_*`` implement the same Protocols over
Redis (``cluster.node.RedisCluster`` builds them together). The lease and membership values of
§3 (``RoomLease``, ``Claimed``/``Owned``, ``NodeInfo``) and the errors a join can meet while the
cluster is unreachable (§4) live here too. Nothing here imports rooms, signaling or media.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import SignalError
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


# --- §3: room leases -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomLease:
    """A room record: its owner node, the owner's ``boot_id`` and the claim's epoch. ``valid`` is
    whether it counts (§3 "Validity": the owner's node key exists with the same ``boot_id``)."""

    owner: str
    boot_id: str
    epoch: int
    valid: bool = True


@dataclass(frozen=True, slots=True)
class Claimed:
    """``claim`` won: the caller owns the room under ``epoch`` (the fencing token, §4)."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Owned:
    """``claim`` lost: ``owner`` holds a valid lease under ``epoch``; send the join there."""

    owner: str
    epoch: int


ClaimResult = Claimed | Owned


# --- §3: node membership ---------------------------------------------------------------------

#: Node states (§4 "Graceful drain"): ``serving`` takes new rooms, ``draining`` does not.
SERVING = "serving"
DRAINING = "draining"
NODE_STATES = (SERVING, DRAINING)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node's heartbeat record: who it is, since which process start, how busy, where."""

    node_id: str
    boot_id: str
    state: str = SERVING
    #: 0-1, that of the node's least-loaded worker (§3 "Owner selection").
    load: float = 0.0
    #: Media addresses (``host:port``) clients reach the node's workers on.
    addresses: tuple[str, ...] = field(default_factory=tuple)
    #: Rooms and sessions the node hosts (for ``cluster status``).
    rooms: int = 0
    sessions: int = 0
    #: When Redis wrote this heartbeat (its clock, ms since the epoch).
    updated_ms: int = 0


class NodeRegistry(Protocol):
    """Membership: heartbeats, the live nodes, and where a new room should go (§2, §3)."""

    @property
    def node_id(self) -> str: ...

    async def nodes(self) -> Sequence[NodeInfo]:
        """The live nodes (key present: heartbeat not expired and not reaped by a peer check), this
        one included."""
        ...

    async def pick(self) -> str:
        """The node a new room should be placed on; raises ``ClusterFull`` when none has room."""
        ...

    def set_state(self, state: str) -> None:
        """``serving`` or ``draining`` (§4 "Graceful drain": ``pick`` skips a draining node);
        the next heartbeat publishes it."""
        ...


# --- §4: errors a join can meet --------------------------------------------------------------


class ClusterUnavailable(Exception):
    """Redis cannot be reached (or the breaker is open, §4): ``cluster-unavailable`` to the
    client, who retries after ``retry_after`` seconds."""

    def __init__(self, reason: str, *, retry_after: float = 2.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after

    def refusal(self) -> SignalError:
        """What the joining client is told: ``cluster-unavailable``, ``retryAfterMs``, close
        1013 ("try again later", RFC 6455 §7.4.1 registry)."""
        return SignalError(
            "cluster-unavailable",
            f"the cluster cannot place this call now ({self}); try again",
            fatal=True,
            close_code=1013,
            retry_after_ms=max(int(self.retry_after * 1000), 100),
        )


class ClusterFull(Exception):
    """No live, serving node is below the load ceiling (§3 "Owner selection")."""
