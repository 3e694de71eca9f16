"""Room leases in Redis: the atomic claim with epoch, batch renewal, compare-and-delete release.

Shared design ``cluster.md`` §3 ("Keys", "Validity", "Atomic claim (Lua)") and §4 ("Split-brain
of a claim, and fencing"). ``RoomLeases`` is the stateless Lua layer over ``zv:room:<kind>:<id>``
hashes (owner, boot, epoch) and the ``zv:epoch`` counter, for any (node, boot_id):

- ``claim(room, node, boot, seen_epoch)``: a valid record (its owner's ``zv:node:<owner>`` exists
  with the record's boot_id) is ``Owned(owner, epoch)``; otherwise the caller writes the record
  with epoch = max(``INCR zv:epoch``, seen_epoch + 1, stale record's epoch + 1) → ``Claimed``.
  The caller must itself be registered under ``boot`` (``NotRegistered`` otherwise): a node whose
  heartbeat lapsed cannot take rooms.
- ``renew(node, boot, {room: epoch})``: one script per batch extends the records still (node,
  boot, epoch), recreates missing ones (Redis restarted empty, or the lease lapsed unclaimed) and
  returns the rooms lost to someone else.
- ``release``: delete only if still (node, boot, epoch).

``RedisRoomDirectory`` is one node's view: the ``RoomDirectory`` Protocol of ``cluster.base``
(``claim(room) -> owner``) plus the leases it holds, for renewal and reconcile. Scripts read the
owner's node key by name (not in ``KEYS``): fine on one Redis master, which §1 chooses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.asyncio import Redis

from ..ids import RoomKey
from .base import Claimed, ClaimResult, ClusterUnavailable, Owned, RoomLease
from .health import RedisClusterHealth
from .keys import Keys

log = logging.getLogger(__name__)

#: §3: a lease lives 30 s and is renewed every 10 s.
LEASE_TTL = 30.0
RENEW_INTERVAL = 10.0
#: Rooms per renew script: bounds how long one script holds Redis.
RENEW_BATCH = 500

_CLAIM = """
local mine = redis.call('HGET', KEYS[3], 'boot_id')
if mine ~= ARGV[2] then return {'unregistered'} end
local rec = redis.call('HMGET', KEYS[1], 'owner', 'boot', 'epoch')
local floor = tonumber(ARGV[3]) + 1
if rec[1] then
  if rec[1] == ARGV[1] and rec[2] == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return {'claimed', rec[1], rec[3]}
  end
  local live = redis.call('HGET', ARGV[5] .. rec[1], 'boot_id')
  if live and live == rec[2] then return {'owned', rec[1], rec[3]} end
  local stale = (tonumber(rec[3]) or 0) + 1
  if stale > floor then floor = stale end
