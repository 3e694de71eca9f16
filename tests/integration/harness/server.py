"""A real zvonok server as a subprocess, for tests that drive real clients against it.

Owns ``ZvonokServer`` (start ``python -m zvonok serve`` on free loopback ports with a temp data
dir, wait until its HTTP port answers, issue tokens and create chats/groups through the CLI,
capture its log, stop it by PID), the ``CallServer`` protocol the peers need (``ws_url`` and
``token``), and the fixtures ``zvonok_server`` (function scope: a fresh server, data dir and
room ids per test) and ``zvonok_server_factory`` (start servers with extra flags or
``ZVONOK_*`` environment; all stopped at the end of the test, whose teardown then fails on any
ERROR record or traceback in their logs that the test's ``allow_errors`` marker does not cover;
see errors.py).

Does not import zvonok: the server is a black box reached through its CLI, HTTP and WebSocket.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from . import errors

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
#: ``stop``: the longest the first SIGTERM (a drain: a node without rooms exits at once) gets
#: before the second one (stop now: every session told ``shutdown``); the second one goes as soon
#: as the server has logged that it drains (two signals sent at once could merge into one).
DRAIN_GRACE = 0.5
DRAIN_LOGGED = "draining (SIGTERM)"
CLI_TIMEOUT = 30.0
LOG_LINES = 20000


class CallServer(Protocol):
    """What a peer needs from a server: where to connect and a token for a user."""

    def ws_url(self, kind: str, room_id: str) -> str: ...

    def token(self, user: str, ttl: float = 3600.0) -> str: ...


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 right now (TCP or, with SOCK_DGRAM, UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ZvonokServer:
    """One running ``zvonok serve``; ``stop`` ends it by PID (SIGTERM twice, then SIGKILL)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        health_path: str = "/healthz",
    ) -> None:
        self.data_dir = data_dir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.media_port = free_port(socket.SOCK_DGRAM)
        self.health_path = health_path
        self._env = {**os.environ, **(env or {})}
        self._lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = list(command) if command is not None else self.serve_command()
        argv = [a.format(port=self.port, media_port=self.media_port) for a in argv]
        self.process = subprocess.Popen(
            [*argv, *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def serve_command(self) -> list[str]:
        return [
            sys.executable, "-m", "zvonok", "serve",
            "--host", self.host,
            "--port", str(self.port),
            "--media-port", str(self.media_port),
            "--data-dir", str(self.data_dir),
            *([] if os.environ.get("ZVONOK_TEST_ZERO_CONFIG") else ["--announce-ip", "127.0.0.1"]),
            "--log-format", "json",
        ]  # fmt: skip

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, kind: str, room_id: str) -> str:
        if kind not in ("chat", "group"):
            raise ValueError(f"room kind must be chat or group, not {kind!r}")
        return f"ws://{self.host}:{self.port}/api/v1/{kind}/{room_id}/call"

    def log_tail(self, count: int = 40) -> str:
        return "\n".join(list(self._lines)[-count:])

    def logs(self) -> list[dict[str, Any] | str]:
        """Every captured output line, as a dict when it is a JSON object."""
        out: list[dict[str, Any] | str] = []
        for line in list(self._lines):
            try:
                value = json.loads(line)
            except ValueError:
                out.append(line)
                continue
            out.append(value if isinstance(value, dict) else line)
        return out

    def problems(self) -> list[str]:
        """The ERROR/CRITICAL records and tracebacks captured so far (errors.server_problems)."""
        return errors.server_problems(list(self._lines))

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until GET ``health_path`` answers 200; fails with the output tail otherwise."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        for _ in range(int(timeout / 0.1) + 1):
            code = self.process.poll()
            if code is not None:
                self._reader.join(2)
                raise AssertionError(
                    f"zvonok serve exited with {code} before answering:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.http_url + self.health_path, timeout=1) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except (OSError, urllib.error.URLError) as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(
            f"zvonok serve did not answer on {self.http_url} within {timeout} s ({last}):\n"
            + self.log_tail()
        )

    def cli(self, *args: str) -> str:
        """Run ``python -m zvonok <args> --data-dir D``; its stdout, stripped."""
        argv = [sys.executable, "-m", "zvonok", *args, "--data-dir", str(self.data_dir)]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=self._env, timeout=CLI_TIMEOUT, check=False
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv[1:])} exited with {done.returncode}:\n{done.stderr.strip()}"
            )
        return done.stdout.strip()

    def token(self, user: str, ttl: float = 3600.0) -> str:
        return self.cli("token", "--user", user, "--ttl", str(ttl))

    def create_chat(self, members: Sequence[str], room_id: str | None = None) -> str:
        extra = ["--id", room_id] if room_id is not None else []
        return self.cli("chat", "create", "--members", ",".join(members), *extra).splitlines()[-1]

    def create_group(self, members: Sequence[str], room_id: str | None = None) -> str:
        extra = ["--id", room_id] if room_id is not None else []
        return self.cli("group", "create", "--members", ",".join(members), *extra).splitlines()[-1]

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM by PID (the node drains; without rooms it exits at once), a second SIGTERM once
        it logged the drain or after ``DRAIN_GRACE`` (the node stops now, as an operator's second
        SIGTERM does), SIGKILL after ``timeout``; returns the exit code. Idempotent."""
        if self.process.poll() is None:
            seen = len(self._lines)
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + DRAIN_GRACE
            while self.process.poll() is None and time.monotonic() < deadline:
                if any(DRAIN_LOGGED in line for line in list(self._lines)[seen:]):
                    break
                time.sleep(0.01)
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
        self._reader.join(2)
        return self.process.returncode


class ServerFactory:
    """Starts servers for one test and stops them all at its end."""

    def __init__(self, root: Path, allowed: errors.Allowed | None = None) -> None:
        self.root = root
        self.allowed = allowed or errors.Allowed()
        self.servers: list[ZvonokServer] = []

    def start(
        self,
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        health_path: str = "/healthz",
        timeout: float = START_TIMEOUT,
    ) -> ZvonokServer:
        data_dir = self.root / f"server{len(self.servers)}"
        server = ZvonokServer(
            data_dir, extra_args=extra_args, env=env, command=command, health_path=health_path
        )
        self.servers.append(server)
        server.wait_ready(timeout)
        return server

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def check_logs(self) -> None:
        """Fail on an ERROR record or traceback of any server that the allow-list does not cover."""
        for n, server in enumerate(self.servers):
            errors.check(f"zvonok server {n} (log)", server.problems(), self.allowed.server)


@pytest.fixture
def zvonok_server_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerFactory]:
    """``factory.start(extra_args=..., env={"ZVONOK_RESUME_GRACE": "2"})`` per test; at its end
    every server is stopped and its log must hold no unexpected error (errors.py)."""
    factory = ServerFactory(tmp_path, errors.Allowed.of(request))
    try:
        yield factory
    finally:
        factory.close()
    factory.check_logs()


@pytest.fixture
def zvonok_server(zvonok_server_factory: ServerFactory) -> ZvonokServer:
    """A fresh real server (own ports and data dir) for one test."""
    return zvonok_server_factory.start()
