"""``zvonok serve`` with a custom membership query the database refuses stops at start with a
message naming the setting: a BIGINT column compared with ``:room_id`` on a real PostgreSQL
(tests/pg.py), a syntax error on SQLite. With the database down it starts and warns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.integration.harness.server import ServerFactory, ZvonokServer, free_port
from tests.pg import database, postgres_url
from tests.store_scenarios import BIGINT_CHAT_QUERY, GROUP_QUERY, messenger_tables

__all__ = ["database", "postgres_url"]

#: How long a refused start may take (settings, secret, one query, uvicorn's exit).
EXIT_TIMEOUT = 30.0


def serve_until_exit(tmp_path: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``zvonok serve`` (text log) until it exits on its own; its exit code and output."""
    server = ZvonokServer(tmp_path / "data", extra_args=["--log-format", "text"], env=env)
    try:
        code = server.process.wait(EXIT_TIMEOUT)
    finally:
        server.stop()
    return code, server.log_tail(200)


@pytest.mark.postgres
async def test_serve_refuses_a_bigint_comparison_on_postgres(database: str, tmp_path: Path) -> None:
    await messenger_tables(database)
    code, output = serve_until_exit(
        tmp_path,
        {"ZVONOK_DATABASE_URL": database, "ZVONOK_SQL_MEMBER_QUERY_CHAT": BIGINT_CHAT_QUERY},
    )
    assert code != 0, output
    assert (
        "ERROR zvonok.store.sql: start-up check failed: sql_member_query_chat does not run on the "
        "database (tried with room_id '0' and user_id '0'): DataError: invalid input for query "
        "argument $1: '0' ('str' object cannot be interpreted as an integer) [SQLSTATE 22000]; "
        ":room_id and :user_id are strings: compare as text, CAST(column AS TEXT) = :room_id "
        "(docs/auth.md)"
    ) in output
    assert "Application startup failed. Exiting." in output
    assert "zvonok listening" not in output


def test_serve_refuses_a_syntax_error_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'messenger.db'}"
    code, output = serve_until_exit(
        tmp_path,
        {
            "ZVONOK_DATABASE_URL": url,
            "ZVONOK_SQL_MEMBER_QUERY_CHAT": "SELECT 1 WHERE :room_id = :user_id",
            "ZVONOK_SQL_MEMBER_QUERY_GROUP": GROUP_QUERY.replace("SELECT 1 FROM", "SELECT 1 FORM"),
        },
    )
    assert code != 0, output
    assert (
        "start-up check failed: sql_member_query_group does not run on the database (tried with "
        "room_id '0' and user_id '0'): OperationalError: near \"chat_participants\": syntax error"
    ) in output
    assert "zvonok listening" not in output


async def join_status(server: ZvonokServer, kind: str, room_id: str, user: str) -> int:
    """The HTTP status of a real WebSocket handshake to a call (101 when it is accepted)."""
    token = server.token(user)
    try:
        async with connect(
            server.ws_url(kind, room_id), additional_headers={"Authorization": f"Bearer {token}"}
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_serve_starts_with_the_database_down(zvonok_server_factory: ServerFactory) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/messenger"
    server = zvonok_server_factory.start(
        env={"ZVONOK_DATABASE_URL": url, "ZVONOK_SQL_MEMBER_QUERY_CHAT": BIGINT_CHAT_QUERY}
    )
    assert await join_status(server, "chat", "1", "alice") == 503
    messages = [line.get("msg", "") for line in server.logs() if isinstance(line, dict)]
    (warning,) = [m for m in messages if m.startswith("start-up check of the membership")]
    assert warning == (
        "start-up check of the membership queries skipped: cannot reach the database: "
        "ConnectionRefusedError: [Errno 111] Connection refused; joins answer 503 until it is "
        "reachable"
    )
    assert any(m.startswith("zvonok listening") for m in messages)
    # The refusal reaches the client a moment before the log line is read back: poll for it.
    for _ in range(50):
        messages = [line.get("msg", "") for line in server.logs() if isinstance(line, dict)]
        if any(m.startswith("database failed") for m in messages):
            break
        await asyncio.sleep(0.1)
    (failure,) = [m for m in messages if m.startswith("database failed")]
    assert failure == (
        "database failed to check membership (sql_member_query_chat): ConnectionRefusedError: "
        "[Errno 111] Connection refused"
    )
