"""SqlMembershipStore on SQLite (the embedded default); the scenarios are shared with PostgreSQL."""

from __future__ import annotations

import logging
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
from zvonok.store.base import check_store, create_store
from zvonok.store.claims import TokenGrantsStore
from zvonok.store.http import HttpMembershipStore
from zvonok.store.sql import MembershipQueryError, SqlMembershipStore


def make_settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'members.db'}"


async def test_default_tables(tmp_path: Path) -> None:
    store = SqlMembershipStore(sqlite_url(tmp_path))
    try:
        await check_default_tables(store)
    finally:
        await store.close()


async def test_custom_queries(tmp_path: Path) -> None:
    await check_custom_queries(sqlite_url(tmp_path))


def test_custom_query_needs_both_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chat membership query must use the bind parameter :user"):
        SqlMembershipStore(sqlite_url(tmp_path), chat_query="SELECT 1 WHERE :room_id = '1'")


async def test_broken_query_is_unavailable(tmp_path: Path) -> None:
    store = SqlMembershipStore(
        sqlite_url(tmp_path), group_query="SELECT 1 FROM missing WHERE a = :room_id AND :user_id"
    )
    try:
        with pytest.raises(StoreUnavailable, match="database failed to check membership"):
            await store.is_member(grants("a"), group("1"))
    finally:
        await store.close()


async def test_failure_log_names_the_query_and_quotes_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqlMembershipStore(
        sqlite_url(tmp_path),
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
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = sqlite_url(tmp_path)
    good = SqlMembershipStore(url, chat_query=CHAT_QUERY, group_query=GROUP_QUERY)
    await messenger_tables(url)
    try:
        await good.check_queries()  # both run (for user "0" in room "0"; no rows is fine)
    finally:
        await good.close()
    typo = SqlMembershipStore(url, chat_query=CHAT_QUERY, group_query="SELEC 1 " + GROUP_QUERY)
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
    missing = SqlMembershipStore(url, chat_query="SELECT 1 FROM nope WHERE :room_id = :user_id")
    caplog.set_level(logging.WARNING, "zvonok.store.sql")
    try:
        with pytest.raises(MembershipQueryError, match="sql_member_query_chat .*no such table"):
            await check_store(missing)
    finally:
        await missing.close()  # check_store closed it already; closing twice is harmless
    assert "start-up check failed: sql_member_query_chat does not run" in caplog.text


async def test_startup_check_only_warns_for_default_tables_and_a_dead_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "zvonok.store.sql")
    bare = SqlMembershipStore(
        sqlite_url(tmp_path), group_query="SELECT 1 WHERE :room_id = :user_id"
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
    dead = SqlMembershipStore(
        f"sqlite+aiosqlite:///{tmp_path / 'no' / 'dir.db'}", chat_query=CHAT_QUERY
    )
    try:
        await check_store(dead)
    finally:
        await dead.close()
    assert "start-up check of the membership queries skipped: cannot reach the database" in (
        caplog.text
    )
    assert "unable to open database file" in caplog.text
    await check_store(TokenGrantsStore())  # nothing to check


async def test_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    store = SqlMembershipStore(f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    try:
        with pytest.raises(StoreUnavailable):
            await store.is_member(grants("a"), chat("1"))
    finally:
        await store.close()


async def test_create_store_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    store = await create_store(make_settings(data_dir=data_dir))
    try:
        assert isinstance(store, SqlMembershipStore)
        assert (data_dir / "zvonok.db").exists()
        assert not await store.is_member(grants("a"), chat("1"))  # the schema exists
        await store.create_chat(["a", "b"])
        assert await store.is_member(grants("a"), chat("1"))
    finally:
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
