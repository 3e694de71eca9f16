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
then and a connection that died meanwhile is not reused).

A batch is written to the socket in the call that hands it over, with no event-loop pass in
between: ``send`` when the connection is open and has room (it waits for room or to connect
otherwise), and ``write``, the synchronous form, whenever ``writable`` (an open connection with
room and a socket buffer below ``WRITE_BUFFER``, and no ``send`` waiting with a batch of its own,
which must go out first). The bus writes a request, an answer or a ``joined`` at once with it
(``RedisSignalBus.flush``). Imports redis-py (and reads its connection's stream writer, which
its ``send_packed_command`` writes to after an event-loop pass of its own when the connection
has a socket timeout); implements no RFC.
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
#: ``write`` only while less than this many bytes wait in the socket's buffer (Redis reads them
#: at once on a healthy connection; a full buffer is left to ``send``, which waits for it).
WRITE_BUFFER: Final = 64 * 1024
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
        #: A ``send`` waits (for room, or to connect) with a batch not written yet.
        self._sending = False
        #: Connections opened (the first one included), and the most batches in flight at once,
        #: for tests.
        self.connections = 0
        self.peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        """Batches written whose replies are still on their way."""
        return len(self._in_flight)

    @property
    def writable(self) -> bool:
        """``write`` may be called now (see the module)."""
        conn = self._conn
        if conn is None or self._sending or len(self._in_flight) >= self._max_in_flight:
            return False
        stream = _stream(conn)
        return stream is not None and stream.transport.get_write_buffer_size() < WRITE_BUFFER

    def write(self, batch: list[tuple[str, bytes]]) -> None:
        """Write ``batch`` now, without waiting (only when ``writable``); its replies are read
        and counted as those of any batch ``send`` wrote."""
        conn = self._conn
        stream = _stream(conn) if conn is not None else None
        if conn is None or stream is None or not self.writable:
            raise RuntimeError("the publisher is not writable now")
        stream.writelines(self._pack(conn, batch))

    async def send(self, batch: list[tuple[str, bytes]]) -> None:
        """Write ``batch``; waits only for room (``MAX_IN_FLIGHT``) and to connect.
        ``ClusterUnavailable`` when the pipe broke (the breaker was told)."""
        self._sending = True  # until the batch is written: a ``write`` would overtake it
        try:
            while len(self._in_flight) >= self._max_in_flight:
                self._space.clear()
                await self._space.wait()
            try:
                conn = self._conn if self._conn is not None else await self._open()
            except ClusterUnavailable:
                self._on_failed(len(batch))
                raise
            packed = self._pack(conn, batch)
            stream = _stream(conn)
            try:
                async with asyncio.timeout(self._timeout):
                    if stream is not None:  # written now; waits only while Redis does not read
                        stream.writelines(packed)
                        self._sending = False
                        await stream.drain()
                    else:  # not connected (the pool dropped it): redis-py connects again
                        await conn.send_packed_command(packed, check_health=False)
            except _BREAKING as exc:
                await self._break(conn, exc)
                raise ClusterUnavailable(f"redis unreachable: {type(exc).__name__}") from exc
            except BaseException:  # cancelled mid-write: the connection's state is unknown
                await self._break(conn, None)
                raise
        finally:
            self._sending = False

    def _pack(self, conn: AbstractConnection, batch: list[tuple[str, bytes]]) -> list[bytes]:
        """``batch`` as the bytes of its commands, recorded in flight (its replies come next)."""
        packed = conn.pack_commands([("PUBLISH", channel, message) for channel, message in batch])
        self._in_flight.append((len(batch), time.perf_counter()))
        self.peak_in_flight = max(self.peak_in_flight, len(self._in_flight))
        self._wake.set()
        return packed

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


def _stream(conn: AbstractConnection) -> asyncio.StreamWriter | None:
    """The connection's open stream writer (redis-py's ``_writer``), None when not connected."""
    writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
    if writer is None or not conn.is_connected or writer.transport.is_closing():
        return None
    return writer
