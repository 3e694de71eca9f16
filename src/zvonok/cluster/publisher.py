"""``PipelinedPublisher``: the signal bus's ``PUBLISH`` batches on one Redis connection, pipelined.

Shared design ``cluster.md`` §3 "SignalBus frames"; issue 14 "Numbers" (a relayed join at most
10 ms slower than a direct one). Before, the bus sent a batch and waited for its replies before
the next: a message queued meanwhile waited a round trip. Here a batch is written as soon as the
bus has it, while the replies of earlier ones are still on their way (``MAX_IN_FLIGHT`` batches at
most), and a reader task takes the replies in order and times each batch (written → its last
reply). All batches go over one connection, which Redis serves in the order written, so a link's
frames leave in order (a frame ahead of sequence would be dropped and resent a second later).

Owns one connection taken from the client's pool (so a Sentinel client's pool finds the master of
now) and the reader task. Any Redis error (a ``READONLY`` reply after a failover included), a
write or a batch's replies taking longer than ``CALL_TIMEOUT``, breaks the pipe: the health
breaker hears of it (``degraded``), the connection is closed, the batches in flight count as
failed (their frames stay in their links' records and go out again with the next resend), and the
next batch opens a new connection. ``reset`` does the same without blaming Redis (the bus calls it
before it publishes through the breaker while ``degraded``, so nothing of the pipe is in flight
then and a connection that died meanwhile is not reused). Imports redis-py; implements no RFC.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from .base import ClusterUnavailable
from .health import CALL_TIMEOUT, RedisClusterHealth

log = logging.getLogger(__name__)

#: Batches written whose replies are not all read yet, at most (then ``send`` waits).
MAX_IN_FLIGHT: Final = 16
#: What breaks the pipe: Redis errors and replies, and socket trouble or a timeout.
_BREAKING = (RedisError, OSError, TimeoutError)


class PipelinedPublisher:
    """``send(batch)`` writes one batch of ``(channel, message)`` publishes; ``close()``."""

    def __init__(
        self,
        client: Redis,
        health: RedisClusterHealth,
        *,
        on_done: Callable[[int, float], None],
        on_failed: Callable[[int], None],
        max_in_flight: int = MAX_IN_FLIGHT,
        timeout: float = CALL_TIMEOUT,
    ) -> None:
        self._client = client
        self._health = health
        #: A batch's messages were published (count, seconds from write to last reply)...
        self._on_done = on_done
        #: ...or lost with a broken pipe (count).
        self._on_failed = on_failed
        self._max_in_flight = max_in_flight
        self._timeout = timeout
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        #: Batches written, oldest first: (messages, when written: ``time.perf_counter()``).
        self._in_flight: collections.deque[tuple[int, float]] = collections.deque()
        self._space = asyncio.Event()
        self._wake = asyncio.Event()
        #: Connections opened (the first one included), and the most batches in flight at once,
        #: for tests.
        self.connections = 0
        self.peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        """Batches written whose replies are still on their way."""
        return len(self._in_flight)

    async def send(self, batch: list[tuple[str, bytes]]) -> None:
        """Write ``batch``; waits only for room (``MAX_IN_FLIGHT``) and to connect.
        ``ClusterUnavailable`` when the pipe broke (the breaker was told)."""
        while len(self._in_flight) >= self._max_in_flight:
            self._space.clear()
            await self._space.wait()
        try:
            conn = self._conn if self._conn is not None else await self._open()
        except ClusterUnavailable:
            self._on_failed(len(batch))
            raise
        packed = conn.pack_commands([("PUBLISH", channel, message) for channel, message in batch])
        self._in_flight.append((len(batch), time.perf_counter()))
        self.peak_in_flight = max(self.peak_in_flight, len(self._in_flight))
        self._wake.set()
        try:
            async with asyncio.timeout(self._timeout):
                await conn.send_packed_command(packed, check_health=False)
        except _BREAKING as exc:
            await self._break(conn, exc)
            raise ClusterUnavailable(f"redis unreachable: {type(exc).__name__}") from exc
        except BaseException:  # cancelled mid-write: the connection's state is unknown
            await self._break(conn, None)
            raise

    async def reset(self) -> None:
        """Drop the connection (the batches in flight count as failed); no blame on Redis."""
        if self._conn is not None:
            await self._break(self._conn, None)

    async def close(self) -> None:
        await self.reset()

    async def _open(self) -> AbstractConnection:
        pool = self._client.connection_pool
        try:
            async with asyncio.timeout(self._timeout):
                conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except _BREAKING as exc:
            self._health.failed(exc)
            raise ClusterUnavailable(f"redis unreachable: {type(exc).__name__}") from exc
        self._conn = conn
        self.connections += 1
        self._reader = asyncio.get_running_loop().create_task(
            self._read(conn), name="signal-bus-replies"
        )
        return conn

    async def _read(self, conn: AbstractConnection) -> None:
        """Take each batch's replies in order; a late or failed one breaks the pipe."""
        while True:
            while not self._in_flight:
                self._wake.clear()
                await self._wake.wait()
            count, written = self._in_flight[0]
            try:
                async with asyncio.timeout(self._timeout):
                    for _ in range(count):
                        await conn.read_response()
            except _BREAKING as exc:
                await self._break(conn, exc)
                return
            self._in_flight.popleft()
            self._space.set()
            self._on_done(count, time.perf_counter() - written)

    async def _break(self, conn: AbstractConnection, exc: BaseException | None) -> None:
        """Forget ``conn`` (once), close it, count what was in flight as failed."""
        if self._conn is not conn:
            return
        self._conn = None
        lost = sum(count for count, _ in self._in_flight)
        self._in_flight.clear()
        self._space.set()
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)
        with contextlib.suppress(Exception):
            await self._client.connection_pool.release(conn)
        if lost:
            self._on_failed(lost)
        if exc is not None:
            log.info("signal bus: publish pipe broke (%s)", type(exc).__name__)
            self._health.failed(exc)
