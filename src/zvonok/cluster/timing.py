"""``LegTimes``: how long each leg of the signaling relayed between nodes takes, as histograms.

Issue 14 ("Numbers": a join through a relaying node at most 10 ms slower than a direct one). A
relayed join has legs a direct one has not; each is timed where it happens, so a slow leg shows
on the node that pays for it (``/metrics``: ``zvonok_cluster_relay_leg_seconds{leg}``, written by
``cluster_node.ClusterCollector``):

- ``locate`` (edge): the lookup of the room's lease in Redis, with the session's binding (for a
  lookup started when the WebSocket was accepted, what the join still waited; a join whose owner
  this node knew without Redis is not timed: see ``zvonok_cluster_relay_located_total``);
- ``request`` (edge): the ``join`` request to the owner node until its answer;
- ``serve`` (owner): that join on the owner, from its start to the answer (the room lock, the
  claim if the room is new, the session binding in Redis unless the edge made it already);
- ``bus`` (edge): ``request`` − the owner's ``serve`` (the owner says it in its answer): the two
  pub/sub hops and the time each node's event loop took to get to the frame;
- ``send_wait`` (either, per published batch): how long a message waited on the signal bus's
  send queue (``cluster.publisher.MAX_IN_FLIGHT`` batches out already, a connection being
  opened, Redis ``degraded``, or the event loop busy);
- ``publish`` (either): one batch of ``PUBLISH``es, written to its last reply (batches are
  pipelined on one connection: the replies of the batches before it come first).

Imports only the standard library; no Prometheus types (the collector builds the families).
Implements no RFC.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Final

#: Upper bounds (seconds) of the histogram buckets: a loopback hop is ~0.1 ms idle, a few ms on
#: a busy node; a second is an outage.
BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: The legs ``ClusteredRooms`` times, and the signal bus's.
JOIN_LEGS: Final = ("locate", "request", "bus", "serve")
BUS_LEGS: Final = ("send_wait", "publish")


class LegTimes:
    """Bucket counts, counts and sums of a fixed set of named legs (seconds)."""

    __slots__ = ("buckets", "_counts", "_sums")

    def __init__(self, legs: Iterable[str], buckets: Iterable[float] = BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._counts = {leg: [0] * (len(self.buckets) + 1) for leg in legs}
        self._sums = dict.fromkeys(self._counts, 0.0)

    def observe(self, leg: str, seconds: float) -> None:
        """Count one ``leg`` that took ``seconds`` (``KeyError`` for a leg not declared)."""
        seconds = max(seconds, 0.0)
        self._counts[leg][bisect.bisect_left(self.buckets, seconds)] += 1
        self._sums[leg] += seconds

    def count(self, leg: str) -> int:
        return sum(self._counts[leg])

    def histograms(self) -> Iterator[tuple[str, list[tuple[str, float]], float]]:
        """Per leg: cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        for leg, counts in self._counts.items():
            total = 0
            cumulative: list[tuple[str, float]] = []
            for bound, count in zip((*map(repr, self.buckets), "+Inf"), counts, strict=True):
                total += count
                cumulative.append((bound, total))
            yield leg, cumulative, self._sums[leg]
