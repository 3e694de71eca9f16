"""The Redis connection of a node: a direct URL or a master found through Sentinel.

Shared design ``cluster.md`` §1 (one master plus Sentinel) and §4 (timeouts: 0.5 s connect, 1 s
command; one retry; after a failover the pool is dropped so the next connection asks Sentinel
again, because redis-py may stay on the old master, redis-py #3560/#3867). A URL may carry a
password: ``RedisTarget`` keeps it out of ``repr`` and ``describe()`` redacts it. Imports
redis-py, so only the ``redis`` backend loads this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ..config import Settings
from .settings import check_redis_url, parse_sentinel, redact_url

#: §4: a connection attempt and a command give up after these many seconds.
CONNECT_TIMEOUT = 0.5
COMMAND_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the cluster's Redis is: ``url``, or ``sentinels`` + ``master_name``."""

    url: str | None = field(default=None, repr=False)
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.url is not None:
            check_redis_url(self.url)
        elif not (self.sentinels and self.master_name):
            raise ValueError("a Redis target needs a url, or sentinels and a master name")

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTarget:
        return cls(
            url=settings.redis_url,
            sentinels=tuple(parse_sentinel(entry) for entry in settings.redis_sentinels),
            master_name=settings.redis_master_name,
            password=settings.redis_password,
        )

    def describe(self) -> str:
        """For logs and errors: the URL with its password redacted, or the Sentinel set."""
        if self.url is not None:
            return redact_url(self.url)
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel://{hosts}/{self.master_name}"


def connect(
    target: RedisTarget,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    command_timeout: float = COMMAND_TIMEOUT,
) -> Redis:
    """A client (strings in, strings out) for ``target``; connects lazily, on first use."""
    retry = Retry(NoBackoff(), 1)
    if target.url is not None:
        return Redis.from_url(
            target.url,
            decode_responses=True,
            socket_connect_timeout=connect_timeout,
            socket_timeout=command_timeout,
            retry=retry,
        )
    assert target.master_name is not None
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs={
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": command_timeout,
        },
        decode_responses=True,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
        retry=retry,
    )
    client: Redis = sentinel.master_for(target.master_name, password=target.password)
    return client


async def drop_connections(client: Redis) -> None:
    """Close every pooled connection: the next command reconnects (and, under Sentinel, asks
    which node is the master now)."""
    await client.connection_pool.disconnect()
