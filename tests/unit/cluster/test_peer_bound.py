"""``RedisSessionDirectory.bound_by_peer`` (cluster/redis_sessions.py): the edge of a relayed join
bound the session already, so the owner's ``bind`` of exactly that binding needs no round trip;
any other ``bind`` still asks Redis. The client points at a closed port: a call that reaches
"Redis" fails as ``ClusterUnavailable``, so the test sees which binds went there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from zvonok.cluster import redis_sessions
from zvonok.cluster.base import ClusterUnavailable, SessionBinding
from zvonok.cluster.health import RedisClusterHealth
from zvonok.cluster.redis_sessions import RedisSessionDirectory
from zvonok.ids import RoomKey, SessionId, UserId

ALICE = SessionBinding(UserId("alice"), RoomKey.parse("chat:1"))
MALLORY = SessionBinding(UserId("mallory"), RoomKey.parse("chat:1"))


@pytest.fixture
async def directory() -> AsyncIterator[RedisSessionDirectory]:
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    yield RedisSessionDirectory(client, RedisClusterHealth(), ttl=0.2)
    await client.aclose()


async def test_the_bound_binding_is_taken_without_redis_once(
    directory: RedisSessionDirectory,
) -> None:
    directory.bound_by_peer(SessionId("s1"), ALICE)
    assert await directory.bind(SessionId("s1"), ALICE) == ALICE
    assert len(directory) == 1  # the owner renews it from now on
    with pytest.raises(ClusterUnavailable):  # the note is used up
        await directory.bind(SessionId("s1"), ALICE)


async def test_another_binding_or_a_late_one_goes_to_redis(
    directory: RedisSessionDirectory,
) -> None:
    directory.bound_by_peer(SessionId("s1"), ALICE)
    with pytest.raises(ClusterUnavailable):
        await directory.bind(SessionId("s1"), MALLORY)  # not what the edge bound
    directory.bound_by_peer(SessionId("s2"), ALICE)
    await asyncio.sleep(0.06)  # a quarter of the TTL: the note no longer stands
    with pytest.raises(ClusterUnavailable):
        await directory.bind(SessionId("s2"), ALICE)
    assert len(directory) == 0


async def test_notes_are_capped_oldest_first(
    directory: RedisSessionDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_sessions, "MAX_PEER_BOUND", 3)
    for n in range(5):
        directory.bound_by_peer(SessionId(f"s{n}"), ALICE)
    assert await directory.bind(SessionId("s4"), ALICE) == ALICE
    with pytest.raises(ClusterUnavailable):  # dropped for s3 and s4
        await directory.bind(SessionId("s0"), ALICE)
