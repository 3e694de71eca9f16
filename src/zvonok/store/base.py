"""The membership-store contract and the factory that picks a backend from the settings.

Owns ``MembershipStore``, ``SqlStore``, ``create_store``, ``open_sql_store`` and ``check_store``
(the start-up check). Must not import ``signaling``, ``rooms``, ``media`` or ``cluster``; imports
a backend's module only when the settings name it (SQLAlchemy only with ``database_url``). A store
answers "is this user a member of this chat/group?"; when it cannot answer it raises
``StoreUnavailable`` and the caller refuses (HTTP 503): access is never assumed. Implements no RFC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..auth.tokens import Grants
from ..config import Settings
from ..ids import RoomKey

#: The embedded database's file name inside the data dir.
EMBEDDED_DB = "zvonok.db"


class MembershipStore(Protocol):
    """Answers membership questions; raises ``StoreUnavailable`` when it cannot."""

    async def is_member(self, grants: Grants, room: RoomKey) -> bool: ...

    async def close(self) -> None: ...


@runtime_checkable
class SqlStore(MembershipStore, Protocol):
    """The ``sql`` backend: zvonok's own tables (the CLI, ``/dev/join``) and the start-up check.

    ``sql.SqlMembershipStore`` (SQLAlchemy, any ``database_url``) and
    ``embedded.EmbeddedMembershipStore`` (stdlib sqlite3, the embedded default) both are one.
    """

    async def create_schema(self) -> None: ...

    async def create_chat(self, members: Sequence[str], chat_id: str | None = None) -> str: ...

    async def create_group(self, members: Sequence[str], group_id: str | None = None) -> str: ...

    async def add_members(self, group_id: str, members: Sequence[str]) -> None: ...

    async def remove_members(self, group_id: str, members: Sequence[str]) -> None: ...

    async def ensure_member(self, room: RoomKey, user_id: str) -> None: ...

    async def check_queries(self) -> None: ...


def embedded_database_path(data_dir: Path) -> Path:
    """The SQLite file used when ``database_url`` is not set; creates ``data_dir`` (0700)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return (data_dir / EMBEDDED_DB).resolve()


def embedded_database_url(data_dir: Path) -> str:
    """The embedded database as an SQLAlchemy URL (the same file ``database_url`` could name)."""
    return f"sqlite+aiosqlite:///{embedded_database_path(data_dir)}"


def open_sql_store(settings: Settings) -> SqlStore:
    """The ``sql`` backend's store for zvonok's own tables (the ``zvonok chat/group`` commands):
    the embedded SQLite file through stdlib sqlite3, or ``database_url`` through SQLAlchemy.

    SQLAlchemy is imported only in the second case.
    """
    if settings.database_url is None:
        from .embedded import EmbeddedMembershipStore

        return EmbeddedMembershipStore(
            embedded_database_path(settings.data_dir), timeout=settings.sql_timeout
        )
    from .sql import SqlMembershipStore

    return SqlMembershipStore(settings.database_url, timeout=settings.sql_timeout)


async def create_store(settings: Settings) -> MembershipStore:
    """Build the backend named by ``settings.membership_backend``.

    Raises ``ValueError`` for an incomplete configuration (``http`` without a URL).
    """
    backend = settings.membership_backend
    if backend == "token":
        from .claims import TokenGrantsStore

        return TokenGrantsStore()
    if backend == "http":
        from .http import HttpMembershipStore

        return HttpMembershipStore.from_settings(settings)
    if settings.database_url is not None:  # only then is SQLAlchemy loaded
        from .sql import SqlMembershipStore

        return SqlMembershipStore(
            settings.database_url,
            chat_query=settings.sql_member_query_chat,
            group_query=settings.sql_member_query_group,
            timeout=settings.sql_timeout,
        )
    from .embedded import EmbeddedMembershipStore

    store = EmbeddedMembershipStore(
        embedded_database_path(settings.data_dir),
        chat_query=settings.sql_member_query_chat,
        group_query=settings.sql_member_query_group,
        timeout=settings.sql_timeout,
    )
    await store.create_schema()
    return store


async def check_store(store: MembershipStore) -> None:
    """The start-up check: an SQL store runs each membership query once (``check_queries``).

    Raises ``MembershipQueryError`` (a ``ValueError`` naming the setting, with the database's own
    message) after closing the store, so ``zvonok serve`` stops at start instead of answering
    every join with 503. An unreachable database is only a warning. Other backends need no check.
    """
    if not isinstance(store, SqlStore):
        return
    try:
        await store.check_queries()
    except ValueError:
        await store.close()
        raise
