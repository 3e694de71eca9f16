"""A real, throwaway PostgreSQL server for tests: initdb into a temp dir, run on 127.0.0.1.

``postgres_url`` is a session-scoped pytest fixture (import it into a test module) yielding a
``postgresql+asyncpg://`` URL; ``database`` (import both) a fresh database on it per test. The
server listens on a free loopback port with its unix socket in the temp dir, runs as the
``postgres`` OS user (through ``runuser``) when the tests run as root, and is stopped by its PID
at the end. Missing PostgreSQL binaries FAIL the tests (never skip).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

#: Where Debian puts the server binaries; ``PG_BIN`` overrides.
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``; fails the test run if there is none."""
    candidates = [os.environ.get("PG_BIN", "")] + sorted(glob.glob(PG_BIN_GLOB), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    pytest.fail(
        "PostgreSQL server binaries (initdb, postgres) not found: install them "
        "(apt-get install postgresql) or set PG_BIN to their directory",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One running server; ``stop`` ends it by PID and removes its directory."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGINT)  # "fast" shutdown
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def start_postgres() -> PostgresServer:
    """initdb + start; returns once the server accepts connections."""
    bin_dir = find_bin_dir()
    # Directly under /tmp: the postgres user must be able to reach it, and a unix socket path
    # must stay short (about 100 bytes), whatever TMPDIR says.
    root = Path(
        tempfile.mkdtemp(prefix="zvonok-pg-", dir="/tmp" if Path("/tmp").is_dir() else None)
    )
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    data = root / "data"
    subprocess.run(
        _as_postgres(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
            + ["--no-sync", "-E", "UTF8", "--no-locale"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    log = open(root / "postgres.log", "wb")  # closed once Popen has it
    process = subprocess.Popen(
        _as_postgres(
            [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
            + ["-k", str(root), "-F", "-c", "max_connections=30"]
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    server = PostgresServer(root, port, process)
    _wait_ready(server, bin_dir)
    return server


def _wait_ready(server: PostgresServer, bin_dir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            output = (server.root / "postgres.log").read_text(errors="replace")
            server.stop()
            pytest.fail(f"postgres exited with {server.process.returncode}:\n{output}")
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port), "-q"],
            timeout=10,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"postgres did not become ready within {START_TIMEOUT} s")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A ``postgresql+asyncpg://`` URL to a fresh server, stopped at the end of the session."""
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    """A fresh database per test on the shared server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()
