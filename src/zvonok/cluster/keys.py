"""Redis key names of the cluster (shared design ``cluster.md`` §3, the key table).

One place builds every name, so the Lua scripts and the Python side cannot disagree. ``prefix``
is ``zv:`` in production; tests may give another to share one server. Imports nothing of zvonok
but ``ids``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ids import RoomKey, SessionId

PREFIX = "zv:"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = PREFIX

    def room(self, room: RoomKey) -> str:
        """``zv:room:<kind>:<id>``: hash owner, boot, epoch (a lease, §3)."""
        return f"{self.prefix}room:{room}"

    def node(self, node_id: str) -> str:
        """``zv:node:<node>``: the heartbeat hash (boot_id, state, load, addresses, ...)."""
        return f"{self.prefix}node:{node_id}"

    @property
    def node_prefix(self) -> str:
        """What the Lua scripts prepend to an owner's id to find its node key."""
        return f"{self.prefix}node:"

    @property
    def nodes(self) -> str:
        """``zv:nodes``: zset node → heartbeat expiry (Redis clock, ms)."""
        return f"{self.prefix}nodes"

    @property
    def epoch(self) -> str:
        """``zv:epoch``: the claim counter."""
        return f"{self.prefix}epoch"

    @property
    def gen(self) -> str:
        """``zv:gen``: a random id set once (``SET NX``); a change means Redis lost its data."""
        return f"{self.prefix}gen"

    def session(self, session_id: SessionId) -> str:
        """``zv:sess:<sessionId>``: hash user, room, state (bound / lingering)."""
        return f"{self.prefix}sess:{session_id}"

    def signal(self, node_id: str) -> str:
        """``zv:sig:<node>``: the pub/sub channel of a node's SignalBus (§3 "SignalBus frames")."""
        return f"{self.prefix}sig:{node_id}"

    @property
    def events(self) -> str:
        """``zv:events``: the stream of webhook events (consumer group ``webhooks``)."""
        return f"{self.prefix}events"

    def event_id(self, event_id: str) -> str:
        """``zv:evid:<id>``: set while an event id was appended lately (a re-sent batch after a
        lost reply is not appended twice)."""
        return f"{self.prefix}evid:{event_id}"
