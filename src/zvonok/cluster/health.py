"""``RedisClusterHealth``: is Redis reachable, and a circuit breaker in front of every call.

Shared design ``cluster.md`` §4 "Redis outage". ``degraded`` starts on any Redis error or timeout
(the client's 0.5 s connect / 1 s command timeouts, and a 1 s bound here), or after 3 s without a
successful heartbeat. While degraded the breaker lets one probe through every 500 ms and fails
every other call at once with ``ClusterUnavailable``, so a join waits no longer than that. The
first success after that turns the state to ``reconciling`` and sets ``reconcile_needed``; the
node re-asserts what it holds and calls ``reconciled()``, and the state is ``ok`` again.

Imports redis-py only for its exception type; nothing of rooms, signaling or media.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from .base import ClusterUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

OK = "ok"
DEGRADED = "degraded"
RECONCILING = "reconciling"

#: §4: one probe per this many seconds while degraded.
PROBE_INTERVAL = 0.5
#: §4: degraded after this long without a successful heartbeat.
HEARTBEAT_STALE = 3.0
#: Upper bound on one call, whatever the client's own timeouts do.
CALL_TIMEOUT = 1.0
#: What a refused join tells the client to wait (``retryAfterMs``).
RETRY_AFTER = 2.0

#: Errors that mean "Redis is not answering properly" (a wrong script or type is a bug: raised).
_TRIPPING = (RedisError, OSError, TimeoutError)


class RedisClusterHealth:
    """The connection state of one node's Redis client; the ``ClusterHealth`` of §2."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        probe_interval: float = PROBE_INTERVAL,
        heartbeat_stale: float = HEARTBEAT_STALE,
        call_timeout: float = CALL_TIMEOUT,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._clock = clock
        self._probe_interval = probe_interval
        self._heartbeat_stale = heartbeat_stale
        self._call_timeout = call_timeout
        self._on_failure = on_failure
        self._degraded = False
        self._reconciling = False
        self._next_probe = 0.0
        self._last_heartbeat: float | None = None
        #: Set when Redis answers again after an outage: the owner should reconcile.
        self.reconcile_needed = asyncio.Event()
        #: Calls refused by the open breaker, and calls that failed (for metrics).
        self.refused = 0
        self.failures = 0

    @property
    def status(self) -> str:
        if self._degraded:
            return DEGRADED
        last = self._last_heartbeat
        if last is not None and self._clock() - last > self._heartbeat_stale:
            return DEGRADED
        return RECONCILING if self._reconciling else OK

    @property
    def probe_interval(self) -> float:
        """While degraded, one call per this many seconds goes through."""
        return self._probe_interval

    @property
    def breaker_open(self) -> bool:
        """A call failed and none has succeeded since: calls are refused but one probe per
        ``PROBE_INTERVAL`` (``status`` is also ``degraded`` after a stale heartbeat alone)."""
        return self._degraded

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation through the breaker; ``ClusterUnavailable`` if it is open or
        the operation fails."""
        if self._degraded:
            now = self._clock()
            if now < self._next_probe:
                self.refused += 1
                raise ClusterUnavailable("redis unreachable", retry_after=RETRY_AFTER)
            self._next_probe = now + self._probe_interval
        try:
            result = await asyncio.wait_for(operation(), self._call_timeout)
        except _TRIPPING as exc:
            self.failed(exc)
            raise ClusterUnavailable(
                f"redis unreachable: {type(exc).__name__}", retry_after=RETRY_AFTER
            ) from exc
        self._succeeded()
        return result

    def failed(self, exc: BaseException) -> None:
        """Record a failed Redis call: open the breaker."""
        self.failures += 1
        if not self._degraded:
            log.warning("cluster degraded: redis call failed (%s)", type(exc).__name__)
            self._degraded = True
            self._next_probe = self._clock() + self._probe_interval
        if self._on_failure is not None:
            self._on_failure(exc)

    def heartbeat_ok(self) -> None:
        """A heartbeat was written: the 3 s staleness clock restarts."""
        stale = self._last_heartbeat is not None and (
            self._clock() - self._last_heartbeat > self._heartbeat_stale
        )
        self._last_heartbeat = self._clock()
        if stale:
            self._reconciling = True
            self.reconcile_needed.set()

    def reconciled(self) -> None:
        """The node has re-asserted its state: ``ok`` again (unless it failed meanwhile)."""
        self._reconciling = False
        self.reconcile_needed.clear()

    def _succeeded(self) -> None:
        if self._degraded:
            log.info("cluster reconciling: redis answers again")
            self._degraded = False
            self._reconciling = True
            self.reconcile_needed.set()
