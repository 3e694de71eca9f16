"""The ``sql`` membership backend: SQLAlchemy 2 async on SQLite (aiosqlite) or PostgreSQL (asyncpg).

Owns ``SqlMembershipStore`` and zvonok's own membership tables (``zvonok_chats``,
``zvonok_chat_members``, ``zvonok_groups``, ``zvonok_group_members``). Imports only ``auth.tokens``
(``Grants``), ``errors`` and ``ids``; never ``signaling``, ``rooms``, ``media`` or ``cluster``.

Instead of the default tables a deployment can give one SQL query per room kind that reads its
messenger's own schema: bind parameters ``:room_id`` and ``:user_id``; the user is a member iff the
query returns at least one row. Any database error or timeout becomes ``StoreUnavailable``.
Implements no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

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
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.expression import text

from ..auth.tokens import Grants
from ..errors import StoreUnavailable
from ..ids import ROOM_ID_RE, RoomKey, RoomKind

log = logging.getLogger("zvonok.store.sql")

#: The longest user id the default tables hold (the same bound as a token's ``sub``).
MAX_USER_ID = 256

metadata = MetaData()
chats = Table("zvonok_chats", metadata, Column("id", String(64), primary_key=True))
chat_members = Table(
    "zvonok_chat_members",
    metadata,
    Column("chat_id", String(64), ForeignKey("zvonok_chats.id"), primary_key=True),
    Column("user_id", String(MAX_USER_ID), primary_key=True),
)
groups = Table("zvonok_groups", metadata, Column("id", String(64), primary_key=True))
group_members = Table(
    "zvonok_group_members",
    metadata,
    Column("group_id", String(64), ForeignKey("zvonok_groups.id"), primary_key=True),
    Column("user_id", String(MAX_USER_ID), primary_key=True),
)

#: How often an automatic id is retried when a concurrent writer took it first.
AUTO_ID_ATTEMPTS = 3

_DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


class SqlMembershipStore:
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

    async def create_schema(self) -> None:
        """Create zvonok's tables if they are missing (idempotent)."""
        async with self._guard("create the schema"), self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def create_chat(self, members: Sequence[str], chat_id: str | None = None) -> str:
        """Create a private chat of exactly two distinct members; returns its id."""
        users = _users(members)
        if len(users) != 2:
            raise ValueError(f"a private chat has exactly 2 distinct members, got {len(users)}")
        return await self._create(RoomKind.CHAT, users, chat_id)

    async def create_group(self, members: Sequence[str], group_id: str | None = None) -> str:
        """Create a group (any number of members, possibly none); returns its id."""
        return await self._create(RoomKind.GROUP, _users(members), group_id)

    async def add_members(self, group_id: str, members: Sequence[str]) -> None:
        """Add members to a group (those already in it are skipped)."""
        users = _users(members)
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
        users = _users(members)
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
        (user,) = _users([user_id])
        table, members, column = _tables(room.kind)
        if not ROOM_ID_RE.match(room.id):
            raise ValueError(f"{room.kind.value} id {room.id!r} is not 1-64 of [A-Za-z0-9_-]")
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
        async with self._guard("check membership"), self._engine.connect() as conn:
            row = (await conn.execute(self._queries[room.kind], params)).first()
        return row is not None

    async def close(self) -> None:
        await self._engine.dispose()

    async def _create(self, kind: RoomKind, users: list[str], room_id: str | None) -> str:
        table, members, column = _tables(kind)
        if room_id is not None and not ROOM_ID_RE.match(room_id):
            raise ValueError(f"{kind.value} id {room_id!r} is not 1-64 of [A-Za-z0-9_-]")
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
    async def _guard(self, action: str) -> AsyncIterator[None]:
        """Bound ``action`` by the timeout; database failures become ``StoreUnavailable``."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except IntegrityError:
            raise
        except _DB_ERRORS as exc:
            log.warning("database failed to %s: %s", action, type(exc).__name__)
            raise StoreUnavailable(f"database failed to {action}") from exc


def _tables(kind: RoomKind) -> tuple[Table, Table, str]:
    if kind is RoomKind.CHAT:
        return chats, chat_members, "chat_id"
    return groups, group_members, "group_id"


def _query(custom: str | None, kind: str, members: Table, column: str) -> Executable:
    """The custom query (checked for its bind parameters) or one on zvonok's own table."""
    if custom is not None:
        for param in (":room_id", ":user_id"):
            if param not in custom:
                raise ValueError(f"the {kind} membership query must use the bind parameter {param}")
        return text(custom)
    return (
        select(literal(1))
        .select_from(members)
        .where(
            members.c[column] == bindparam("room_id"),
            members.c.user_id == bindparam("user_id"),
        )
        .limit(1)
    )


def _users(members: Sequence[str]) -> list[str]:
    users = list(dict.fromkeys(member.strip() for member in members))
    for user in users:
        if not user or len(user) > MAX_USER_ID:
            raise ValueError(f"member id {user!r} must be 1-{MAX_USER_ID} characters")
    return users


async def _require_group(conn: AsyncConnection, group_id: str) -> None:
    found = await conn.execute(select(groups.c.id).where(groups.c.id == group_id))
    if found.first() is None:
        raise ValueError(f"no group {group_id!r}")


async def _next_id(conn: AsyncConnection, table: Table) -> str:
    """One more than the largest all-digit id (ids are strings; auto ids are integers)."""
    ids = await conn.execute(select(table.c.id))
    numbers = [int(row[0]) for row in ids if row[0].isdigit()]
    return str(max(numbers, default=0) + 1)
