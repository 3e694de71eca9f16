"""Session bindings in Redis: ``sessionId`` → user, cluster-wide (shared design ``cluster.md``
§2 ``SessionDirectory``, §3 ``zv:sess:<sessionId>``; spec decisions: no hijacking).

The same semantics as ``cluster.local.LocalSessionDirectory`` (one contract test runs against
both): ``bind`` takes a free id (``SET NX``-like, in one script) and otherwise returns the binding
in force; ``release`` is a compare-and-delete, and with ``linger`` leaves the id reserved for the
same user for that long (the key's TTL does the expiry). A bound key has a TTL too (``ttl``,
the grace window + 30 s in production) so a crashed node's bindings go away; the directory
remembers what it bound and ``renew()`` extends (or, after Redis lost its data, rewrites) them in
one script per batch.

While Redis is unreachable (§4 "while degraded": a join or resume for a room this node owns is
served, its binding written at reconcile), ``bind`` answers from the node's own bindings for the
rooms ``serves_offline`` names: a free id is bound here and written by the next ``renew()``, an
id this node bound to another user stays theirs; for any other room it raises
``ClusterUnavailable``.

A join relayed between nodes binds on the edge (``bind_for_peer``, in the round trip of its lease
lookup; not remembered there) and the owner is told (``bound_by_peer``): its own ``bind`` of
exactly that binding then costs no round trip (issue 14 "Numbers": a relayed join at most 10 ms
slower than a direct one), and the binding is the owner's to renew and release from then on. The
owner trusts that note for ``PEER_BOUND_FOR`` at most (well inside the binding's TTL), for
``MAX_PEER_BOUND`` sessions at most.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from redis.asyncio import Redis

from ..ids import RoomKey, SessionId, UserId
from .base import ClusterUnavailable, SessionBinding
from .health import RedisClusterHealth
from .keys import Keys

log = logging.getLogger(__name__)

#: A bound key's TTL when none is given: ``resume_grace`` (30 s) + 30 s.
SESSION_TTL = 60.0
RENEW_BATCH = 500
#: How long a ``bound_by_peer`` note stands in for this node's own ``bind`` (at most a quarter of
#: the TTL), and how many such notes are kept at most (the oldest go first).
PEER_BOUND_FOR = 5.0
MAX_PEER_BOUND = 10_000

_BIND = """
local h = redis.call('HMGET', KEYS[1], 'user', 'room', 'state')
if h[1] then
  if h[3] == 'bound' then return {h[1], h[2]} end
  if h[1] ~= ARGV[1] then return {h[1], ARGV[2]} end
end
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'room', ARGV[2], 'state', 'bound')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {ARGV[1], ARGV[2]}
"""

_RELEASE = """
local h = redis.call('HMGET', KEYS[1], 'user', 'room', 'state')
if h[3] ~= 'bound' or h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('HSET', KEYS[1], 'state', 'lingering')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

_LOOKUP = """
local h = redis.call('HMGET', KEYS[1], 'user', 'room', 'state')
if h[3] ~= 'bound' then return {} end
return {h[1], h[2]}
"""

