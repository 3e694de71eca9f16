"""The server under test: start our own ``zvonok serve`` or use a running one; read its /proc.

Owns ``Target`` (WebSocket URLs, tokens signed with the server's secret, rooms created in its
embedded SQL store — the same code the ``zvonok chat/group create`` commands run), ``spawn_server``
(a ``python -m zvonok serve`` subprocess on free loopback ports with a temp data dir, stopped by
PID; ``workers`` media worker processes behind its front when asked), ``worker_pids`` (a
server's media workers, by worker name, from its children's command lines), ``room_workers``
(which worker holds each room, from its ``/debug/state``), ``start_process``/``stop_process``
(a server under test in its own session, ended by PID; the Janus target uses them too) and
``ProcStat`` (CPU time and RSS of a process and all its descendants: the nanosecond run time of
every thread from ``/proc/<pid>/task/<tid>/schedstat``, the 10 ms-tick utime/stime split from
``/proc/<pid>/stat``, RSS from ``/proc/<pid>/status``). Imports the auth/store modules only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..auth.secret import load_or_create_secret
from ..auth.tokens import issue_token
from ..store.base import embedded_database_path
from ..store.embedded import EmbeddedMembershipStore

START_TIMEOUT = 20.0
_TICKS = os.sysconf("SC_CLK_TCK")


#: Seconds a draining zvonok node gets between the first SIGTERM and the second (stop now).
DRAIN_GRACE = 0.25
#: Seconds a process we started gets between SIGTERM and SIGKILL.
STOP_TIMEOUT = 10.0


def free_port(kind: int) -> int:
    """A port on 127.0.0.1 that is free now (``SOCK_STREAM`` or ``SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ProcStat:
    """CPU seconds and RSS bytes of ``pid`` and its descendants."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _tree(self) -> list[int]:
        parents: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    stat = Path(f"/proc/{name}/stat").read_text()
                except OSError:
                    continue
                parents[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, todo = [self.pid], [self.pid]
        while todo:
            parent = todo.pop()
            children = [p for p, pp in parents.items() if pp == parent]
            found += children
            todo += children
        return found

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds: utime and stime, fields 14 and 15 of /proc/<pid>/stat."""
        user = system = 0
        for pid in self._tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            user += int(fields[11])
            system += int(fields[12])
        return user / _TICKS, system / _TICKS

    def cpu_seconds(self) -> float:
        """CPU seconds of the tree, in nanoseconds where the kernel keeps them: the sum of every
        live thread's run time (``schedstat`` field 1; a thread that exited meanwhile is not
        counted, the bench's servers keep theirs). ``cpu_times``' clock ticks (10 ms each) are
        too coarse for a process that runs a few milliseconds a second, such as an idle media
        worker or the front. Falls back to the ticks without ``schedstat``."""
        total = 0
        for pid in self._tree():
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    text = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text()
                except FileNotFoundError:
                    continue  # the thread or the process exited meanwhile
                except OSError:
                    return sum(self.cpu_times())
                total += int(text.split()[0])
        return total / 1e9

    def rss_bytes(self) -> int:
        total = 0
        for pid in self._tree():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total


@dataclass
class Target:
    """Where the server is and how to get in."""

    http_url: str
    data_dir: Path
    pid: int | None
    process: subprocess.Popen[bytes] | None = None

    def ws_url(self, kind: str, room_id: str) -> str:
        return self.http_url.replace("http", "ws", 1) + f"/api/v1/{kind}/{room_id}/call"

    def token(self, user: str) -> str:
        return issue_token(load_or_create_secret(self.data_dir), user, 3600.0)

    async def create_rooms(self, rooms: list[tuple[str, str, list[str]]]) -> None:
        """Create (kind, id, members) rooms in the server's embedded database."""
        store = EmbeddedMembershipStore(embedded_database_path(self.data_dir), timeout=10.0)
        try:
            await store.create_schema()
            for kind, room_id, members in rooms:
                if kind == "chat":
                    await store.create_chat(members, room_id)
                else:
                    await store.create_group(members, room_id)
        finally:
            await store.close()

    def stop(self) -> None:
        """SIGTERM our own server by PID, SIGKILL after 10 s. Nothing for ``--url``."""
        if self.process is not None:
            stop_process(self.process)


async def spawn_server(
    data_dir: Path,
    *,
    uvloop: bool = True,
    workers: int = 1,
    extra_env: Mapping[str, str] | None = None,
    log_name: str = "server.log",
) -> Target:
    """``python -m zvonok serve`` on free loopback ports; returns when /healthz answers.

    ``workers`` > 1: a front process and that many media worker processes (``ZVONOK_WORKERS``),
    worker i on UDP port media port + i, so those ports must be free too. ``extra_env`` adds
    ``ZVONOK_*`` settings (a cluster node's); ``log_name``: its output in ``data_dir``.
    """
    port = free_port(socket.SOCK_STREAM)
    media_port = free_port(socket.SOCK_DGRAM) if workers == 1 else _free_udp_range(workers)
    env = {
        **os.environ,
        "ZVONOK_WORKERS": str(workers),
        "ZVONOK_CONNECT_RATE": "10000",
        "ZVONOK_CONNECT_BURST": "10000",
        "ZVONOK_MAX_CONNECTIONS_PER_IP": "10000",  # every simulated client is 127.0.0.1
        "ZVONOK_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    load_or_create_secret(data_dir)
    argv = [
        sys.executable, "-m", "zvonok", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--media-port", str(media_port), "--data-dir", str(data_dir),
        "--announce-ip", "127.0.0.1", "--log-format", "json",
    ]  # fmt: skip
    process = start_process(argv, data_dir / log_name, env=env)
    target = Target(f"http://127.0.0.1:{port}", data_dir, process.pid, process)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"zvonok serve exited with {process.returncode}; see {data_dir}")
        if await asyncio.to_thread(_healthy, target.http_url):
            return target
        await asyncio.sleep(0.1)
    target.stop()
    raise RuntimeError(f"zvonok serve did not answer within {START_TIMEOUT} s")


def start_process(
    argv: list[str], log_path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server under test in its own session, its output in ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=cwd, start_new_session=True,
        )  # fmt: skip


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process we started, by PID, and again after ``DRAIN_GRACE`` (a zvonok node
    drains on the first and stops at once on the second); SIGKILL after ``STOP_TIMEOUT``.
    Idempotent."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(DRAIN_GRACE)
        return
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _free_udp_range(count: int) -> int:
    """The first of ``count`` consecutive UDP ports on 127.0.0.1 that are free now."""
    for _ in range(100):
        first = free_port(socket.SOCK_DGRAM)
        if first + count > 65536:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free UDP ports on 127.0.0.1")


def worker_pids(pid: int) -> dict[str, int]:
    """The media workers of the server ``pid``: worker name (its ``--index``) -> PID.

    Its children from ``/proc/<pid>/task/*/children`` whose command line is
    ``python -m zvonok.relay.worker --index i ...``; empty for a one-process server.
    """
    children: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(c) for c in path.read_text().split()]
        except OSError:
            continue
    found: dict[str, int] = {}
    for child in children:
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"zvonok.relay.worker" in argv and b"--index" in argv[:-1]:
            found[argv[argv.index(b"--index") + 1].decode()] = child
    return dict(sorted(found.items(), key=lambda item: int(item[0])))


def room_workers(http_url: str) -> dict[str, str]:
    """Room key (``group:<id>``) -> the worker holding it, from the node's ``/debug/state``.

    Dev mode only (the bench's own server on loopback has it); empty for a one-process node.
    """
    with urllib.request.urlopen(http_url + "/debug/state", timeout=5) as resp:
        state = json.loads(resp.read())
    return {key: str(room["worker"]) for key, room in state["rooms"].items() if "worker" in room}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
