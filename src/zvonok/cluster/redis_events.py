"""``RedisEventBus``: webhook events delivered once cluster-wide, through a Redis Stream.

Shared design ``cluster.md`` §2 (``EventBus``: at-least-once, idempotent by id), §3 (``zv:events``
with ``MAXLEN ~ 100000``, consumer group ``webhooks``, one consumer per node; "The EventBus uses
Streams": ``XADD`` + ``WAIT 1 100``, a local outbox until written, dedup by id, ``XAUTOCLAIM``
after 60 s) and §4 (while ``degraded`` events wait in a bounded local outbox; it is flushed
after Redis returns).

Publishing (every node): ``publish`` puts the event's id and JSON body (with the room's epoch,
§4 "Fencing", when this node holds the room) into the ``Outbox`` and returns. The writer task
appends batches with one script: an id seen in the last ``ID_TTL`` seconds (``zv:evid:<id>``) is
not appended again, so a batch re-sent after a lost reply makes no duplicates; the stream id
comes from Redis. Then ``WAIT 1 100`` when the master has replicas (checked every
``REPLICA_CHECK`` s), so a failover loses fewer events; without replicas there is nothing to wait
for.

Consuming (nodes given ``deliver``): the consumer ``<node_id>`` reads new entries with
``XREADGROUP`` (blocking ≤ 0.5 s, well inside the 1 s call timeout, so a stalled Redis is seen
as soon as by any other call; not blocking while the breaker is open, when the read may be its
probe; at most ``read_count``), delivers them one by one through
``deliver`` (the webhook sender with its signing and retries) and ``XACK`` s each once it was
delivered or given up. It first re-reads its own pending entries (at start, and after a failed
read whose reply may have been lost). While it holds entries it refreshes their idle time, so
only a dead consumer's entries reach the claim age: the claimer task moves entries idle longer
than ``CLAIM_IDLE`` (× timing) to this node (``XAUTOCLAIM``), and the reader delivers them. A
bounded ``RecentIds`` keeps a re-claimed entry this node already delivered from going out twice.
Delivery is at least once: after a crash between a POST and its ``XACK`` another node sends the
same event again, with the same id, which receivers de-duplicate on.

Every Redis call goes through the node's breaker (``RedisClusterHealth``); the tasks are owned
here (``start`` / ``close``). ``redis_event_bus`` builds one from a running ``RedisCluster``.
Imports redis-py: only the ``redis`` backend loads this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ..ids import RoomKey
from .base import ClusterUnavailable
from .events import OUTBOX_SIZE, RECENT_IDS, Deliver, Event, Outbox, RecentIds
from .health import RedisClusterHealth
from .keys import Keys

if TYPE_CHECKING:
    from .node import RedisCluster

log = logging.getLogger(__name__)

#: §3: the consumer group every node reads ``zv:events`` in.
GROUP = "webhooks"
#: §3: ``XADD ... MAXLEN ~`` this many entries (the stream's memory bound, docs/operations.md).
STREAM_MAXLEN = 100_000
#: §3: entries idle this long (× timing) belong to a dead consumer and are claimed.
CLAIM_IDLE = 60.0
#: How long an appended event id is remembered to refuse a re-sent copy (``zv:evid:<id>``).
ID_TTL = 600.0
#: Events per append script, and entries per read.
WRITE_BATCH = 100
READ_COUNT = 50
#: ``XREADGROUP BLOCK``: below the client's 1 s command timeout.
READ_BLOCK = 0.5
#: ``WAIT 1 100``: one replica, 100 ms.
WAIT_REPLICAS = 1
WAIT_TIMEOUT_MS = 100
#: How often the writer asks whether the master has replicas (``ROLE``).
REPLICA_CHECK = 10.0
#: Pause before trying Redis again after a refused or failed call.
RETRY_DELAY = 0.25
#: Pause before a loop that failed unexpectedly starts again.
RESTART_DELAY = 1.0
#: How long ``close`` lets the writer flush the outbox.
FLUSH_TIMEOUT = 2.0

_APPEND = """
local added = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[2]) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*',
               'id', ARGV[2 * i], 'body', ARGV[2 * i + 1], 'node', ARGV[1])
    added = added + 1
  end
