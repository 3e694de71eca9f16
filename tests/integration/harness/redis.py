"""A real ``redis-server`` and ``redis-sentinel`` (Debian's packages) on loopback, for the cluster
tests (shared design ``cluster.md`` §7 "Harness").

Owns ``RedisServer`` (no persistence: ``--save ""``, ``--appendonly no``; 127.0.0.1 on a free
port; ``restart()`` brings it back empty on the same port; ``extra`` settings such as
``min-replicas-to-write``) and ``RedisSentinel`` (a Sentinel monitoring a server,
``down-after-milliseconds 1000``, quorum 1 unless told; several form a set when each has its own
directory). Each waits until it answers
``PING`` and is stopped by PID (SIGTERM, then SIGKILL). Logs go to files in the test's tmp dir.
Fixtures: ``redis_server`` (one per module, flushed before each test) and ``redis_sentinel``.

Does not import zvonok.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .server import free_port

START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
MASTER_NAME = "zvonok"


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} not found: install Debian's {package} (./dev test does)")
    return path


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether something on 127.0.0.1:``port`` answers a RESP ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command (RESP array of bulk strings) and return the raw first reply chunk."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(65536)


class _Process:
    """A child process started from ``argv`` and stopped by its PID."""

    def __init__(self, root: Path, name: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.name = name
        self.port = free_port()
        self.log_file = root / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str]) -> None:
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.name} did not start:\n{self.log_text()}")
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


class RedisServer(_Process):
    """One ``redis-server`` without persistence on 127.0.0.1 (a replica of ``replica_of``'s
    port when given)."""

    def __init__(
        self, root: Path, *, replica_of: int | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        super().__init__(root, "redis-server")
        self.replica_of = replica_of
        self.extra = extra
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._spawn(
            [
                _binary("redis-server", "redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",  # a replica links at once, not after 5 s
                "0",
                "--dir",
                str(self.root),
                *(["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []),
                *self.extra,
            ]
        )

    def role(self) -> str:
        """``master`` or ``slave`` (what ``ROLE`` answers first)."""
        reply = command(self.port, "ROLE")
        return reply.split(b"\r\n")[2].decode()

    def wait_linked(self) -> None:
        """A replica: wait until its link to the master is up."""
        deadline = time.monotonic() + START_TIMEOUT
        while b"master_link_status:up" not in command(self.port, "INFO", "replication"):
            if time.monotonic() > deadline:
                raise AssertionError(f"replica never linked:\n{self.log_text()}")
            time.sleep(0.05)

    def restart(self) -> None:
        """Stop, then start empty on the same port (what ``zv:gen`` must notice)."""
        self.stop()
        self.start()

    def flushall(self) -> None:
        assert command(self.port, "FLUSHALL").startswith(b"+OK")


class RedisSentinel(_Process):
    """One ``redis-sentinel`` monitoring ``server`` as master ``MASTER_NAME`` (``quorum``
    Sentinels must agree that it is down; ``down_after_ms`` without an answer makes it so)."""

    def __init__(
        self, root: Path, server: RedisServer, *, quorum: int = 1, down_after_ms: int = 1000
    ) -> None:
        super().__init__(root, "redis-sentinel")
        self.config = root / "sentinel.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {root}",
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {server.port} {quorum}",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
                    "",
                ]
            )
        )
        self._spawn([_binary("redis-sentinel", "redis-sentinel"), str(self.config)])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_replicas(self, count: int) -> None:
        """Wait until Sentinel knows ``count`` replicas of the master."""
        deadline = time.monotonic() + START_TIMEOUT
        while command(self.port, "SENTINEL", "REPLICAS", MASTER_NAME).count(b"slave") < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"sentinel never saw the replica:\n{self.log_text()}")
            time.sleep(0.05)

    def wait_sentinels(self, count: int) -> None:
        """Wait until this Sentinel knows ``count`` other Sentinels of the master."""
        deadline = time.monotonic() + START_TIMEOUT
        while command(self.port, "SENTINEL", "SENTINELS", MASTER_NAME).count(b"runid") < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"sentinel never saw the others:\n{self.log_text()}")
            time.sleep(0.05)

    def master_port(self) -> int:
        """The port of the master this Sentinel names now."""
        reply = command(self.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return int(reply.split(b"\r\n")[4])

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: promote a replica now, without agreement (retried while
        Sentinel has not heard from the replica yet: ``NOGOODSLAVE``)."""
        deadline = time.monotonic() + START_TIMEOUT
        while not (reply := command(self.port, "SENTINEL", "FAILOVER", MASTER_NAME)).startswith(
            b"+OK"
        ):
            if not reply.startswith(b"-NOGOODSLAVE") or time.monotonic() > deadline:
                raise AssertionError(f"{reply!r}\n{self.log_text()}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def _redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(_redis_process: RedisServer) -> RedisServer:
    """A running, empty ``redis-server`` (shared by a module, flushed for each test)."""
    if not ping(_redis_process.port):
        _redis_process.start()
    _redis_process.flushall()
    return _redis_process


@pytest.fixture
def redis_sentinel(tmp_path: Path, redis_server: RedisServer) -> Iterator[RedisSentinel]:
    """A ``redis-sentinel`` watching ``redis_server``."""
    sentinel = RedisSentinel(tmp_path / "sentinel", redis_server)
    try:
        yield sentinel
    finally:
        sentinel.stop()
