"""The two SQL stores on SQLite: ``SqlMembershipStore`` (SQLAlchemy, a ``database_url``) and
``EmbeddedMembershipStore`` (stdlib sqlite3, the embedded default), held to the same scenarios,
log lines and errors; the scenarios are shared with PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.store_scenarios import (
    CHAT_QUERY,
    GROUP_QUERY,
    chat,
    check_custom_queries,
    check_default_tables,
    grants,
    group,
    messenger_tables,
)
from zvonok.config import Settings
from zvonok.errors import StoreUnavailable
from zvonok.store.base import SqlStore, check_store, create_store
from zvonok.store.claims import TokenGrantsStore
from zvonok.store.embedded import EmbeddedMembershipStore
from zvonok.store.http import HttpMembershipStore
from zvonok.store.sql import MembershipQueryError, SqlMembershipStore


def make_settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'members.db'}"


#: The two stores of the ``sql`` backend, each on an SQLite file given by its path.
STORES = ["sqlalchemy", "embedded"]


def open_store(kind: str, path: Path, **queries: Any) -> SqlStore:
    if kind == "embedded":
        return EmbeddedMembershipStore(path, **queries)
    return SqlMembershipStore(f"sqlite+aiosqlite:///{path}", **queries)


@pytest.fixture(params=STORES)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


async def test_default_tables(tmp_path: Path, kind: str) -> None:
    store = open_store(kind, tmp_path / "members.db")
    try:
        await check_default_tables(store)
    finally:
        await store.close()


async def test_custom_queries(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "members.db"
    store = open_store(kind, path, chat_query=CHAT_QUERY, group_query=GROUP_QUERY)
    await check_custom_queries(sqlite_url(tmp_path), store)


def test_custom_query_needs_both_parameters(tmp_path: Path, kind: str) -> None:
    with pytest.raises(ValueError, match="chat membership query must use the bind parameter :user"):
        open_store(kind, tmp_path / "members.db", chat_query="SELECT 1 WHERE :room_id = '1'")


async def test_broken_query_is_unavailable(tmp_path: Path, kind: str) -> None:
    store = open_store(
        kind,
        tmp_path / "members.db",
        group_query="SELECT 1 FROM missing WHERE a = :room_id AND :user_id",
    )
    try:
        with pytest.raises(StoreUnavailable, match="database failed to check membership"):
            await store.is_member(grants("a"), group("1"))
    finally:
        await store.close()


async def test_failure_log_names_the_query_and_quotes_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    store = open_store(
        kind,
        tmp_path / "members.db",
        group_query="SELECT 1 FROM missing WHERE a = :room_id AND b = :user_id",
    )
    caplog.set_level(logging.WARNING, "zvonok.store.sql")
    try:
        with pytest.raises(StoreUnavailable, match="sql_member_query_group"):
            await store.is_member(grants("user-secret-42"), group("room-secret-7"))
        with pytest.raises(StoreUnavailable, match="default chat query on zvonok_chat_members"):
            await store.is_member(grants("user-secret-42"), chat("room-secret-7"))
    finally:
        await store.close()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "database failed to check membership (sql_member_query_group): "
        "OperationalError: no such table: missing",
        "database failed to check membership (the default chat query on zvonok_chat_members): "
        "OperationalError: no such table: zvonok_chat_members",
    ]
    assert "secret" not in caplog.text  # neither the user id nor the room id


async def test_startup_check_refuses_a_broken_custom_query(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    url, path = sqlite_url(tmp_path), tmp_path / "members.db"
    good = open_store(kind, path, chat_query=CHAT_QUERY, group_query=GROUP_QUERY)
    await messenger_tables(url)
    try:
        await good.check_queries()  # both run (for user "0" in room "0"; no rows is fine)
    finally:
        await good.close()
    typo = open_store(kind, path, chat_query=CHAT_QUERY, group_query="SELEC 1 " + GROUP_QUERY)
    try:
        with pytest.raises(
            MembershipQueryError,
            match=r"^sql_member_query_group does not run on the database \(tried with room_id "
            r"'0' and user_id '0'\): "
            r'OperationalError: near "SELEC": syntax error$',
        ):
            await typo.check_queries()
    finally:
        await typo.close()
    missing = open_store(kind, path, chat_query="SELECT 1 FROM nope WHERE :room_id = :user_id")
    caplog.set_level(logging.WARNING, "zvonok.store.sql")
    try:
        with pytest.raises(MembershipQueryError, match="sql_member_query_chat .*no such table"):
            await check_store(missing)
    finally:
        await missing.close()  # check_store closed it already; closing twice is harmless
    assert "start-up check failed: sql_member_query_chat does not run" in caplog.text


async def test_startup_check_only_warns_for_default_tables_and_a_dead_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.WARNING, "zvonok.store.sql")
    bare = open_store(
        kind, tmp_path / "members.db", group_query="SELECT 1 WHERE :room_id = :user_id"
    )
    try:
        await bare.check_queries()  # no zvonok tables, no messenger tables: warnings, no error
    finally:
        await bare.close()
    assert "the default chat query on zvonok_chat_members does not run on the database" in (
        caplog.text
    )
    assert "zvonok chat create creates them" in caplog.text
    caplog.clear()
    dead = open_store(kind, tmp_path / "no" / "dir.db", chat_query=CHAT_QUERY)
    try:
        await check_store(dead)
    finally:
        await dead.close()
    assert "start-up check of the membership queries skipped: cannot reach the database" in (
        caplog.text
    )
    assert "unable to open database file" in caplog.text
    await check_store(TokenGrantsStore())  # nothing to check


async def test_unreachable_database_is_unavailable(tmp_path: Path, kind: str) -> None:
    store = open_store(kind, tmp_path / "no" / "such" / "dir.db")
    try:
        with pytest.raises(StoreUnavailable):
            await store.is_member(grants("a"), chat("1"))
    finally:
        await store.close()


async def test_create_store_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    store = await create_store(make_settings(data_dir=data_dir))
    try:
        assert isinstance(store, EmbeddedMembershipStore)  # no SQLAlchemy for the default
        assert (data_dir / "zvonok.db").exists()
        assert not await store.is_member(grants("a"), chat("1"))  # the schema exists
        await store.create_chat(["a", "b"])
        assert await store.is_member(grants("a"), chat("1"))
    finally:
        await store.close()
    # The same file through SQLAlchemy (database_url naming it): same tables, same answers.
    url = f"sqlite+aiosqlite:///{data_dir / 'zvonok.db'}"
    store = await create_store(make_settings(data_dir=data_dir, database_url=url))
    try:
        assert isinstance(store, SqlMembershipStore)
        assert await store.is_member(grants("b"), chat("1"))
        assert await store.create_chat(["c", "d"]) == "2"
        await store.create_schema()  # the tables the embedded store made are SQLAlchemy's own
    finally:
        await store.close()
    store = await create_store(make_settings(data_dir=data_dir))
    try:
        assert await store.is_member(grants("d"), chat("2"))
    finally:
        await store.close()


async def test_embedded_store_survives_close_and_busy_writers(tmp_path: Path) -> None:
    """A closed store opens its connection again; two stores on one file serialize writes."""
    path = tmp_path / "members.db"
    first, second = EmbeddedMembershipStore(path), EmbeddedMembershipStore(path)
    try:
        await first.create_schema()
        ids = await asyncio.gather(
            *(store.create_group(["a"]) for store in (first, second) for _ in range(5))
        )
        assert sorted(ids, key=int) == [str(n) for n in range(1, 11)]
        await first.close()
        await first.close()  # idempotent
        assert await first.is_member(grants("a"), group("10"))  # reopened on use
    finally:
        await first.close()
        await second.close()


async def test_embedded_store_timeout_is_unavailable(tmp_path: Path) -> None:
    """A writer holding the lock longer than the timeout: 503, not a blocked event loop."""
    path = tmp_path / "members.db"
    store = EmbeddedMembershipStore(path, timeout=0.2)
    await store.create_schema()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="database failed to create a group: "):
            await store.create_group(["a"])
        with pytest.raises(StoreUnavailable, match="check membership"):
            await store.is_member(grants("a"), group("1"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert await store.create_group(["a"]) == "1"
    await store.close()


async def test_create_store_other_backends(tmp_path: Path) -> None:
    token_store = await create_store(make_settings(membership_backend="token"))
    assert isinstance(token_store, TokenGrantsStore)
    await token_store.close()
    with pytest.raises(ValueError, match="needs membership_http_url"):
        await create_store(make_settings(membership_backend="http"))
    settings = make_settings(membership_backend="http", membership_http_url="http://127.0.0.1:9/")
    http_store = await create_store(settings)
    assert isinstance(http_store, HttpMembershipStore)
    await http_store.close()
