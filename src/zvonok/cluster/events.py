"""The ``EventBus``: how call events reach the webhook sender, on one node or cluster-wide.

Shared design ``cluster.md`` §2 (the ``EventBus`` row: webhook events, at-least-once, idempotent
by id; an asyncio queue locally, a Stream and a consumer group on Redis), §3 (``zv:events``, the
"EventBus uses Streams" paragraph) and §4 ("events: bounded local outbox"). Owns:

- ``Event`` (what travels: a stable unique ``id`` and a JSON body) and ``EventBus`` (``publish``,
  never blocking; also named ``emit`` so a bus is a webhook sink), with ``Deliver``, what a
  consuming node calls for each event (the webhook sender: signing, retries, giving up);
- ``LocalEventBus``: one node, today's behaviour: each event goes straight to the sender's own
  bounded queue (``admin.webhooks``);
- ``Outbox``: the bounded FIFO of events not yet written to Redis (full: the oldest is dropped,
  counted and logged) and ``RecentIds``, the bounded set of recently delivered ids a consumer
  uses so a re-claimed entry is not sent twice by the same node.

The Redis implementation is ``cluster.redis_events`` (with ``redis_event_bus``, its factory from
a ``RedisCluster``), imported only by the ``redis`` backend, so a local node never loads redis-py.

Stdlib only; nothing of rooms, signaling, media or admin (the bus carries JSON, not webhook
types). Implements no RFC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

#: §4: events a node keeps while Redis is unreachable; beyond it the oldest are dropped.
OUTBOX_SIZE = 10_000
#: Event ids a consumer remembers having delivered (a re-claimed entry is seen within minutes).
RECENT_IDS = 10_000
#: At most one "outbox full" warning per this many seconds (each carries the running total).
DROP_LOG_INTERVAL = 5.0


class Event(Protocol):
    """An event as the bus sees it: a stable, unique ``id`` (the same on every retry and every
    node; receivers de-duplicate by it) and its JSON body (which carries the ``id`` too)."""

    @property
    def id(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


E = TypeVar("E", bound=Event)
E_contra = TypeVar("E_contra", bound=Event, contravariant=True)

#: What a consuming node does with one event's JSON body: deliver it (retrying as its own rules
#: say) and return once it succeeded or was given up. Raising counts as given up.
Deliver = Callable[[Mapping[str, Any]], Awaitable[None]]


class EventBus(Protocol[E_contra]):
    """Where events are published; ``start`` / ``close`` own whatever tasks the bus runs."""

    def publish(self, event: E_contra) -> None:
        """Hand ``event`` over; never blocks, never waits for the network."""
        ...

    def emit(self, event: E_contra) -> None:
        """``publish`` under the name a webhook sink uses."""
        ...

    def depth(self) -> int:
        """Events accepted here and not yet handed on (the Redis outbox; 0 locally)."""
        ...

    def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalEventBus(Generic[E]):
    """Single node: ``publish`` is the sender's own ``emit`` (its bounded queue, §2 "asyncio
    queue"); nothing to start, nothing to close (the sender is closed by its owner)."""

    def __init__(self, emit: Callable[[E], None]) -> None:
        self._emit = emit

    def publish(self, event: E) -> None:
        self._emit(event)

    def emit(self, event: E) -> None:
        self._emit(event)

    def depth(self) -> int:
        return 0

    def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


T = TypeVar("T")


class Outbox(Generic[T]):
    """A bounded FIFO with sequence numbers: the writer ``peek`` s a batch, writes it, then
    ``commit`` s up to the last sequence written, which stays right even if older items were
    dropped meanwhile. Full: ``put`` drops the oldest (``dropped`` counts them; a warning at
    most every ``DROP_LOG_INTERVAL`` seconds)."""

    def __init__(
        self,
        limit: int = OUTBOX_SIZE,
        *,
        name: str = "event outbox",
        on_drop: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("an outbox holds at least one item")
        self.limit = limit
        self.dropped = 0
        self._name = name
        self._on_drop = on_drop
        self._clock = clock
        self._items: deque[tuple[int, T]] = deque()
        self._next_seq = 0
        self._logged_at: float | None = None
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    def put(self, item: T) -> None:
        if len(self._items) >= self.limit:
            self._items.popleft()
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            now = self._clock()
            if self._logged_at is None or now - self._logged_at >= DROP_LOG_INTERVAL:
                self._logged_at = now
                log.warning(
                    "%s full (%d): oldest event dropped (%d dropped so far)",
                    self._name, self.limit, self.dropped,
                )  # fmt: skip
        self._items.append((self._next_seq, item))
        self._next_seq += 1
        self._ready.set()
        self._empty.clear()

    def peek(self, count: int) -> list[tuple[int, T]]:
        """Up to ``count`` oldest items with their sequence numbers, left in place."""
        return [self._items[i] for i in range(min(count, len(self._items)))]

    def commit(self, seq: int) -> None:
        """Remove every item up to and including sequence ``seq``."""
        while self._items and self._items[0][0] <= seq:
            self._items.popleft()
        if not self._items:
            self._ready.clear()
            self._empty.set()

    async def wait(self) -> None:
        """Return once the outbox holds something."""
        await self._ready.wait()

    async def drained(self) -> None:
        """Return once the outbox is empty."""
        await self._empty.wait()

    def __len__(self) -> int:
        return len(self._items)


class RecentIds:
    """The last ``limit`` ids seen, oldest forgotten first."""

    def __init__(self, limit: int = RECENT_IDS) -> None:
        if limit < 1:
            raise ValueError("remember at least one id")
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