end
local epoch = redis.call('INCR', KEYS[2])
if epoch < floor then
  epoch = floor
  redis.call('SET', KEYS[2], epoch)
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'boot', ARGV[2], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'claimed', ARGV[1], tostring(epoch)}
"""

_LOOKUP = """
local rec = redis.call('HMGET', KEYS[1], 'owner', 'boot', 'epoch')
if not rec[1] then return {} end
local live = redis.call('HGET', ARGV[1] .. rec[1], 'boot_id')
local valid = '0'
if live and live == rec[2] then valid = '1' end
return {rec[1], rec[2], rec[3], valid}
"""

_RENEW = """
local lost = {}
local top = tonumber(redis.call('GET', KEYS[1]) or '0')
for i = 2, #KEYS do
  local epoch = ARGV[i + 2]
  local rec = redis.call('HMGET', KEYS[i], 'owner', 'boot', 'epoch')
  if not rec[1] then
    redis.call('HSET', KEYS[i], 'owner', ARGV[1], 'boot', ARGV[2], 'epoch', epoch)
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
    if tonumber(epoch) > top then
      top = tonumber(epoch)
      redis.call('SET', KEYS[1], epoch)
    end
  elseif rec[1] == ARGV[1] and rec[2] == ARGV[2] and rec[3] == epoch then
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  else
    lost[#lost + 1] = i - 1
  end
end
return lost
"""

_RELEASE = """
local rec = redis.call('HMGET', KEYS[1], 'owner', 'boot', 'epoch')
if rec[1] == ARGV[1] and rec[2] == ARGV[2] and rec[3] == ARGV[3] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class NotRegistered(ClusterUnavailable):
    """The claiming node's own heartbeat key is missing or names another boot."""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RoomLeases:
    """The Lua scripts over room records; no state of its own."""

    def __init__(self, client: Redis, *, keys: Keys | None = None, ttl: float = LEASE_TTL) -> None:
        self._client = client
        self.keys = keys or Keys()
        self.ttl = ttl
        self._claim = client.register_script(_CLAIM)
        self._lookup = client.register_script(_LOOKUP)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def claim(self, room: RoomKey, node: str, boot: str, seen_epoch: int = 0) -> ClaimResult:
        keys = [self.keys.room(room), self.keys.epoch, self.keys.node(node)]
        args: list[str | int] = [node, boot, seen_epoch, _ms(self.ttl), self.keys.node_prefix]
        reply: list[Any] = await self._claim(keys=keys, args=args)
        if reply[0] == "unregistered":
            raise NotRegistered(f"node {node} is not registered under this boot_id")
        if reply[0] == "owned":
            return Owned(str(reply[1]), int(reply[2]))
        return Claimed(int(reply[2]))

    async def lookup(self, room: RoomKey) -> RoomLease | None:
        """The record, valid or stale (a stale one's epoch is the next claim's ``seen_epoch``)."""
        reply: list[Any] = await self._lookup(
            keys=[self.keys.room(room)], args=[self.keys.node_prefix]
        )
        if not reply:
            return None
        return RoomLease(str(reply[0]), str(reply[1]), int(reply[2]), valid=reply[3] == "1")

    async def renew(self, node: str, boot: str, leases: Mapping[RoomKey, int]) -> list[RoomKey]:
        """Extend (or recreate) ``node``'s leases in batches; the rooms it no longer owns."""
        lost: list[RoomKey] = []
        rooms = list(leases)
        for start in range(0, len(rooms), RENEW_BATCH):
            batch = rooms[start : start + RENEW_BATCH]
            keys = [self.keys.epoch, *(self.keys.room(room) for room in batch)]
            args: list[str | int] = [node, boot, _ms(self.ttl), *(leases[room] for room in batch)]
            reply: list[Any] = await self._renew(keys=keys, args=args)
            lost.extend(batch[int(index) - 1] for index in reply)
        return lost

    async def release(self, room: RoomKey, node: str, boot: str, epoch: int) -> bool:
        """Delete the record if it is still (node, boot, epoch); whether it was."""
        reply = await self._release(keys=[self.keys.room(room)], args=[node, boot, epoch])
        return bool(reply)


class RedisRoomDirectory:
    """One node's room leases: ``RoomDirectory`` (``claim`` returns the owner's node id) plus the
    epochs it holds, their renewal and the hold-off after Redis lost its data (§4 "Reconcile")."""

    def __init__(
        self,
        leases: RoomLeases,
        health: RedisClusterHealth,
        *,
        node_id: str,
        boot_id: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.node_id = node_id
        self.boot_id = boot_id
        self._health = health
        self._clock = clock
        self._held: dict[RoomKey, int] = {}
        self._hold_until = 0.0

    @property
    def held(self) -> Mapping[RoomKey, int]:
        """Rooms this node owns → their epoch."""
        return self._held

    @property
    def holding(self) -> bool:
        """Claims of rooms not held are held off now (Redis lost its data a moment ago)."""
        return self._clock() < self._hold_until

    def hold_claims(self, seconds: float) -> None:
        """Refuse claims of rooms this node does not hold for ``seconds`` (after ``zv:gen``
        changed, so the owners re-assert first)."""
        self._hold_until = max(self._hold_until, self._clock() + seconds)

    async def claim(self, room: RoomKey) -> str:
        """``RoomDirectory.claim``: this node's id if it owns the room now, else the owner's."""
        result = await self.claim_lease(room)
        return self.node_id if isinstance(result, Claimed) else result.owner

    async def claim_lease(self, room: RoomKey, seen_epoch: int = 0) -> ClaimResult:
        """Claim ``room`` for this node (§3); ``ClusterUnavailable`` while Redis is not."""
        if room not in self._held:
            wait = self._hold_until - self._clock()
            if wait > 0:
                raise ClusterUnavailable("cluster reconciling", retry_after=wait)
        seen = max(seen_epoch, self._held.get(room, 0))
        result = await self._health.call(
            lambda: self.leases.claim(room, self.node_id, self.boot_id, seen)
        )
        if isinstance(result, Claimed):
            self._held[room] = result.epoch
        else:
            self._held.pop(room, None)
        return result

    async def lookup(self, room: RoomKey) -> RoomLease | None:
        return await self._health.call(lambda: self.leases.lookup(room))

    async def release(self, room: RoomKey) -> None:
        """Give the room up. If Redis is unreachable the lease just lapses (``LEASE_TTL``): it
        is no longer renewed."""
        epoch = self._held.pop(room, None)
        if epoch is None:
            return
        try:
            await self._health.call(
                lambda: self.leases.release(room, self.node_id, self.boot_id, epoch)
            )
        except ClusterUnavailable:
            log.info("room %s: release left to lapse (redis unreachable)", room)

    async def renew(self) -> list[RoomKey]:
        """Renew every held lease (recreating missing ones); forget and return the lost."""
        held = dict(self._held)
        if not held:
            return []
        lost = await self._health.call(lambda: self.leases.renew(self.node_id, self.boot_id, held))
        for room in lost:
            if self._held.get(room) == held[room]:
                del self._held[room]
        return lost

    def rooms(self) -> Iterable[RoomKey]:
        return list(self._held)

    def __len__(self) -> int:
        return len(self._held)
