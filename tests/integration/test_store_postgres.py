"""SqlMembershipStore on a real PostgreSQL started by the test (tests/pg.py): default tables,
custom queries over a messenger-like schema, an unreachable server, what the log says when a query
fails (the database's message, never the ids), the start-up check of the custom queries, and two
schema creators at once (issue 14)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import pg
from tests.pg import database, postgres_url
from tests.store_scenarios import (
    BIGINT_CHAT_QUERY,
    CHAT_QUERY,
    chat,
    check_custom_queries,
    check_default_tables,
    grants,
    group,
    messenger_tables,
)
from tests.store_schema_race import race
from zvonok.errors import StoreUnavailable
from zvonok.store.sql import MembershipQueryError, SqlMembershipStore

__all__ = ["database", "postgres_url"]

pytestmark = pytest.mark.postgres


async def test_default_tables(database: str) -> None:
    store = SqlMembershipStore(database)
    try:
        await check_default_tables(store)
    finally:
        await store.close()


async def test_custom_queries_on_messenger_tables(database: str) -> None:
    await check_custom_queries(database)


async def test_missing_tables_are_unavailable(database: str) -> None:
    store = SqlMembershipStore(database)  # no create_schema: the tables do not exist
    try:
        with pytest.raises(StoreUnavailable, match="database failed to check membership"):
            await store.is_member(grants("a"), chat("1"))
    finally:
        await store.close()


async def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = SqlMembershipStore(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x", timeout=2.0)
    try:
        with pytest.raises(StoreUnavailable):
            await store.is_member(grants("a"), chat("1"))
    finally:
        await store.close()


def test_missing_binaries_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "PG_BIN_GLOB", "/nonexistent/postgresql/*/bin")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("PG_BIN", raising=False)
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL server binaries"):
        pg.find_bin_dir()


async def test_slow_query_times_out_and_the_store_recovers(database: str) -> None:
    slow = "SELECT 1 FROM pg_sleep(3) WHERE :room_id <> '' AND :user_id <> ''"
    store = SqlMembershipStore(database, group_query=slow, timeout=0.5)
    try:
        await store.create_schema()
        await store.create_chat(["a", "b"])
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="database failed to check membership"):
            await store.is_member(grants("a"), group("1"))
        assert time.monotonic() - started < 2.0
        assert await store.is_member(grants("a"), chat("1"))
    finally:
        await store.close()


ADVICE = (
    "; :room_id and :user_id are strings: compare as text, CAST(column AS TEXT) = :room_id "
    "(docs/auth.md)"
)


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        pytest.param(
            BIGINT_CHAT_QUERY,
            "DataError: invalid input for query argument $1: <room_id> ('str' object cannot be "
            "interpreted as an integer) [SQLSTATE 22000]" + ADVICE,
            id="asyncpg-converts-the-parameter",
        ),
        pytest.param(
            "SELECT 1 FROM dialogs WHERE id = CAST(:room_id AS TEXT) AND :user_id <> ''",
            "UndefinedFunctionError: operator does not exist: bigint = text (hint: No operator "
            "matches the given name and argument types. You might need to add explicit type "
            "casts.) [SQLSTATE 42883]" + ADVICE,
            id="no-operator",
        ),
        pytest.param(
            "SELECT 1 FROM dialogs WHERE id = CAST(CAST(:room_id AS TEXT) AS BIGINT)"
            " AND CAST(user_a AS TEXT) = :user_id",
            'InvalidTextRepresentationError: invalid input syntax for type bigint: "<room_id>" '
            "[SQLSTATE 22P02]" + ADVICE,
            id="the-database-quotes-the-value",
        ),
        pytest.param(
            "SELECT 1 FROM dialog WHERE CAST(id AS TEXT) = :room_id AND :user_id <> ''",
            'UndefinedTableError: relation "dialog" does not exist [SQLSTATE 42P01]',
            id="missing-table",
        ),
    ],
)
async def test_failures_log_the_database_message_without_the_ids(
    database: str, caplog: pytest.LogCaptureFixture, query: str, logged: str
) -> None:
    await messenger_tables(database)
    store = SqlMembershipStore(database, chat_query=query)
    caplog.set_level(logging.WARNING, "zvonok.store.sql")
    try:
        with pytest.raises(StoreUnavailable, match="sql_member_query_chat"):
            await store.is_member(grants("user-secret-42"), chat("room-secret-7"))
    finally:
        await store.close()
    (line,) = [record.getMessage() for record in caplog.records]
    assert line == f"database failed to check membership (sql_member_query_chat): {logged}"
    assert "secret" not in caplog.text


async def test_startup_check_on_postgres(database: str, caplog: pytest.LogCaptureFixture) -> None:
    await messenger_tables(database)
    store = SqlMembershipStore(database, chat_query=CHAT_QUERY)
    try:
        await store.check_queries()  # a text comparison runs; the default group query warns
    finally:
        await store.close()
    assert "the default group query on zvonok_group_members does not run" in caplog.text
    guarded = (  # the index-friendly guard docs/auth.md suggests: runs for "0" and for slugs
        "SELECT 1 FROM dialogs WHERE id = CASE WHEN :room_id ~ '^[0-9]{1,18}$'"
        " THEN CAST(:room_id AS BIGINT) END"
        " AND (CAST(user_a AS TEXT) = :user_id OR CAST(user_b AS TEXT) = :user_id)"
    )
    store = SqlMembershipStore(database, chat_query=guarded)
    try:
        await store.check_queries()
        assert await store.is_member(grants("100"), chat("1"))
        assert not await store.is_member(grants("100"), chat("slug"))
    finally:
        await store.close()
    broken = SqlMembershipStore(database, chat_query=BIGINT_CHAT_QUERY)
    try:
        with pytest.raises(MembershipQueryError) as info:
            await broken.check_queries()
    finally:
        await broken.close()
    assert str(info.value) == (
        "sql_member_query_chat does not run on the database (tried with room_id '0' and "
        "user_id '0'): DataError: invalid input for query argument $1: '0' ('str' object cannot "
        "be interpreted as an integer) [SQLSTATE 22000]" + ADVICE
    )


async def test_startup_check_with_the_database_down(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x"
    store = SqlMembershipStore(url, chat_query=BIGINT_CHAT_QUERY, timeout=2.0)
    caplog.set_level(logging.WARNING, "zvonok.store.sql")
    try:
        await store.check_queries()  # a warning, not an error: the server starts
    finally:
        await store.close()
    (line,) = [record.getMessage() for record in caplog.records]
    assert line.startswith(
        "start-up check of the membership queries skipped: cannot reach the database: "
        "ConnectionRefusedError: "
    )
    assert line.endswith("; joins answer 503 until it is reachable")


#: Two creators at once (issue 14): rounds of ``tests.store_schema_race.race``, a fresh database
#: each round; without the advisory lock one creator fails (duplicate ``pg_type`` row).
RACE_ROUNDS = 10


async def test_two_schema_creators_at_once(postgres_url: str) -> None:
    names = [f"race_{uuid.uuid4().hex[:10]}" for _ in range(RACE_ROUNDS)]
    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        for name in names:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = postgres_url.rsplit("/", 1)[0]
    try:
        outcomes = await asyncio.to_thread(race, lambda n: f"{base}/{names[n]}", rounds=RACE_ROUNDS)
        assert outcomes == ["ok"] * (2 * RACE_ROUNDS)
    finally:
        async with admin.connect() as conn:
            for name in names:
                await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()
