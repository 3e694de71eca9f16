"""Two nodes started at the same moment on one PostgreSQL database both come up (issue 14):
``SqlMembershipStore.create_schema`` from two real processes at one instant, on a fresh database
each round (tests/pg.py starts the server). Without the advisory lock one creator fails with a
duplicate ``pg_type`` row or ``relation ... already exists``."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.pg import postgres_url
from tests.store_schema_race import race

__all__ = ["postgres_url"]

pytestmark = pytest.mark.postgres

ROUNDS = 10


async def test_two_creators_at_once(postgres_url: str) -> None:
    names = [f"race_{uuid.uuid4().hex[:10]}" for _ in range(ROUNDS)]
    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        for name in names:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = postgres_url.rsplit("/", 1)[0]
    try:
        outcomes = await asyncio.to_thread(race, lambda n: f"{base}/{names[n]}", rounds=ROUNDS)
        assert outcomes == ["ok"] * (2 * ROUNDS)
    finally:
        async with admin.connect() as conn:
            for name in names:
                await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()
