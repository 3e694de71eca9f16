"""Which peer nodes are dead: the evidence rules of the SignalBus's peer checks (issue 14, "Node
killed"; shared design ``cluster.md`` §3 "SignalBus frames", §4 "Node crash").

Owns ``Sighting`` (what Redis shows of one peer at one instant: the ``boot_id`` and age of its
node key, the subscribers of its signal channel), ``Peers`` (what the bus asks Redis:
``RedisNodeRegistry`` implements it) and ``PeerWatch``, the pure rules over consecutive
sightings. Pure: no I/O, no clock of its own.

A process that dies (``kill -9``, power loss on its host aside) has its sockets closed by the
kernel: Redis drops its subscription to ``zv:sig:<node>`` at once, and its heartbeats stop. So a
peer is **dead** when its channel had no subscriber on ``PEER_LOST_CHECKS`` checks in a row and
its last heartbeat is older than ``STALE_AFTER`` (1.5 heartbeat intervals) on the last of them;
the bus then has Redis confirm it atomically (``Peers.reap``: the same facts read again in one
script, which removes the dead node's key so its leases stop counting at once for every node).
A live peer that is resubscribing still heartbeats; a live peer whose heartbeat is late (a
stalled loop) is still subscribed; only a peer cut off from Redis for longer than
``STALE_AFTER`` shows both, and its key would expire a few seconds later anyway.

The older rule stays: a peer whose node key is gone, or names another ``boot_id`` than the one
its link heard (it restarted), on ``PEER_LOST_CHECKS`` checks in a row is lost; so is one whose
key is gone now after its channel had no subscriber on the checks before (another node reaped
it first, or it expired). Every time here
is multiplied by the cluster's ``timing`` by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

#: The bus sights its linked peers this often (and sooner when a silent peer's heartbeat is
#: about to turn stale: ``PeerWatch.wake_in``)...
PEER_CHECK_INTERVAL: Final = 0.5
#: ...and needs this many sightings in a row of the same evidence.
PEER_LOST_CHECKS: Final = 2
#: A heartbeat older than this is stale: 1.5 heartbeat intervals (``redis_nodes``: every 2 s),
#: so one late by up to a second still counts as fresh.
STALE_AFTER: Final = 3.0
#: A check due because a heartbeat turns stale comes this long after it does (Redis's clock and
#: ours tick apart by a round trip); so no check comes sooner than this after the last.
STALE_MARGIN: Final = 0.05

#: What ``PeerWatch.judge`` says of a peer: no evidence; some, not enough yet; ask Redis to
#: confirm (and reap) a silent peer; lost (gone or restarted, seen enough times).
Verdict = Literal["alive", "wait", "reap", "lost"]


@dataclass(frozen=True, slots=True)
class Sighting:
    """One peer as Redis showed it at one instant."""

    #: Its node key's ``boot_id``; None when the key is gone.
    boot_id: str | None
    #: Seconds since its last heartbeat (Redis's clock); infinite when the key is gone.
    age: float
    #: Subscribers of its signal channel ``zv:sig:<node>`` (``PUBSUB NUMSUB``).
    subscribers: int


GONE: Final = Sighting(None, math.inf, 0)


class Peers(Protocol):
    """What the SignalBus asks Redis about its peers (``RedisNodeRegistry``)."""

    async def sight(self, peers: Sequence[str]) -> Mapping[str, Sighting] | None:
        """The peers, in one round trip; None when Redis cannot tell now (it lost its data
        lately: every node key is missing until that node's next heartbeat)."""
        ...

    async def reap(self, peer: str, boot_id: str, stale_after: float) -> bool:
        """Whether ``peer`` (``boot_id``) is dead, decided atomically in Redis: True when its
        key is gone or names another boot, or when its channel has no subscriber and its
        heartbeat is older than ``stale_after`` (then its key is removed: its leases stop
        counting for every node at once)."""
        ...


class PeerWatch:
    """The evidence against each linked peer over consecutive sightings (module docstring)."""

    def __init__(self, *, timing: float = 1.0, checks: int = PEER_LOST_CHECKS) -> None:
        self.stale_after = STALE_AFTER * timing
        self.checks = checks
        self._margin = STALE_MARGIN * timing
        self._gone: dict[str, int] = {}
        self._silent: dict[str, int] = {}
        #: Silent peers whose heartbeat is still fresh: their ages when last sighted.
        self._fresh_silent: list[float] = []

    def clear(self) -> None:
        """Forget all evidence (this node cannot judge now: Redis trouble, not settled)."""
        self._gone.clear()
        self._silent.clear()
        self._fresh_silent.clear()

    def judge(self, sighted: Mapping[str, tuple[str, Sighting]]) -> dict[str, Verdict]:
        """Verdicts on the peers sighted now, each with the ``boot_id`` its link heard ("" when
        it heard nothing yet); peers not in ``sighted`` are forgotten."""
        gone: dict[str, int] = {}
        silent: dict[str, int] = {}
        self._fresh_silent = []
        verdicts: dict[str, Verdict] = {}
        for peer, (heard_boot, seen) in sighted.items():
            if seen.subscribers == 0:
                silent[peer] = self._silent.get(peer, 0) + 1
            if seen.boot_id is None or (heard_boot and seen.boot_id != heard_boot):
                gone[peer] = self._gone.get(peer, 0) + 1
                # silent before, gone now: reaped by another node (or expired): dead
                enough = max(gone[peer], silent.get(peer, 0)) >= self.checks
                verdicts[peer] = "lost" if enough else "wait"
            elif seen.subscribers == 0:
                if seen.age <= self.stale_after:
                    self._fresh_silent.append(seen.age)
                    verdicts[peer] = "wait"
                else:
                    verdicts[peer] = "reap" if silent[peer] >= self.checks else "wait"
            else:
                verdicts[peer] = "alive"
        self._gone, self._silent = gone, silent
        return verdicts

    def wake_in(self, interval: float) -> float:
        """How long until the next check: ``interval``, or less when a silent peer's heartbeat
        turns stale sooner (so a dead peer is found right then, not up to an interval later)."""
        if not self._fresh_silent:
            return interval
        return min(interval, self.stale_after - max(self._fresh_silent) + self._margin)
