"""SqlMembershipStore on a real PostgreSQL started by the test (tests/pg.py): default tables,
custom queries over a messenger-like schema, and an unreachable server."""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import pg
from tests.pg import postgres_url
from tests.unit.test_store_sql import (
    chat,
    check_custom_queries,
    check_default_tables,
    grants,
    group,
)
from zvonok.errors import StoreUnavailable
from zvonok.store.sql import SqlMembershipStore

__all__ = ["postgres_url"]

pytestmark = pytest.mark.postgres


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    """A fresh database per test on the shared server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


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
