"""TokenGrantsStore: the token's ``rooms`` claim is the whole membership list."""

from __future__ import annotations

import time

from zvonok.auth.tokens import Grants
from zvonok.ids import RoomKey, UserId
from zvonok.store.claims import TokenGrantsStore


async def test_member_iff_room_is_granted() -> None:
    store = TokenGrantsStore()
    granted = Grants(UserId("u"), time.time() + 60, frozenset({"chat:1", "group:7"}), None)
    assert await store.is_member(granted, RoomKey.parse("chat:1"))
    assert await store.is_member(granted, RoomKey.parse("group:7"))
    assert not await store.is_member(granted, RoomKey.parse("group:1"))
    assert not await store.is_member(granted, RoomKey.parse("chat:7"))
    no_claim = Grants(UserId("u"), time.time() + 60, None, None)
    assert not await store.is_member(no_claim, RoomKey.parse("chat:1"))
    await store.close()
