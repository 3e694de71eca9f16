"""Two processes creating zvonok's tables in one database at the same moment, many times over.

Two nodes started together on one data dir (or one ``database_url``) both create the schema at
start (issue 14). ``race`` runs ``create_schema`` of a fresh store in each of ``creators``
processes, released at one shared instant, ``rounds`` times, and returns every outcome
(``"ok"`` or the error). The SQLite tests (tests/unit) and the PostgreSQL one
(tests/integration/test_store_postgres.py) share it; the creators are real processes (spawned),
like two nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from tests.store_scenarios import chat, grants
from zvonok.store.base import embedded_database_path
from zvonok.store.embedded import EmbeddedMembershipStore
from zvonok.store.sql import SqlMembershipStore

#: How far ahead of now the creators of one round are told to start (they must all be waiting).
LEAD_TIME = 0.15


def create_at(target: str, start: float) -> str:
    """In a creator process: wait until ``start`` (wall clock), create the schema once, then ask
    a membership question (it fails if a table is missing). ``target`` is a ``database_url`` or a
    data dir (the embedded store, created as ``zvonok serve`` creates it)."""

    async def go() -> str:
        store: EmbeddedMembershipStore | SqlMembershipStore
        if "://" in target:
            store = SqlMembershipStore(target, timeout=10.0)
        else:
            store = EmbeddedMembershipStore(embedded_database_path(Path(target)), timeout=10.0)
        try:
            await asyncio.sleep(max(0.0, start - time.time()))
            await store.create_schema()
            member = await store.is_member(grants("u1"), chat("1"))  # the tables are there
            return "ok" if member is False else f"member: {member}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            await store.close()

    return asyncio.run(go())


def race(targets: Callable[[int], str], *, rounds: int, creators: int = 2) -> list[str]:
    """``rounds`` rounds of ``creators`` simultaneous creators on ``targets(round)``."""
    outcomes: list[str] = []
    with ProcessPoolExecutor(creators, mp_context=get_context("spawn")) as pool:
        # warm the pool up: every process imported the stores before the first round
        list(pool.map(time.sleep, [0.0] * creators))
        for number in range(rounds):
            target = targets(number)
            start = time.time() + LEAD_TIME
            futures = [pool.submit(create_at, target, start) for _ in range(creators)]
            outcomes.extend(f.result(timeout=60) for f in futures)
    return outcomes
