"""What the two SQL membership stores share, without SQLAlchemy: zvonok's table names and layout,
the member-id rules, custom-query checks, and the texts of the start-up check and of a failure.

``sql.SqlMembershipStore`` (SQLAlchemy: PostgreSQL or any ``database_url``) and
``embedded.EmbeddedMembershipStore`` (stdlib ``sqlite3``: the embedded default) both build on it,
so an operator reads the same log lines from either and the ``sql`` backend's logger
(``zvonok.store.sql``) names both. Imports only ``errors`` and ``ids``; never ``signaling``,
``rooms``, ``media`` or ``cluster``, and never SQLAlchemy. Implements no RFC.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NoReturn

from ..errors import StoreUnavailable
from ..ids import ROOM_ID_RE, RoomKind

log = logging.getLogger("zvonok.store.sql")

#: The longest user id the default tables hold (the same bound as a token's ``sub``).
MAX_USER_ID = 256
#: How often an automatic id is retried when a concurrent writer took it first.
AUTO_ID_ATTEMPTS = 3
#: The ids the start-up check asks about; any answer is fine, only an error is not.
CHECK_PARAMS = {"room_id": "0", "user_id": "0"}
#: How long a database message may be in a log line.
MESSAGE_CHARS = 400
TEXT_ADVICE = (
    "; :room_id and :user_id are strings: compare as text, CAST(column AS TEXT) = :room_id "
    "(docs/auth.md)"
)

#: zvonok's own tables per room kind: (rooms table, members table, members' room-id column).
TABLES: dict[RoomKind, tuple[str, str, str]] = {
    RoomKind.CHAT: ("zvonok_chats", "zvonok_chat_members", "chat_id"),
    RoomKind.GROUP: ("zvonok_groups", "zvonok_group_members", "group_id"),
}


class MembershipQueryError(ValueError):
    """The start-up check: the database refused a membership query (names its setting)."""


def checked_query(custom: str | None, kind: str) -> str | None:
    """``custom`` if it uses both bind parameters (``ValueError`` if not); ``None`` stays."""
    if custom is not None:
        for param in (":room_id", ":user_id"):
            if param not in custom:
                raise ValueError(f"the {kind} membership query must use the bind parameter {param}")
    return custom


def query_sources(chat_query: str | None, group_query: str | None) -> dict[RoomKind, str]:
    """Where each membership query comes from, as log lines name it."""
    return {
        RoomKind.CHAT: "sql_member_query_chat"
        if chat_query is not None
        else "the default chat query on zvonok_chat_members",
        RoomKind.GROUP: "sql_member_query_group"
        if group_query is not None
        else "the default group query on zvonok_group_members",
    }


class RoomCreation:
    """``create_chat`` / ``create_group`` of both SQL stores, over their own ``_create``."""

    async def _create(self, kind: RoomKind, users: list[str], room_id: str | None) -> str:
        raise NotImplementedError

    async def create_chat(self, members: Sequence[str], chat_id: str | None = None) -> str:
        """Create a private chat of exactly two distinct members; returns its id."""
        users = member_ids(members)
        if len(users) != 2:
            raise ValueError(f"a private chat has exactly 2 distinct members, got {len(users)}")
        return await self._create(RoomKind.CHAT, users, chat_id)

    async def create_group(self, members: Sequence[str], group_id: str | None = None) -> str:
        """Create a group (any number of members, possibly none); returns its id."""
        return await self._create(RoomKind.GROUP, member_ids(members), group_id)


def member_ids(members: Sequence[str]) -> list[str]:
    """Distinct, stripped member ids in order; ``ValueError`` for an empty or too long one."""
    users = list(dict.fromkeys(member.strip() for member in members))
    for user in users:
        if not user or len(user) > MAX_USER_ID:
            raise ValueError(f"member id {user!r} must be 1-{MAX_USER_ID} characters")
    return users


def check_room_id(kind: RoomKind, room_id: str) -> None:
    """``ValueError`` unless ``room_id`` is 1-64 of ``[A-Za-z0-9_-]``."""
    if not ROOM_ID_RE.match(room_id):
        raise ValueError(f"{kind.value} id {room_id!r} is not 1-64 of [A-Za-z0-9_-]")


def next_id(ids: Sequence[str]) -> str:
    """One more than the largest all-digit id (ids are strings; auto ids are integers)."""
    numbers = [int(room_id) for room_id in ids if room_id.isdigit()]
    return str(max(numbers, default=0) + 1)


def unavailable(action: str, where: str, detail: str) -> StoreUnavailable:
    """Log a failed database ``action`` (one warning) and return the error for the caller."""
    log.warning("database failed to %s%s: %s", action, where, detail)
    return StoreUnavailable(f"database failed to {action}{where}: {detail}")


def warn_unreachable(detail: str) -> None:
    log.warning(
        "start-up check of the membership queries skipped: cannot reach the database: %s; "
        "joins answer 503 until it is reachable",
        detail,
    )


def check_failed(kind: RoomKind, source: str, custom: bool, detail: str, advice: str) -> None:
    """The start-up check of one query was refused: a warning for zvonok's own tables (created by
    the CLI, maybe later), ``MembershipQueryError`` (logged as an error) for a custom query."""
    if not custom:
        log.warning(
            "start-up check: %s does not run on the database: %s; %s joins answer 503 until the "
            "tables exist (zvonok %s create creates them) or sql_member_query_%s is set",
            source,
            detail,
            kind.value,
            kind.value,
            kind.value,
        )
        return
    refuse(source, detail + advice)


def refuse(source: str, detail: str) -> NoReturn:
    message = (
        f"{source} does not run on the database (tried with room_id '0' and user_id '0'): {detail}"
    )
    log.error("start-up check failed: %s", message)
    raise MembershipQueryError(message) from None


def warn_incomplete(source: str, detail: str) -> None:
    log.warning("start-up check of %s did not complete: %s", source, detail)


def check_passed() -> None:
    log.info("start-up check: the membership queries run on the database")
