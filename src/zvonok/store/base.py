"""The membership-store contract and the factory that picks a backend from the settings.

Owns ``MembershipStore``, ``create_store`` and ``check_store`` (the start-up check). Must not
import ``signaling``, ``rooms``, ``media`` or ``cluster``. A store answers "is this user a member
of this chat/group?"; when it cannot answer it raises ``StoreUnavailable`` and the caller refuses
(HTTP 503): access is never assumed.
Implements no RFC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..auth.tokens import Grants
from ..config import Settings
from ..ids import RoomKey

#: The embedded database's file name inside the data dir.
EMBEDDED_DB = "zvonok.db"


class MembershipStore(Protocol):
    """Answers membership questions; raises ``StoreUnavailable`` when it cannot."""

    async def is_member(self, grants: Grants, room: RoomKey) -> bool: ...

    async def close(self) -> None: ...


def embedded_database_url(data_dir: Path) -> str:
    """The SQLite URL used when ``database_url`` is not set; creates ``data_dir`` (0700)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{(data_dir / EMBEDDED_DB).resolve()}"


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
    from .sql import SqlMembershipStore

    url = settings.database_url or embedded_database_url(settings.data_dir)
    store = SqlMembershipStore(
        url,
        chat_query=settings.sql_member_query_chat,
        group_query=settings.sql_member_query_group,
        timeout=settings.sql_timeout,
    )
    if settings.database_url is None:
        await store.create_schema()
    return store


async def check_store(store: MembershipStore) -> None:
    """The start-up check: an SQL store runs each membership query once (``check_queries``).

    Raises ``MembershipQueryError`` (a ``ValueError`` naming the setting, with the database's own
    message) after closing the store, so ``zvonok serve`` stops at start instead of answering
    every join with 503. An unreachable database is only a warning. Other backends need no check.
    """
    from .sql import SqlMembershipStore

    if not isinstance(store, SqlMembershipStore):
        return
    try:
        await store.check_queries()
    except ValueError:
        await store.close()
        raise