end
return added
"""


def _is(exc: ResponseError, code: str) -> bool:
    return str(exc).startswith(code)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` until they have ended: on Python 3.11 ``asyncio.wait_for`` (inside the
    breaker's ``call``) swallows a cancellation that lands just as its operation completes, and
    the loop would go on."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)


async def _restarting(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a loop of the bus until cancelled; a bug that escapes it is logged and the loop
    starts again a second later (a dead writer would silently fill the outbox)."""
    while True:
        try:
            await run()
        except Exception:
            log.exception("events: %s failed; restarting it", name)
        await asyncio.sleep(RESTART_DELAY)


class RedisEventBus:
    """One node's ``EventBus`` on Redis: ``publish`` from anywhere on the loop; ``start()`` runs
    the writer (and, with ``deliver``, the consumer); ``close()`` stops them."""

    def __init__(
        self,
        client: Redis,
        health: RedisClusterHealth,
        *,
        node_id: str,
        deliver: Deliver | None,
        keys: Keys | None = None,
        timing: float = 1.0,
        outbox_size: int = OUTBOX_SIZE,
        recent_ids: int = RECENT_IDS,
        read_count: int = READ_COUNT,
        read_block: float = READ_BLOCK,
        maxlen: int = STREAM_MAXLEN,
        epoch_of: Callable[[str], int | None] | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self._client = client
        self._health = health
        self._deliver = deliver
        self._keys = keys or Keys()
        self._claim_idle = CLAIM_IDLE * timing
        self._read_count = read_count
        self._read_block_ms = max(1, round(min(read_block, READ_BLOCK) * 1000))
        self._maxlen = maxlen
        self._epoch_of = epoch_of
        self._outbox: Outbox[tuple[str, str]] = Outbox(
            outbox_size, name="webhook event outbox", on_drop=on_drop
        )
        self._recent = RecentIds(recent_ids)
        self._append = client.register_script(_APPEND)
        self._replicas = 0
        self._replicas_checked: float | None = None
        #: Where the reader re-reads this consumer's pending entries from (None: new ones).
        self._pending_from: str | None = "0"
        #: Entries read and not yet acknowledged (their idle time is kept fresh).
        self._holding: dict[str, None] = {}
        #: Entries handled whose ``XACK`` failed, acknowledged before the next read.
        self._unacked: list[str] = []
        self._writer: asyncio.Task[None] | None = None
        self._consumers: list[asyncio.Task[None]] = []
        self._closed = False
        #: Counters (for tests, logs and metrics).
        self.published = 0
        self.written = 0
        self.delivered = 0
        self.duplicates = 0
        self.claimed = 0
        self.unreplicated = 0

    @property
    def dropped(self) -> int:
        """Events dropped because the outbox was full (Redis unreachable too long)."""
        return self._outbox.dropped

    @property
    def outbox_limit(self) -> int:
        return self._outbox.limit

    def publish(self, event: Event) -> None:
        if self._closed:
            log.warning("event %s published after the bus closed: dropped", event.id)
            return
        body = event.to_json()
        if self._epoch_of is not None and "epoch" not in body and isinstance(body.get("room"), str):
            epoch = self._epoch_of(body["room"])
            if epoch is not None:
                body["epoch"] = epoch
        self._outbox.put((event.id, json.dumps(body, separators=(",", ":"))))
        self.published += 1

    def emit(self, event: Event) -> None:
        self.publish(event)

    def depth(self) -> int:
        return len(self._outbox)

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def task(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
            return loop.create_task(_restarting(name, run), name=f"{name} {self.node_id}")

        self._writer = task("events-writer", self._write)
        if self._deliver is not None:
            self._consumers = [
                task("events-reader", self._consume),
                task("events-claimer", self._claim),
                task("events-keepalive", self._keep_alive),
            ]

    async def close(self, flush_timeout: float = FLUSH_TIMEOUT) -> None:
        """Stop consuming (an entry being delivered stays pending: this node re-reads it at its
        next start, or another claims it), flush the outbox for up to ``flush_timeout``, stop
        the writer. Events still in the outbox then are lost (logged)."""
        self._closed = True
        consumers, self._consumers = self._consumers, []
        await _stop(consumers)
        writer, self._writer = self._writer, None
        if writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.drained(), flush_timeout)
        await _stop([writer])
        if len(self._outbox):
            log.warning(
                "%d webhook event(s) not written to redis before close: lost", len(self._outbox)
            )

    # --- publishing ------------------------------------------------------------------------

    async def _write(self) -> None:
        while True:
            await self._outbox.wait()
            batch = self._outbox.peek(WRITE_BATCH)
            try:
                await self._health.call(partial(self._append_batch, batch))
            except ClusterUnavailable:
                await asyncio.sleep(RETRY_DELAY)
                continue
            self._outbox.commit(batch[-1][0])
            self.written += len(batch)
            await self._wait_replicas()

    async def _append_batch(self, batch: list[tuple[int, tuple[str, str]]]) -> int:
        keys = [self._keys.events] + [self._keys.event_id(event_id) for _, (event_id, _) in batch]
        args: list[str | int] = [self.node_id, round(ID_TTL * 1000), self._maxlen]
        for _, (event_id, body) in batch:
            args += [event_id, body]
        added: int = await self._append(keys=keys, args=args)
        return added

    async def _wait_replicas(self) -> None:
        """``WAIT 1 100`` when the master has replicas; a replica that does not confirm in time
        only counts (the event is written on the master)."""
        now = time.monotonic()
        try:
            if self._replicas_checked is None or now - self._replicas_checked >= REPLICA_CHECK:
                role: list[Any] = await self._health.call(self._client.role)
                self._replicas = len(role[2]) if role and role[0] == "master" else 0
                self._replicas_checked = now
            if self._replicas:
                acked = await self._health.call(
                    lambda: self._client.wait(WAIT_REPLICAS, WAIT_TIMEOUT_MS)
                )
                if acked < WAIT_REPLICAS:
                    self.unreplicated += 1
        except ClusterUnavailable:
            return

    # --- consuming -------------------------------------------------------------------------

    async def _create_group(self) -> None:
        try:
            await self._client.xgroup_create(self._keys.events, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if not _is(exc, "BUSYGROUP"):
                raise

    async def _read(self, cursor: str) -> list[tuple[str, dict[str, str]]]:
        # Blocks for new entries, but not while the breaker is open: then this read may be its
        # one probe in 500 ms, and a blocking probe would report Redis back only after the block
        # (a stale heartbeat alone, with the breaker closed, must not turn this into a busy loop)
        blocks = cursor == ">" and not self._health.breaker_open
        try:
            reply: Any = await self._client.xreadgroup(
                GROUP,
                self.node_id,
                {self._keys.events: cursor},
                count=self._read_count,
                block=self._read_block_ms if blocks else None,
            )
        except ResponseError as exc:
            if not _is(exc, "NOGROUP"):
                raise
            await self._create_group()
            return []
        if not reply:
            return []
        entries: list[tuple[str, dict[str, str]]] = reply[0][1]
        return entries

    async def _consume(self) -> None:
        while True:
            if self._unacked and not await self._ack(self._unacked):
                await asyncio.sleep(RETRY_DELAY)
                continue
            self._unacked = []
            cursor = self._pending_from
            try:
                entries = await self._health.call(partial(self._read, cursor or ">"))
            except ClusterUnavailable:
                # A lost reply may have handed entries to us: read our pending ones again.
                self._pending_from = "0"
                await asyncio.sleep(RETRY_DELAY)
                continue
            if cursor is not None:
                self._pending_from = entries[-1][0] if entries else None
            for stream_id, _ in entries:
                self._holding[stream_id] = None
            for stream_id, fields in entries:
                await self._handle(fields)
                if not await self._ack([stream_id]):
                    self._unacked.append(stream_id)

    async def _handle(self, fields: Mapping[str, str]) -> None:
        """Deliver one entry unless this node delivered its event id lately."""
        assert self._deliver is not None
        event_id, body = fields.get("id"), fields.get("body")
        if not event_id or body is None:
            log.warning("events: an entry without id or body (trimmed?) acknowledged")
            return
        if event_id in self._recent:
            self.duplicates += 1
            return
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            log.warning("events: entry %s is not a JSON object: dropped", event_id)
            return
        try:
            await self._deliver(payload)
        except Exception:  # a sender that raised has given up; the consumer goes on
            log.exception("events: delivering %s failed", event_id)
        self._recent.add(event_id)
        self.delivered += 1

    async def _ack(self, stream_ids: list[str]) -> bool:
        try:
            await self._health.call(
                partial(self._client.xack, self._keys.events, GROUP, *stream_ids)
            )
        except ClusterUnavailable:
            return False
        for stream_id in stream_ids:
            self._holding.pop(stream_id, None)
        return True

    async def _claim(self) -> None:
        """Every quarter of the claim age, take over entries idle longer than it."""
        idle_ms = max(1, round(self._claim_idle * 1000))
        while True:
            await asyncio.sleep(self._claim_idle / 4)
            try:
                claimed = await self._health.call(lambda: self._autoclaim(idle_ms))
            except ClusterUnavailable:
                continue
            if claimed:
                self.claimed += len(claimed)
                log.info("events: claimed %d entries of a silent consumer", len(claimed))
                self._pending_from = "0"

    async def _autoclaim(self, idle_ms: int) -> list[str]:
        try:
            ids: list[str] = await self._client.xautoclaim(
                self._keys.events, GROUP, self.node_id, idle_ms, "0-0",
                count=self._read_count, justid=True,
            )  # fmt: skip
        except ResponseError as exc:
            if not _is(exc, "NOGROUP"):
                raise
            return []
        return ids

    async def _keep_alive(self) -> None:
        """Reset the idle time of the entries this node holds, so nobody claims them while a
        delivery is still being retried here."""
        while True:
            await asyncio.sleep(self._claim_idle / 3)
            held: list[Any] = list(self._holding)[: self._read_count * 2]
            if not held:
                continue
            with contextlib.suppress(ClusterUnavailable):
                await self._health.call(
                    partial(
                        self._client.xclaim,
                        self._keys.events,
                        GROUP,
                        self.node_id,
                        0,
                        held,
                        justid=True,
                    )  # fmt: skip
                )


def redis_event_bus(
    cluster: RedisCluster,
    deliver: Deliver | None,
    *,
    timing: float = 1.0,
    outbox_size: int = OUTBOX_SIZE,
    on_drop: Callable[[], None] | None = None,
) -> RedisEventBus:
    """The ``EventBus`` of a node running ``cluster``: its client, keys and breaker; each event
    is stamped with its room's epoch while this node holds the room (§4 "Fencing"). Without
    ``deliver`` the node only publishes. ``on_drop`` is called for each event the full outbox
    drops. Call ``start()`` on the loop, and ``close()`` before the cluster's."""

    def epoch_of(room: str) -> int | None:
        try:
            return cluster.rooms.held.get(RoomKey.parse(room))
        except ValueError:
            return None

    return RedisEventBus(
        cluster.client,
        cluster.health,
        node_id=cluster.node_id,
        deliver=deliver,
        keys=cluster.keys,
        timing=timing,
        outbox_size=outbox_size,
        epoch_of=epoch_of,
        on_drop=on_drop,
    )
