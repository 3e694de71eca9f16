"""Identifier types shared by every layer (no imports from the rest of zvonok)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

UserId = NewType("UserId", str)
SessionId = NewType("SessionId", str)

#: What a chat/group id in a URL may look like: messengers use integers, UUIDs or slugs.
ROOM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: What a client-chosen session id may look like.
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class RoomKind(StrEnum):
    """The two kinds of room of the spec; ``chat:1`` and ``group:1`` are different rooms."""

    CHAT = "chat"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class RoomKey:
    """A room's identity: its kind and the chat/group id from the URL."""

    kind: RoomKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> RoomKey:
        """Parse ``"chat:1"`` / ``"group:abc"``; raises ``ValueError`` on anything else."""
        kind, sep, room_id = text.partition(":")
        if not sep:
            raise ValueError(f"room key {text!r} has no ':'")
        try:
            room_kind = RoomKind(kind)
        except ValueError:
            raise ValueError(f"room kind {kind!r} is not 'chat' or 'group'") from None
        if not ROOM_ID_RE.match(room_id):
            raise ValueError(f"room id {room_id!r} is not 1-64 of [A-Za-z0-9_-]")
        return cls(room_kind, room_id)
