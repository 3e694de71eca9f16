"""The ``token`` membership backend: the token itself lists the rooms its bearer may enter.

Owns ``TokenGrantsStore``. Imports only ``auth.tokens.Grants`` and ``ids``. A token without a
``rooms`` claim grants nothing. Never raises ``StoreUnavailable``: it needs no I/O.
Implements no RFC.
"""

from __future__ import annotations

from ..auth.tokens import Grants
from ..ids import RoomKey


class TokenGrantsStore:
    """Member iff ``str(room)`` (``"chat:1"``, ``"group:7"``) is in the token's ``rooms`` claim."""

    async def is_member(self, grants: Grants, room: RoomKey) -> bool:
        return grants.rooms is not None and str(room) in grants.rooms

    async def close(self) -> None:
        return None
