"""The embedded ``sql`` membership store: zvonok's own tables in ``<data_dir>/zvonok.db``, through
the standard library's ``sqlite3``.

Owns ``EmbeddedMembershipStore``, the store of the default setup (``membership_backend = "sql"``
without ``database_url``): the same tables, queries, log lines and errors as
``sql.SqlMembershipStore`` on SQLite, without loading SQLAlchemy (about 20 MB of a process that
otherwise weighs under 60). Every statement runs on the store's one worker thread, on one
connection opened there on first use, so a busy database never blocks the event loop; each call
is bounded by ``timeout`` (also SQLite's busy timeout) and a database error or timeout becomes
``StoreUnavailable``. Writes take the write lock first (``BEGIN IMMEDIATE``). The file is the one
SQLAlchemy creates (same DDL), so ``database_url = "sqlite+aiosqlite:///..."`` reads it too.
Imports ``auth.tokens`` (``Grants``), ``diagnostics``, ``errors``, ``ids`` and ``sqlcommon``; never
``signaling``, ``rooms``, ``media`` or ``cluster``. Implements no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from ..auth.tokens import Grants
from ..diagnostics import excerpt, scrub
from ..ids import RoomKey, RoomKind
from .sqlcommon import (
    AUTO_ID_ATTEMPTS,
    CHECK_PARAMS,
    MESSAGE_CHARS,
    TABLES,
    RoomCreation,
    check_failed,
    check_passed,
    check_room_id,
    checked_query,
    member_ids,
    next_id,
    query_sources,
    unavailable,
    warn_incomplete,
    warn_unreachable,
)

T = TypeVar("T")

#: zvonok's tables, as SQLAlchemy's ``metadata.create_all`` creates them on SQLite (store/sql.py).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS zvonok_chats (id VARCHAR(64) NOT NULL, PRIMARY KEY (id))",
    "CREATE TABLE IF NOT EXISTS zvonok_groups (id VARCHAR(64) NOT NULL, PRIMARY KEY (id))",
    "CREATE TABLE IF NOT EXISTS zvonok_chat_members (chat_id VARCHAR(64) NOT NULL, "
    "user_id VARCHAR(256) NOT NULL, PRIMARY KEY (chat_id, user_id), "
    "FOREIGN KEY(chat_id) REFERENCES zvonok_chats (id))",
    "CREATE TABLE IF NOT EXISTS zvonok_group_members (group_id VARCHAR(64) NOT NULL, "
    "user_id VARCHAR(256) NOT NULL, PRIMARY KEY (group_id, user_id), "
    "FOREIGN KEY(group_id) REFERENCES zvonok_groups (id))",
)

_DB_ERRORS = (sqlite3.Error, OSError, TimeoutError)


class _Unreachable(Exception):
    """Opening the database failed (``__cause__`` is the driver's error)."""


def _default_query(kind: RoomKind) -> str:
    _, members, column = TABLES[kind]
    return f"SELECT 1 FROM {members} WHERE {column} = :room_id AND user_id = :user_id LIMIT 1"


class EmbeddedMembershipStore(RoomCreation):
    """Membership in zvonok's tables in one SQLite file, or through custom queries on it."""

    def __init__(
        self,
        path: Path,
        *,
        chat_query: str | None = None,
        group_query: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.path = path
        self._timeout = timeout
        self._queries: dict[RoomKind, str] = {
            RoomKind.CHAT: checked_query(chat_query, "chat") or _default_query(RoomKind.CHAT),
            RoomKind.GROUP: checked_query(group_query, "group") or _default_query(RoomKind.GROUP),
        }
        #: Where each query comes from, as log lines name it.
        self.sources: dict[RoomKind, str] = query_sources(chat_query, group_query)
        self._custom = {
            RoomKind.CHAT: chat_query is not None,
            RoomKind.GROUP: group_query is not None,
        }
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None  # opened and used on the worker thread only

    async def create_schema(self) -> None:
        """Create zvonok's tables if they are missing (idempotent)."""

        def create(db: sqlite3.Connection) -> None:
            for statement in SCHEMA:
                db.execute(statement)

        async with self._guard("create the schema"):
            await self._run(create, write=True)

    async def add_members(self, group_id: str, members: Sequence[str]) -> None:
        """Add members to a group (those already in it are skipped)."""
        users = member_ids(members)

        def add(db: sqlite3.Connection) -> None:
            _require_group(db, group_id)
            present = _members(db, RoomKind.GROUP, group_id)
            new = [(group_id, user) for user in users if user not in present]
            db.executemany("INSERT INTO zvonok_group_members VALUES (?, ?)", new)

        async with self._guard("add group members"):
            await self._run(add, write=True)

    async def remove_members(self, group_id: str, members: Sequence[str]) -> None:
        """Remove members from a group (those not in it are ignored)."""
        users = member_ids(members)

        def remove(db: sqlite3.Connection) -> None:
            _require_group(db, group_id)
            rows = [(group_id, user) for user in users]
            db.executemany(
                "DELETE FROM zvonok_group_members WHERE group_id = ? AND user_id = ?", rows
            )

        async with self._guard("remove group members"):
            await self._run(remove, write=True)

    async def ensure_member(self, room: RoomKey, user_id: str) -> None:
        """Development helper: make ``user_id`` a member, creating the chat/group if missing.

        A chat is created with its first member and takes one more; ``ValueError`` if it already
        has two other members.
        """
        (user,) = member_ids([user_id])
        check_room_id(room.kind, room.id)
        table, members, _ = TABLES[room.kind]

        def ensure(db: sqlite3.Connection) -> None:
            db.execute(f"INSERT OR IGNORE INTO {table} VALUES (?)", (room.id,))
            present = _members(db, room.kind, room.id)
            if user in present:
                return
            if room.kind is RoomKind.CHAT and len(present) >= 2:
                raise ValueError(f"chat {room.id} already has two members")
            db.execute(f"INSERT INTO {members} VALUES (?, ?)", (room.id, user))

        async with self._guard(f"add a {room.kind.value} member"):
            await self._run(ensure, write=True)

    async def is_member(self, grants: Grants, room: RoomKey) -> bool:
        params = {"room_id": room.id, "user_id": str(grants.user_id)}
        query = self._queries[room.kind]

        def ask(db: sqlite3.Connection) -> bool:
            return db.execute(query, params).fetchone() is not None

        async with self._guard("check membership", room.kind, params):
            return await self._run(ask)

    async def check_queries(self) -> None:
        """The start-up check: run each membership query once for user "0" in room "0".

        The same rules as ``SqlMembershipStore.check_queries``: a custom query SQLite refuses
        raises ``MembershipQueryError``; the default query failing, a database that cannot be
        opened or a query that does not answer within the timeout is a warning only.
        """
        for kind, query in self._queries.items():
            source = self.sources[kind]
            try:
                async with asyncio.timeout(self._timeout):
                    await self._run(partial(_fetch_all, query=query, params=CHECK_PARAMS))
            except _Unreachable as exc:
                warn_unreachable(describe(exc.__cause__ or exc, self._timeout))
                return
            except _DB_ERRORS as exc:
                detail = describe(exc, self._timeout)
                if not isinstance(exc, sqlite3.Error):  # no answer in time: not refused
                    warn_incomplete(source, detail)
                    continue
                check_failed(kind, source, self._custom[kind], detail, "")
        check_passed()

    async def close(self) -> None:
        """Close the connection and end the worker thread; a later call opens them again."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        with contextlib.suppress(*_DB_ERRORS):
            async with asyncio.timeout(self._timeout):
                await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        executor.shutdown(wait=False, cancel_futures=True)

    async def _create(self, kind: RoomKind, users: list[str], room_id: str | None) -> str:
        table, members, _ = TABLES[kind]
        if room_id is not None:
            check_room_id(kind, room_id)

        tried: list[str] = []

        def create(db: sqlite3.Connection) -> str:
            if room_id is not None:
                new_id = room_id
            else:
                new_id = next_id([row[0] for row in db.execute(f"SELECT id FROM {table}")])
            tried.append(new_id)
            db.execute(f"INSERT INTO {table} VALUES (?)", (new_id,))
            db.executemany(f"INSERT INTO {members} VALUES (?, ?)", [(new_id, u) for u in users])
            return new_id

        for _ in range(AUTO_ID_ATTEMPTS if room_id is None else 1):
            try:
                async with self._guard(f"create a {kind.value}"):
                    return await self._run(create, write=True)
            except sqlite3.IntegrityError:
                continue  # the id was taken (by a concurrent writer, for an automatic id)
        raise ValueError(f"{kind.value} {room_id or tried[-1]} already exists")

    async def _run(self, action: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run ``action`` on the worker thread's connection; in one transaction for a write."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zvonok-sqlite")
        job = self._write if write else self._read
        return await asyncio.get_running_loop().run_in_executor(self._executor, job, action)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = sqlite3.connect(
                    self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise _Unreachable() from exc
        return self._db

    def _read(self, action: Callable[[sqlite3.Connection], T]) -> T:
        return action(self._connection())

    def _write(self, action: Callable[[sqlite3.Connection], T]) -> T:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = action(db)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    @contextlib.asynccontextmanager
    async def _guard(
        self,
        action: str,
        kind: RoomKind | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[None]:
        """Bound ``action`` by the timeout; database failures become ``StoreUnavailable``."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except sqlite3.IntegrityError:
            raise
        except (_Unreachable, *_DB_ERRORS) as exc:
            where = f" ({self.sources[kind]})" if kind is not None else ""
            cause = exc.__cause__ if isinstance(exc, _Unreachable) else exc
            detail = scrub(describe(cause or exc, self._timeout), params or {})
            raise unavailable(action, where, detail) from exc


def describe(exc: BaseException, timeout: float) -> str:
    """SQLite's own message for ``exc`` as one line (``OperationalError: no such table: x``)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    message = str(exc)
    name = type(exc).__name__
    return excerpt(f"{name}: {message}" if message else name, MESSAGE_CHARS)


def _fetch_all(db: sqlite3.Connection, *, query: str, params: Mapping[str, str]) -> None:
    db.execute(query, params).fetchall()


def _members(db: sqlite3.Connection, kind: RoomKind, room_id: str) -> set[str]:
    _, members, column = TABLES[kind]
    rows = db.execute(f"SELECT user_id FROM {members} WHERE {column} = ?", (room_id,))
    return {row[0] for row in rows}


def _require_group(db: sqlite3.Connection, group_id: str) -> None:
    if db.execute("SELECT id FROM zvonok_groups WHERE id = ?", (group_id,)).fetchone() is None:
        raise ValueError(f"no group {group_id!r}")
