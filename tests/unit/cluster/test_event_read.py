"""``RedisEventBus``'s stream read blocks for new entries while the breaker is closed and not
while it is open: then the read may be its one probe in 500 ms, and a blocking probe
(``XREADGROUP BLOCK 500`` on a Redis that is back but has nothing new) reported the recovery
only after the block. A stale heartbeat alone (``degraded`` with the breaker closed) keeps the
read blocking, so it never spins. The client is a redis-py client that never connects; its
``xreadgroup`` is replaced by a recorder."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from zvonok.cluster.health import DEGRADED, OK, RedisClusterHealth
from zvonok.cluster.redis_events import RedisEventBus


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_read_blocks_only_while_redis_is_healthy() -> None:
    clock = Clock()
    health = RedisClusterHealth(clock=clock)
    client = Redis(host="127.0.0.1", port=1)  # never connected: xreadgroup is replaced
    bus = RedisEventBus(client, health, node_id="n1", deliver=None)
    blocks: list[int | None] = []

    async def xreadgroup(*args: Any, block: int | None = None, **kwargs: Any) -> list[Any]:
        blocks.append(block)
        await asyncio.sleep(0)
        return []

    client.xreadgroup = xreadgroup  # type: ignore[method-assign]
    assert health.status == OK
    assert await health.call(lambda: bus._read(">")) == []
    health.heartbeat_ok()
    clock.now += 5.0  # a stale heartbeat: degraded, but the breaker is closed
    assert health.status == DEGRADED and not health.breaker_open
    assert await health.call(lambda: bus._read(">")) == []  # blocks: no busy loop
    health.heartbeat_ok()
    health.failed(TimeoutError())
    assert health.status == DEGRADED
    clock.now += 1.0  # the breaker's next probe is due: this read is it
    assert await health.call(lambda: bus._read(">")) == []
    assert health.status != DEGRADED  # the probe answered at once: Redis is back
    assert await health.call(lambda: bus._read("0")) == []  # pending entries: never blocks
    assert blocks == [500, 500, None, None]
    await client.aclose()
