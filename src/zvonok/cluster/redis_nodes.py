"""Node membership in Redis: heartbeats, the live nodes, placement, and the data generation.

Shared design ``cluster.md`` §3 ("Keys": ``zv:node:<node>``, ``zv:nodes``, ``zv:gen``; "Owner
selection") and §4 ("Node crash", "Reconcile"). A heartbeat is one script: it writes the node's
hash (boot_id, state, load, addresses, rooms, sessions, updated_ms) with a 6 s TTL, its expiry
(Redis's clock) into the ``zv:nodes`` zset, and reads ``zv:gen``, setting it if missing
(``SET NX`` semantics). A generation different from the one seen before means Redis lost its
data (restarted empty, or flushed): ``heartbeat()`` reports it and the node re-asserts.

``register()`` overwrites a record with another ``boot_id`` (this node restarted after a crash:
the old process's rooms stop counting at once); a later ``heartbeat()`` that finds another
``boot_id`` does not overwrite it and raises ``NodeIdConflict`` (two live processes configured
with one ``node_id``).

It is also the SignalBus's view of its peers (``cluster.peers.Peers``, issue 14 "Node killed"):
``sight()`` reads, in one script (one round trip, one instant), each peer's ``boot_id`` and
heartbeat age (``updated_ms`` against Redis's ``TIME``) and the subscribers of its channel
``zv:sig:<node>`` (``PUBSUB NUMSUB``), and answers None while it cannot tell (``zv:gen`` is not
the generation this node's heartbeat saw last, or ``unsure()``: claims are held off after one);
``reap()`` confirms a dead peer atomically (same boot, no subscriber, heartbeat stale, same
generation) and removes its node key and its ``zv:nodes`` entry, so its leases stop counting
and ``pick()`` skips it for every node at once instead of after the key's TTL.
"""

from __future__ import annotations

import json
import math
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from .base import DRAINING, NODE_STATES, SERVING, NodeInfo
from .health import RedisClusterHealth
from .keys import Keys
from .peers import Sighting
from .placement import choose_node

#: §3: a node key lives 6 s and is refreshed every 2 s.
NODE_TTL = 6.0
HEARTBEAT_INTERVAL = 2.0

_HEARTBEAT = """
local cur = redis.call('HGET', KEYS[1], 'boot_id')
if cur and cur ~= ARGV[2] and ARGV[4] == '0' then return {'conflict', cur} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'boot_id', ARGV[2], 'updated_ms', now, unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local gen = redis.call('GET', KEYS[3])
if not gen then
  redis.call('SET', KEYS[3], ARGV[5])
  gen = ARGV[5]
end
return {'ok', gen}
"""

