"""Two nodes started at the same moment on one SQLite database both come up (issue 14): schema
creation tolerates a concurrent creator, in the embedded store and in the SQLAlchemy store on an
SQLite ``database_url`` (which, before, failed one creator in every round with ``table
zvonok_chats already exists``). Real processes, released at one instant, many rounds."""

from __future__ import annotations

from pathlib import Path

from tests.store_schema_race import race

ROUNDS = 15


def test_embedded_store_two_creators_at_once(tmp_path: Path) -> None:
    outcomes = race(lambda n: str(tmp_path / f"data{n}"), rounds=ROUNDS)
    for n in range(ROUNDS):
        assert (tmp_path / f"data{n}" / "zvonok.db").exists()
    assert outcomes == ["ok"] * (2 * ROUNDS)


def test_sqlalchemy_sqlite_two_creators_at_once(tmp_path: Path) -> None:
    outcomes = race(lambda n: f"sqlite+aiosqlite:///{tmp_path}/db{n}.sqlite", rounds=ROUNDS)
    assert outcomes == ["ok"] * (2 * ROUNDS)
