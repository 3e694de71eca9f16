"""Membership-store scenarios shared by the SQLite unit tests (tests/unit/test_store_sql.py) and
the PostgreSQL integration tests (tests/integration/test_store_postgres.py, test_startup_check.py):
a messenger's own schema and the custom queries over it, and the whole life of chats and groups
in zvonok's own tables, each runnable against any database URL."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from zvonok.auth.tokens import Grants
from zvonok.ids import RoomKey, RoomKind, UserId
from zvonok.store.base import SqlStore
from zvonok.store.sql import SqlMembershipStore

#: A messenger's own schema, for the custom-query scenario (portable SQLite/PostgreSQL SQL).
MESSENGER_SCHEMA = [
    "CREATE TABLE dialogs (id BIGINT PRIMARY KEY, user_a BIGINT NOT NULL, user_b BIGINT NOT NULL)",
    "CREATE TABLE chat_participants (chat_id BIGINT NOT NULL, user_id BIGINT NOT NULL,"
    " left_at TIMESTAMP NULL, PRIMARY KEY (chat_id, user_id))",
    "INSERT INTO dialogs VALUES (1, 100, 200)",
    "INSERT INTO chat_participants VALUES (7, 100, NULL), (7, 300, NULL),"
    " (7, 400, '2024-01-01 00:00:00')",
]
CHAT_QUERY = (
    "SELECT 1 FROM dialogs WHERE CAST(id AS TEXT) = :room_id"
    " AND (CAST(user_a AS TEXT) = :user_id OR CAST(user_b AS TEXT) = :user_id)"
)
GROUP_QUERY = (
    "SELECT 1 FROM chat_participants WHERE CAST(chat_id AS TEXT) = :room_id"
    " AND CAST(user_id AS TEXT) = :user_id AND left_at IS NULL"
)


def grants(user: str) -> Grants:
    return Grants(UserId(user), time.time() + 60, None, None)


def chat(room_id: str) -> RoomKey:
    return RoomKey(RoomKind.CHAT, room_id)


def group(room_id: str) -> RoomKey:
    return RoomKey(RoomKind.GROUP, room_id)


#: The mistake a new user makes: a BIGINT column compared with :room_id, which is a string.
BIGINT_CHAT_QUERY = (
    "SELECT 1 FROM dialogs WHERE id = :room_id AND (user_a = :user_id OR user_b = :user_id)"
)


async def check_default_tables(store: SqlStore) -> None:
    """The whole life of chats and groups in zvonok's own tables (any database)."""
    await store.create_schema()
    await store.create_schema()  # idempotent
    assert await store.create_chat(["alice", "bob"]) == "1"
    assert await store.create_chat(["alice", "carol"]) == "2"
    assert await store.create_chat(["bob", "carol"], chat_id="slug-chat") == "slug-chat"
    assert await store.create_chat([" dave ", "erin"], chat_id="10") == "10"
    assert await store.create_chat(["dave", "frank"]) == "11"
    assert await store.is_member(grants("alice"), chat("1"))
    assert await store.is_member(grants("bob"), chat("1"))
    assert not await store.is_member(grants("carol"), chat("1"))
    assert await store.is_member(grants("dave"), chat("10"))
    assert not await store.is_member(grants("alice"), chat("404"))
    assert not await store.is_member(grants("alice"), group("1"))
    with pytest.raises(ValueError, match="exactly 2 distinct members, got 1"):
        await store.create_chat(["alice", "alice"])
    with pytest.raises(ValueError, match="exactly 2 distinct members, got 3"):
        await store.create_chat(["a", "b", "c"])
    with pytest.raises(ValueError, match="chat 1 already exists"):
        await store.create_chat(["x", "y"], chat_id="1")
    with pytest.raises(ValueError, match=r"chat id 'a b' is not 1-64"):
        await store.create_chat(["x", "y"], chat_id="a b")

    assert await store.create_group(["alice", "bob", "carol"]) == "1"
    assert await store.create_group([], group_id="empty") == "empty"
    assert await store.is_member(grants("carol"), group("1"))
    assert not await store.is_member(grants("dave"), group("1"))
    await store.add_members("1", ["dave", "alice"])
    assert await store.is_member(grants("dave"), group("1"))
    await store.remove_members("1", ["alice", "nobody"])
    assert not await store.is_member(grants("alice"), group("1"))
    assert await store.is_member(grants("bob"), group("1"))
    with pytest.raises(ValueError, match="no group '9'"):
        await store.add_members("9", ["alice"])
    with pytest.raises(ValueError, match="no group '9'"):
        await store.remove_members("9", ["alice"])
    with pytest.raises(ValueError, match="group empty already exists"):
        await store.create_group(["x"], group_id="empty")
    with pytest.raises(ValueError, match="member id '' must be 1-256"):
        await store.create_group(["a", " "])

    await store.ensure_member(chat("dev"), "alice")
    await store.ensure_member(chat("dev"), "alice")
    assert await store.is_member(grants("alice"), chat("dev"))
    await store.ensure_member(chat("dev"), "bob")
    with pytest.raises(ValueError, match="chat dev already has two members"):
        await store.ensure_member(chat("dev"), "carol")
    await store.ensure_member(group("1"), "zed")
    await store.ensure_member(group("new"), "zed")
    assert await store.is_member(grants("zed"), group("1"))
    assert await store.is_member(grants("zed"), group("new"))


async def check_custom_queries(url: str, store: SqlStore | None = None) -> None:
    """Membership read from a messenger's own tables through the two custom queries (by ``store``
    if given, which must read the database at ``url`` with them; by SQLAlchemy if not)."""
    await messenger_tables(url)
    if store is None:
        store = SqlMembershipStore(url, chat_query=CHAT_QUERY, group_query=GROUP_QUERY)
    try:
        assert await store.is_member(grants("100"), chat("1"))
        assert await store.is_member(grants("200"), chat("1"))
        assert not await store.is_member(grants("300"), chat("1"))
        assert not await store.is_member(grants("100"), chat("slug"))
        assert await store.is_member(grants("300"), group("7"))
        assert not await store.is_member(grants("400"), group("7"))  # left the chat
        assert not await store.is_member(grants("200"), group("7"))
        assert not await store.is_member(grants("not-a-number"), group("7"))
    finally:
        await store.close()


async def messenger_tables(url: str) -> None:
    """Create and fill the messenger's tables (``MESSENGER_SCHEMA``) in the database at ``url``."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for statement in MESSENGER_SCHEMA:
            await conn.execute(text(statement))
    await engine.dispose()
