"""One contract for ``SessionDirectory``, run against ``LocalSessionDirectory`` and a
``RedisSessionDirectory`` on a real ``redis-server`` (shared design ``cluster.md`` §2: the local
and Redis backends are two implementations of the same interface; issue 14).

Binding, refusal of another user, compare-and-delete release, the linger that reserves an ended
session's id for its user, and its expiry (real time, a short linger).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from zvonok.cluster.base import SessionBinding, SessionDirectory
from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.health import RedisClusterHealth
from zvonok.cluster.local import LocalSessionDirectory
from zvonok.cluster.redis_sessions import RedisSessionDirectory
from zvonok.ids import RoomKey, SessionId, UserId

from ..harness.redis import RedisServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(10)]

CHAT = RoomKey.parse("chat:1")
GROUP = RoomKey.parse("group:g")
ALICE = SessionBinding(UserId("alice"), CHAT)
BOB = SessionBinding(UserId("bob"), CHAT)
SID = SessionId("s-1")


@pytest.fixture(params=["local", "redis"])
async def directory(request: pytest.FixtureRequest) -> AsyncIterator[SessionDirectory]:
    if request.param == "local":
        yield LocalSessionDirectory()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = connect(RedisTarget(url=server.url))
    try:
        yield RedisSessionDirectory(client, RedisClusterHealth())
    finally:
        await client.aclose()


async def test_a_free_id_binds_and_is_found(directory: SessionDirectory) -> None:
    assert await directory.lookup(SID) is None
    assert await directory.bind(SID, ALICE) == ALICE
    assert await directory.lookup(SID) == ALICE
    assert await directory.bind(SID, ALICE) == ALICE  # the same binding again: still hers


async def test_a_bound_id_stays_with_its_user(directory: SessionDirectory) -> None:
    await directory.bind(SID, ALICE)
    assert await directory.bind(SID, BOB) == ALICE
    assert await directory.bind(SID, SessionBinding(UserId("alice"), GROUP)) == ALICE
    assert await directory.lookup(SID) == ALICE


async def test_release_is_compare_and_delete(directory: SessionDirectory) -> None:
    await directory.bind(SID, ALICE)
    await directory.release(SID, BOB)
    await directory.release(SID, SessionBinding(UserId("alice"), GROUP))
    assert await directory.lookup(SID) == ALICE
    await directory.release(SID, ALICE)
    assert await directory.lookup(SID) is None
    assert await directory.bind(SID, BOB) == BOB  # no linger: anyone may take it


async def test_a_lingering_id_is_reserved_for_its_user(directory: SessionDirectory) -> None:
    await directory.bind(SID, ALICE)
    await directory.release(SID, ALICE, linger=30)
    assert await directory.lookup(SID) is None
    bob_in_group = SessionBinding(UserId("bob"), GROUP)
    assert await directory.bind(SID, bob_in_group) == SessionBinding(UserId("alice"), GROUP)
    alice_in_group = SessionBinding(UserId("alice"), GROUP)
    assert await directory.bind(SID, alice_in_group) == alice_in_group  # any room, same user
    assert await directory.lookup(SID) == alice_in_group


async def test_a_linger_expires(directory: SessionDirectory) -> None:
    await directory.bind(SID, ALICE)
    await directory.release(SID, ALICE, linger=0.2)
    assert await directory.bind(SID, BOB) == SessionBinding(UserId("alice"), CHAT)
    await asyncio.sleep(0.3)
    assert await directory.bind(SID, BOB) == BOB


async def test_ids_are_independent(directory: SessionDirectory) -> None:
    other = SessionId("s-2")
    await directory.bind(SID, ALICE)
    assert await directory.bind(other, BOB) == BOB
    await directory.release(SID, ALICE)
    assert await directory.lookup(other) == BOB


async def test_redis_bindings_are_renewed_and_rewritten_after_data_loss(
    redis_server: RedisServer,
) -> None:
    client = connect(RedisTarget(url=redis_server.url))
    try:
        directory = RedisSessionDirectory(client, RedisClusterHealth(), ttl=0.4)
        other = SessionId("s-2")
        await directory.bind(SID, ALICE)
        await directory.bind(other, BOB)
        for _ in range(3):
            await asyncio.sleep(0.2)
            assert await directory.renew() == []
        assert await directory.lookup(SID) == ALICE
        redis_server.flushall()
        mallory = SessionBinding(UserId("mallory"), CHAT)
        thief = RedisSessionDirectory(client, RedisClusterHealth())  # another node, first in
        assert await thief.bind(other, mallory) == mallory
        assert await directory.renew() == [other]
        assert await directory.lookup(SID) == ALICE
        assert len(directory) == 1
    finally:
        await client.aclose()
