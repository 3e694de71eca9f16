"""Single-node implementations of the cluster interfaces: dictionaries in this process.

Also the test double for code written against ``cluster.base``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from ..ids import RoomKey, SessionId, UserId
from .base import SessionBinding

#: At most this many ended sessions' ids are kept reserved (the oldest are forgotten first).
MAX_LINGERING = 100_000


class LocalSessionDirectory:
    """Session bindings kept in a dict. An ended session's id lingers, reserved for its user, in
    a bounded table ordered by expiry (two flat dicts: no per-entry objects for the collector)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_lingering: int = MAX_LINGERING
    ) -> None:
        self._bindings: dict[SessionId, SessionBinding] = {}
        self._linger_until: OrderedDict[SessionId, float] = OrderedDict()
        self._linger_user: dict[SessionId, UserId] = {}
        self._clock = clock
        self._max_lingering = max_lingering

    async def bind(self, session_id: SessionId, binding: SessionBinding) -> SessionBinding:
        held = self._bindings.get(session_id)
        if held is not None:
            return held
        self._expire()
        owner = self._linger_user.get(session_id)
        if owner is not None:
            if owner != binding.user_id and self._linger_until[session_id] > self._clock():
                return SessionBinding(owner, binding.room)
            self._forget(session_id)
        self._bindings[session_id] = binding
        return binding

    async def release(
        self, session_id: SessionId, binding: SessionBinding, *, linger: float = 0.0
    ) -> None:
        if self._bindings.get(session_id) != binding:
            return
        del self._bindings[session_id]
        if linger > 0:
            self._expire()
            self._forget(session_id)
            self._linger_until[session_id] = self._clock() + linger
            self._linger_user[session_id] = binding.user_id
            while len(self._linger_until) > self._max_lingering:
                oldest, _ = self._linger_until.popitem(last=False)
                del self._linger_user[oldest]

    async def lookup(self, session_id: SessionId) -> SessionBinding | None:
        return self._bindings.get(session_id)

    def _forget(self, session_id: SessionId) -> None:
        if self._linger_until.pop(session_id, None) is not None:
            del self._linger_user[session_id]

    def _expire(self) -> None:
        now = self._clock()
        while self._linger_until:
            session_id, expiry = next(iter(self._linger_until.items()))
            if expiry > now:
                return
            self._forget(session_id)

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