_NODES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HGETALL', ARGV[1] .. id)
  if #h > 0 then
    out[#out + 1] = id
    out[#out + 1] = h
  end
end
return out
"""

_DEREGISTER = """
if redis.call('HGET', KEYS[1], 'boot_id') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


# KEYS: zv:gen, then the peers' node keys; ARGV: the peers' channels, in the same order.
# Returns the generation, Redis's time (ms), then per peer: boot_id, updated_ms, subscribers.
_SIGHT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {redis.call('GET', KEYS[1]) or '', now}
local subs = redis.call('PUBSUB', 'NUMSUB', unpack(ARGV))
for i = 2, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'boot_id', 'updated_ms')
  out[#out + 1] = h[1] or ''
  out[#out + 1] = h[2] or ''
  out[#out + 1] = subs[2 * (i - 1)]
end
return out
"""

# KEYS: the peer's node key, zv:nodes, zv:gen; ARGV: node id, boot_id, stale ms, its channel,
# the generation this node saw. 'unknown': Redis lost its data since; 'gone': no key of that
# boot; 'alive': a fresh heartbeat or a subscriber; 'reaped': dead, and its key removed.
_REAP = """
if redis.call('GET', KEYS[3]) ~= ARGV[5] then return 'unknown' end
local h = redis.call('HMGET', KEYS[1], 'boot_id', 'updated_ms')
if h[1] ~= ARGV[2] then return 'gone' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - (tonumber(h[2]) or 0) <= tonumber(ARGV[3]) then return 'alive' end
if redis.call('PUBSUB', 'NUMSUB', ARGV[4])[2] > 0 then return 'alive' end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 'reaped'
"""


class NodeIdConflict(Exception):
    """Another live process heartbeats under this ``node_id`` with another ``boot_id``."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What a heartbeat learned: the data generation, and whether it changed since the last."""

    generation: str
    generation_changed: bool


def new_boot_id() -> str:
    """A random id for this process start (§3 ``boot_id``)."""
    return secrets.token_hex(8)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _node_info(node_id: str, flat: list[Any]) -> NodeInfo:
    fields = {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
    try:
        addresses = tuple(str(a) for a in json.loads(fields.get("addresses", "[]")))
    except (ValueError, TypeError):
        addresses = ()

    def number(name: str) -> float:
        try:
            return float(fields.get(name, "0"))
        except ValueError:
            return 0.0

    return NodeInfo(
        node_id=node_id,
        boot_id=fields.get("boot_id", ""),
        state=fields.get("state", SERVING),
        load=number("load"),
        addresses=addresses,
        rooms=int(number("rooms")),
        sessions=int(number("sessions")),
        updated_ms=int(number("updated_ms")),
    )


class RedisNodeRegistry:
    """This node's heartbeat and the cluster's membership (the ``NodeRegistry`` of §2)."""

    def __init__(
        self,
        client: Redis,
        health: RedisClusterHealth,
        *,
        node_id: str,
        boot_id: str | None = None,
        keys: Keys | None = None,
        ttl: float = NODE_TTL,
        rng: random.Random | None = None,
    ) -> None:
        self._node_id = node_id
        self.boot_id = boot_id or new_boot_id()
        self.keys = keys or Keys()
        self.ttl = ttl
        self._health = health
        self._rng = rng or random.Random()
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._nodes = client.register_script(_NODES)
        self._deregister = client.register_script(_DEREGISTER)
        self._sight = client.register_script(_SIGHT)
        self._reap = client.register_script(_REAP)
        #: True while peers cannot be judged although the generation is known (``RedisCluster``
        #: wires its claim hold-off after a generation change here).
        self.unsure: Callable[[], bool] = lambda: False
        #: Dead peers whose key this node removed (``reap``), for metrics and logs.
        self.reaped = 0
        #: What the next heartbeat publishes.
        self.state = SERVING
        self.load = 0.0
        self.addresses: tuple[str, ...] = ()
        self.rooms = 0
        self.sessions = 0
        #: The data generation seen last (None before the first heartbeat).
        self.generation: str | None = None
        #: Rooms placed on each node since that node's heartbeat we last saw (§3 ramp-up).
        self._placed: dict[str, tuple[int, int]] = {}

    @property
    def node_id(self) -> str:
        return self._node_id

    async def register(self) -> Heartbeat:
        """The first heartbeat of this process: replaces a record of an earlier boot."""
        return await self._beat(force=True)

    async def heartbeat(self) -> Heartbeat:
        """Refresh this node's record; ``NodeIdConflict`` if another process took the id."""
        return await self._beat(force=False)

    async def _beat(self, *, force: bool) -> Heartbeat:
        candidate = secrets.token_hex(8)
        args: list[str | int | float] = [
            self._node_id,
            self.boot_id,
            round(self.ttl * 1000),
            "1" if force else "0",
            candidate,
            "state",
            self.state,
            "load",
            f"{self.load:.4f}",
            "addresses",
            json.dumps(list(self.addresses)),
            "rooms",
            self.rooms,
            "sessions",
            self.sessions,
        ]
        keys = [self.keys.node(self._node_id), self.keys.nodes, self.keys.gen]
        reply: list[Any] = await self._health.call(lambda: self._heartbeat(keys=keys, args=args))
        if reply[0] == "conflict":
            raise NodeIdConflict(
                f"node_id {self._node_id} is in use by another process (boot {reply[1]})"
            )
        self._health.heartbeat_ok()
        generation = str(reply[1])
        changed = self.generation is not None and generation != self.generation
        self.generation = generation
        return Heartbeat(generation, changed)

    async def deregister(self) -> None:
        """Remove this node's record (if still this boot's): it takes no more rooms."""
        keys = [self.keys.node(self._node_id), self.keys.nodes]
        args = [self._node_id, self.boot_id]
        await self._health.call(lambda: self._deregister(keys=keys, args=args))

    async def nodes(self) -> Sequence[NodeInfo]:
        reply: list[Any] = await self._health.call(
            lambda: self._nodes(keys=[self.keys.nodes], args=[self.keys.node_prefix])
        )
        return [_node_info(str(reply[i]), reply[i + 1]) for i in range(0, len(reply) - 1, 2)]

    async def sight(self, peers: Sequence[str]) -> Mapping[str, Sighting] | None:
        """``cluster.peers.Peers.sight``: the peers in one script (see module)."""
        if not peers:
            return {}
        keys = [self.keys.gen, *(self.keys.node(peer) for peer in peers)]
        channels = [self.keys.signal(peer) for peer in peers]
        reply: list[Any] = await self._health.call(lambda: self._sight(keys=keys, args=channels))
        if self.generation is None or _text(reply[0]) != self.generation or self.unsure():
            return None
        now = int(reply[1])
        seen: dict[str, Sighting] = {}
        for i, peer in enumerate(peers):
            boot, updated, subscribers = reply[2 + 3 * i : 5 + 3 * i]
            boot_id = _text(boot)
            try:
                age = max(0.0, (now - int(updated)) / 1000) if boot_id else math.inf
            except ValueError:  # a record without updated_ms: as old as it can be
                age = math.inf
            seen[peer] = Sighting(boot_id or None, age, int(subscribers))
        return seen

    async def reap(self, peer: str, boot_id: str, stale_after: float) -> bool:
        """``cluster.peers.Peers.reap``: True when ``peer`` (``boot_id``) is dead (see module)."""
        if self.generation is None:
            return False
        keys = [self.keys.node(peer), self.keys.nodes, self.keys.gen]
        args: list[str | int] = [
            peer,
            boot_id,
            round(stale_after * 1000),
            self.keys.signal(peer),
            self.generation,
        ]
        answer = _text(await self._health.call(lambda: self._reap(keys=keys, args=args)))
        if answer == "reaped":
            self.reaped += 1
        return answer in ("reaped", "gone")

    def set_state(self, state: str) -> None:
        """``serving`` or ``draining``; a draining node is not picked for new rooms."""
        if state not in NODE_STATES:
            raise ValueError(f"unknown node state {state!r}")
        self.state = state

    @property
    def draining(self) -> bool:
        return self.state == DRAINING

    async def pick(self) -> str:
        """§3: two random choices among live serving nodes, this one when within 0.10."""
        # this node's own state counts at once, not from its last heartbeat (a drain just began)
        nodes = [
            replace(n, state=self.state) if n.node_id == self._node_id else n
            for n in await self.nodes()
        ]
        placed: dict[str, int] = {}
        for node in nodes:
            seen = self._placed.get(node.node_id)
            if seen is not None and seen[0] == node.updated_ms:
                placed[node.node_id] = seen[1]
        self._placed = {n.node_id: (n.updated_ms, placed.get(n.node_id, 0)) for n in nodes}
        chosen = choose_node(nodes, self._node_id, placed=placed, rng=self._rng)
        stamp, count = self._placed[chosen]
        self._placed[chosen] = (stamp, count + 1)
        return chosen
