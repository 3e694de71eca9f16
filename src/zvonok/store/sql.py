"""The ``sql`` membership backend: SQLAlchemy 2 async on SQLite (aiosqlite) or PostgreSQL (asyncpg).

Owns ``SqlMembershipStore`` and the SQLAlchemy form of zvonok's own membership tables
(``zvonok_chats``, ``zvonok_chat_members``, ``zvonok_groups``, ``zvonok_group_members``). Used only
when ``database_url`` is set (the embedded default is ``embedded.EmbeddedMembershipStore``, without
SQLAlchemy). Imports ``auth.tokens`` (``Grants``), ``diagnostics``, ``ids`` and ``sqlcommon``
(the rules and log lines both SQL stores share); never ``signaling``, ``rooms``, ``media`` or
``cluster``.

Instead of the default tables a deployment can give one SQL query per room kind that reads its
messenger's own schema: bind parameters ``:room_id`` and ``:user_id``; the user is a member iff the
query returns at least one row. Any database error or timeout becomes ``StoreUnavailable`` and one
log line with the database driver's own message and the query's setting name, never the SQL
parameters (user and room ids). ``check_queries`` runs every membership query once at start-up so
a query the database refuses stops the server there. Implements no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

from sqlalchemy import (
    Column,
    ForeignKey,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    literal,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.expression import text

from ..auth.tokens import Grants
from ..diagnostics import excerpt, scrub
from ..ids import RoomKey, RoomKind
from .sqlcommon import (
    AUTO_ID_ATTEMPTS,
    CHECK_PARAMS,
    MAX_USER_ID,
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
from .sqlcommon import TEXT_ADVICE as _TEXT_ADVICE
from .sqlcommon import MembershipQueryError as MembershipQueryError

metadata = MetaData()
chats = Table(TABLES[RoomKind.CHAT][0], metadata, Column("id", String(64), primary_key=True))
chat_members = Table(
    TABLES[RoomKind.CHAT][1],
    metadata,
    Column("chat_id", String(64), ForeignKey("zvonok_chats.id"), primary_key=True),
    Column("user_id", String(MAX_USER_ID), primary_key=True),
)
groups = Table(TABLES[RoomKind.GROUP][0], metadata, Column("id", String(64), primary_key=True))
group_members = Table(
    TABLES[RoomKind.GROUP][1],
    metadata,
    Column("group_id", String(64), ForeignKey("zvonok_groups.id"), primary_key=True),
    Column("user_id", String(MAX_USER_ID), primary_key=True),
)

_DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError)
#: How often ``create_schema`` tries while a concurrent creator may be at work, and the pause
#: before the next try (times the attempt number).
SCHEMA_ATTEMPTS = 3
SCHEMA_RETRY_DELAY = 0.05
#: The PostgreSQL advisory lock key schema creators take turns under (any fixed bigint).
SCHEMA_LOCK = 0x7A766F6E6F6B  # "zvonok"
#: SQLSTATEs of a type mismatch: no operator ``bigint = text`` (42883); text as a number (22P02).
_TYPE_MISMATCH = frozenset({"42883", "22P02"})


class SqlMembershipStore(RoomCreation):
    """Membership in SQL tables: zvonok's own, or the messenger's through custom queries."""

    def __init__(
        self,
        url: str,
        *,
        chat_query: str | None = None,
        group_query: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._timeout = timeout
        backend = make_url(url).get_backend_name()
        connect_args: dict[str, float] = {"timeout": timeout}
        if backend == "postgresql":
            connect_args["command_timeout"] = timeout
        self._engine = create_async_engine(url, connect_args=connect_args, pool_pre_ping=True)
        self._queries: dict[RoomKind, Executable] = {
            RoomKind.CHAT: _query(chat_query, "chat", chat_members, "chat_id"),
            RoomKind.GROUP: _query(group_query, "group", group_members, "group_id"),
        }
        #: Where each query comes from, as log lines name it.
        self.sources: dict[RoomKind, str] = query_sources(chat_query, group_query)
        self._custom = {
            RoomKind.CHAT: chat_query is not None,
            RoomKind.GROUP: group_query is not None,
        }

    async def create_schema(self) -> None:
        """Create zvonok's tables if they are missing (idempotent), also while another process
        (a second node started at the same moment) creates them: SQLAlchemy looks before it
        creates, so two creators can both see no table and one fails (``table ... already
        exists``; on PostgreSQL a duplicate ``pg_type`` row). On PostgreSQL the creators take
        turns under a transaction-scoped advisory lock; on any database one that still lost the
        race looks again (``SCHEMA_ATTEMPTS``), and then finds the tables."""
        async with self._guard("create the schema"):
            for attempt in range(1, SCHEMA_ATTEMPTS + 1):
                try:
                    async with self._engine.begin() as conn:
                        if conn.dialect.name == "postgresql":
                            await conn.execute(
                                text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK}
                            )
                        await conn.run_sync(metadata.create_all)
                    return
                except _DB_ERRORS:
                    if attempt == SCHEMA_ATTEMPTS:
                        raise
                    await asyncio.sleep(SCHEMA_RETRY_DELAY * attempt)

    async def add_members(self, group_id: str, members: Sequence[str]) -> None:
        """Add members to a group (those already in it are skipped)."""
        users = member_ids(members)
        async with self._guard("add group members"), self._engine.begin() as conn:
            await _require_group(conn, group_id)
            rows = await conn.execute(
                select(group_members.c.user_id).where(group_members.c.group_id == group_id)
            )
            present = {row[0] for row in rows}
            new = [{"group_id": group_id, "user_id": u} for u in users if u not in present]
            if new:
                await conn.execute(insert(group_members), new)

    async def remove_members(self, group_id: str, members: Sequence[str]) -> None:
        """Remove members from a group (those not in it are ignored)."""
        users = member_ids(members)
        async with self._guard("remove group members"), self._engine.begin() as conn:
            await _require_group(conn, group_id)
            await conn.execute(
                delete(group_members).where(
                    group_members.c.group_id == group_id, group_members.c.user_id.in_(users)
                )
            )

    async def ensure_member(self, room: RoomKey, user_id: str) -> None:
        """Development helper: make ``user_id`` a member, creating the chat/group if missing.

        A chat is created with its first member and takes one more; ``ValueError`` if it already
        has two other members.
        """
        (user,) = member_ids([user_id])
        table, members, column = _tables(room.kind)
        check_room_id(room.kind, room.id)
        async with self._guard(f"add a {room.kind.value} member"), self._engine.begin() as conn:
            found = await conn.execute(select(table.c.id).where(table.c.id == room.id))
            if found.first() is None:
                await conn.execute(insert(table), [{"id": room.id}])
            rows = await conn.execute(select(members.c.user_id).where(members.c[column] == room.id))
            present = {row[0] for row in rows}
            if user in present:
                return
            if room.kind is RoomKind.CHAT and len(present) >= 2:
                raise ValueError(f"chat {room.id} already has two members")
            await conn.execute(insert(members), [{column: room.id, "user_id": user}])

    async def is_member(self, grants: Grants, room: RoomKey) -> bool:
        params = {"room_id": room.id, "user_id": str(grants.user_id)}
        guard = self._guard("check membership", room.kind, params)
        async with guard, self._engine.connect() as conn:
            row = (await conn.execute(self._queries[room.kind], params)).first()
        return row is not None

    async def check_queries(self) -> None:
        """The start-up check: run each membership query once for user "0" in room "0".

        The answer is ignored. ``MembershipQueryError`` names the custom query's setting when the
        database refused it (a syntax error, a missing table or column, a type mismatch), with the
        database's own message. The default query failing (zvonok's tables not created yet in an
        external database), a database that cannot be reached, or a query that does not answer
        within the timeout is a warning only: the server starts and those joins answer 503.
        """
        for kind, query in self._queries.items():
            source = self.sources[kind]
            try:
                async with asyncio.timeout(self._timeout):
                    conn = await self._engine.connect()
            except _DB_ERRORS as exc:
                warn_unreachable(describe(exc, self._timeout))
                return
            try:
                async with asyncio.timeout(self._timeout):
                    await conn.execute(query, CHECK_PARAMS)
            except _DB_ERRORS as exc:
                detail = describe(exc, self._timeout)
                if not _refused(exc):
                    warn_incomplete(source, detail)
                    continue
                advice = _TEXT_ADVICE if _type_mismatch(exc) else ""
                check_failed(kind, source, self._custom[kind], detail, advice)
            finally:
                with contextlib.suppress(*_DB_ERRORS):
                    async with asyncio.timeout(self._timeout):
                        await conn.close()
        check_passed()

    async def close(self) -> None:
        await self._engine.dispose()

    async def _create(self, kind: RoomKind, users: list[str], room_id: str | None) -> str:
        table, members, column = _tables(kind)
        if room_id is not None:
            check_room_id(kind, room_id)
        for _ in range(AUTO_ID_ATTEMPTS if room_id is None else 1):
            try:
                async with self._guard(f"create a {kind.value}"), self._engine.begin() as conn:
                    new_id = room_id if room_id is not None else await _next_id(conn, table)
                    await conn.execute(insert(table), [{"id": new_id}])
                    if users:
                        rows = [{column: new_id, "user_id": user} for user in users]
                        await conn.execute(insert(members), rows)
                return new_id
            except IntegrityError:
                continue  # the id was taken (by a concurrent writer, for an automatic id)
        raise ValueError(f"{kind.value} {room_id or new_id} already exists")

    @contextlib.asynccontextmanager
    async def _guard(
        self,
        action: str,
        kind: RoomKind | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[None]:
        """Bound ``action`` by the timeout; database failures become ``StoreUnavailable``.

        The log line names the query (``kind``) and quotes the driver's message with ``params``
        replaced by their names.
        """
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except IntegrityError:
            raise
        except _DB_ERRORS as exc:
            where = f" ({self.sources[kind]})" if kind is not None else ""
            detail = scrub(describe(exc, self._timeout), params or {})
            if kind is not None and self._custom[kind] and _type_mismatch(exc):
                detail += _TEXT_ADVICE
            raise unavailable(action, where, detail) from exc


def describe(exc: BaseException, timeout: float) -> str:
    """The database driver's own message for ``exc``: one line, without the SQL or its parameters.

    SQLAlchemy's ``str(exc)`` appends the statement and its parameters, so only the driver's
    exception (``exc.orig``, and for asyncpg the asyncpg error behind it) is read. The caller
    still scrubs the result: a driver may quote a parameter value in its message.
    """
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    driver = _driver_error(exc)
    if driver is None:  # not from the driver: the first line is SQLAlchemy's own message
        first_line = str(exc).partition("\n")[0]
        name = type(exc).__name__
        return excerpt(f"{name}: {first_line}" if first_line else name, MESSAGE_CHARS)
    assert isinstance(exc, StatementError) and exc.orig is not None
    text = f"{type(driver).__name__}: {str(exc.orig) or str(driver)}"
    hint = getattr(driver, "hint", None)
    if isinstance(hint, str) and hint:
        text += f" (hint: {hint})"
    sqlstate = getattr(driver, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        text += f" [SQLSTATE {sqlstate}]"
    return excerpt(text, MESSAGE_CHARS)


def _driver_error(exc: BaseException) -> BaseException | None:
    if isinstance(exc, StatementError) and exc.orig is not None:
        return exc.orig.__cause__ if exc.orig.__cause__ is not None else exc.orig
    return None


def _type_mismatch(exc: BaseException) -> bool:
    """A parameter compared with, or converted to, a non-text type (see ``_TEXT_ADVICE``)."""
    driver = _driver_error(exc)
    if driver is None:
        return False
    if getattr(driver, "sqlstate", None) in _TYPE_MISMATCH:
        return True
    # asyncpg converts a parameter to the column's type before sending it: "invalid input for
    # query argument $1: '0' ('str' object cannot be interpreted as an integer)"
    return "invalid input for query argument" in str(driver)


def _refused(exc: BaseException) -> bool:
    """The database answered and refused the statement (not: unreachable, gone, slow)."""
    if isinstance(exc, DBAPIError):
        return not exc.connection_invalidated
    return isinstance(exc, SQLAlchemyError) and not isinstance(exc, OSError)


def _tables(kind: RoomKind) -> tuple[Table, Table, str]:
    if kind is RoomKind.CHAT:
        return chats, chat_members, "chat_id"
    return groups, group_members, "group_id"


def _query(custom: str | None, kind: str, members: Table, column: str) -> Executable:
    """The custom query (checked for its bind parameters) or one on zvonok's own table."""
    checked = checked_query(custom, kind)
    if checked is not None:
        return text(checked)
    return (
        select(literal(1))
        .select_from(members)
        .where(
            members.c[column] == bindparam("room_id"),
            members.c.user_id == bindparam("user_id"),
        )
        .limit(1)
    )


async def _require_group(conn: AsyncConnection, group_id: str) -> None:
    found = await conn.execute(select(groups.c.id).where(groups.c.id == group_id))
    if found.first() is None:
        raise ValueError(f"no group {group_id!r}")


async def _next_id(conn: AsyncConnection, table: Table) -> str:
    """One more than the largest all-digit id (ids are strings; auto ids are integers)."""
    ids = await conn.execute(select(table.c.id))
    return next_id([row[0] for row in ids])