_RENEW = """
local lost = {}
for i = 1, #KEYS do
  local user, room = ARGV[2 * i], ARGV[2 * i + 1]
  local h = redis.call('HMGET', KEYS[i], 'user', 'room', 'state')
  if not h[1] or (h[3] ~= 'bound' and h[1] == user) then
    redis.call('HSET', KEYS[i], 'user', user, 'room', room, 'state', 'bound')
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  elseif h[3] == 'bound' and h[1] == user and h[2] == room then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  else
    lost[#lost + 1] = i
  end
end
return lost
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisSessionDirectory:
    """``SessionDirectory`` over ``zv:sess:*`` keys; every call goes through the breaker."""

    def __init__(
        self,
        client: Redis,
        health: RedisClusterHealth,
        *,
        keys: Keys | None = None,
        ttl: float = SESSION_TTL,
    ) -> None:
        self.keys = keys or Keys()
        self.ttl = ttl
        self._health = health
        self._bind = client.register_script(_BIND)
        self._release = client.register_script(_RELEASE)
        self._lookup = client.register_script(_LOOKUP)
        self._renew = client.register_script(_RENEW)
        #: The bindings this node made and still holds (renewed; rewritten after data loss).
        self._mine: dict[SessionId, SessionBinding] = {}
        #: Rooms whose joins are served while Redis is unreachable (the rooms this node owns).
        self.serves_offline: Callable[[RoomKey], bool] | None = None
        #: Bindings an edge node made for joins relayed here: session -> (binding, until when).
        self._peer_bound: dict[SessionId, tuple[SessionBinding, float]] = {}

    async def _bind_in_redis(
        self, session_id: SessionId, binding: SessionBinding
    ) -> SessionBinding:
        key = self.keys.session(session_id)
        args: list[str | int] = [binding.user_id, str(binding.room), _ms(self.ttl)]
        reply: list[Any] = await self._health.call(lambda: self._bind(keys=[key], args=args))
        return SessionBinding(UserId(str(reply[0])), RoomKey.parse(str(reply[1])))

    async def bind_for_peer(self, session_id: SessionId, binding: SessionBinding) -> SessionBinding:
        """``bind`` for a join that another node (the room's owner) serves: the binding in
        force, not remembered or renewed here (the owner does that once ``bound_by_peer`` told
        it); ``ClusterUnavailable`` while Redis is."""
        return await self._bind_in_redis(session_id, binding)

    def bound_by_peer(self, session_id: SessionId, binding: SessionBinding) -> None:
        """The edge of a join relayed here bound ``session_id`` to ``binding`` a moment ago:
        the next ``bind`` of exactly that binding takes it without a round trip."""
        now = time.monotonic()
        if len(self._peer_bound) >= MAX_PEER_BOUND:
            for stale in [s for s, (_, until) in self._peer_bound.items() if until < now]:
                del self._peer_bound[stale]
            while len(self._peer_bound) >= MAX_PEER_BOUND:
                del self._peer_bound[next(iter(self._peer_bound))]
        self._peer_bound.pop(session_id, None)  # re-inserted last: the oldest go first
        self._peer_bound[session_id] = (binding, now + min(PEER_BOUND_FOR, self.ttl / 4))

    async def bind(self, session_id: SessionId, binding: SessionBinding) -> SessionBinding:
        peer = self._peer_bound.pop(session_id, None)
        if peer is not None and peer[0] == binding and time.monotonic() <= peer[1]:
            self._mine[session_id] = binding
            return binding
        try:
            held = await self._bind_in_redis(session_id, binding)
        except ClusterUnavailable:
            offline = self.serves_offline
            if offline is None or not offline(binding.room):
                raise
            mine = self._mine.get(session_id)
            if mine is not None and mine.user_id != binding.user_id:
                return mine
            self._mine[session_id] = binding  # written by the next renew()
            return binding
        if held == binding:
            self._mine[session_id] = binding
        return held

    async def release(
        self, session_id: SessionId, binding: SessionBinding, *, linger: float = 0.0
    ) -> None:
        if self._mine.get(session_id) == binding:
            del self._mine[session_id]
        key = self.keys.session(session_id)
        args: list[str | int] = [
            binding.user_id,
            str(binding.room),
            _ms(linger) if linger > 0 else 0,
        ]
        try:
            await self._health.call(lambda: self._release(keys=[key], args=args))
        except ClusterUnavailable:
            log.info("session %s: release left to lapse (redis unreachable)", session_id)

    async def lookup(self, session_id: SessionId) -> SessionBinding | None:
        key = self.keys.session(session_id)
        reply: list[Any] = await self._health.call(lambda: self._lookup(keys=[key], args=[]))
        if not reply:
            return None
        return SessionBinding(UserId(str(reply[0])), RoomKey.parse(str(reply[1])))

    async def renew(self) -> list[SessionId]:
        """Extend this node's bindings (rewrite missing ones); forget and return the lost."""
        mine = list(self._mine.items())
        lost: list[SessionId] = []
        for start in range(0, len(mine), RENEW_BATCH):
            batch = mine[start : start + RENEW_BATCH]
            keys = [self.keys.session(session_id) for session_id, _ in batch]
            args: list[str | int] = [_ms(self.ttl)]
            for _, binding in batch:
                args += [binding.user_id, str(binding.room)]
            reply: list[Any] = await self._health.call(partial(self._renew, keys=keys, args=args))
            for index in reply:
                session_id, binding = batch[int(index) - 1]
                lost.append(session_id)
                if self._mine.get(session_id) == binding:
                    del self._mine[session_id]
        return lost

    def __len__(self) -> int:
        return len(self._mine)
