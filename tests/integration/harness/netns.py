"""Emulated networks for browser tests: a network namespace per client, shaped with ``tc`` and a
userspace link emulator.

Owns ``EmulatedNetwork`` and its fixture ``emulated_network`` (function scope). Topology, as in
/work/shared/testing/real-clients.md "Emulated networks": a server namespace with a bridge
``br0`` holding 198.18.0.1/24, and one namespace per client joined to the bridge by a veth pair
(the server end ``vsN`` is a bridge port in the server namespace, the client end ``eth0`` holds
198.18.0.N+1/24). No interface is created in the namespace the tests run in, every address is
in 198.18.0.0/15, and names carry the test process's pid and a counter, so runs never meet.

A client's **downlink** (what the server sends it) and **uplink** are shaped separately
(``Shaping``): the rate with ``tbf`` on the sending end (``vsN`` for the downlink, the client's
``eth0`` for the uplink); a delay (and jitter) by a link emulator (harness/linkemu.py: a process
holding the frames back in a TAP device, to which a ``tc`` filter on the *receiving* end's ingress
redirects every IPv4 frame), which then also does that direction's random loss; random loss
without a delay is an nftables rule (``numgen random``) on the receiving side's input hook (the
client's namespace for the downlink, the server's, matching the client's address, for the
uplink). The emulator is used for every delay, never ``netem``: this machine's kernel has no
``sch_netem``, and one mechanism everywhere keeps what a test measured here true wherever it runs.
``shape`` replaces the shaping of one direction at any time during a test and ``lift`` removes
it (the emulator's process ended by its pid, its TAP going with it); ``ShapingUnavailable`` says
the kernel lacks a part a shaping needs (TUN, ``ingress``/``u32``/``mirred``).

The server runs inside the server namespace (``ip netns exec``, started and stopped like every
harness server by ``ServerFactory``, so its log is checked at the end of the test) bound to
0.0.0.0 and announcing 198.18.0.1. The test process stays where it is; it reaches the server's
HTTP port from a short-lived thread that enters the server namespace (``setns`` affects only the
calling thread). Chromium runs in a client namespace through a wrapper script given to Playwright
as ``executable_path`` (``exec ip netns exec <ns> chromium "$@"``: the DevTools pipe crosses the
namespace switch), with ``http://198.18.0.1:<port>`` treated as a secure origin (getUserMedia)
and exempt from the dead proxy.

``close`` (the fixture's teardown, also after a failure) closes the browsers, ends the link
emulators, stops the servers started here and deletes every namespace it created; ``setup`` first
deletes the namespaces of this harness whose test process is gone (killed before its teardown;
an emulator whose parent is gone ends itself). Every command and wait has a timeout.

Needs root (``ip``, ``tc``). Imports the harness and playwright; never zvonok.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.async_api import Browser, Playwright, async_playwright

from . import linkemu
from .chromium import CHROMIUM, CHROMIUM_FLAGS
from .server import START_TIMEOUT, ServerFactory, ZvonokServer

SERVER_ADDRESS = "198.18.0.1"
PREFIX_LENGTH = 24
MAX_CLIENTS = 200
COMMAND_TIMEOUT = 30.0
CLONE_NEWNET = 0x40000000
NFT = "/usr/sbin/nft"
EMULATOR_START_TIMEOUT = 10.0
EMULATOR_STOP_TIMEOUT = 5.0
_networks = itertools.count(1)
#: The names this harness gives namespaces: ``zvn-s-<pid>-<n>`` and ``zvn-c<i>-<pid>-<n>``.
_OUR_NAMESPACE = re.compile(r"^zvn-(?:s|c\d+)-(\d+)-\d+$")
T = TypeVar("T")


def run(*argv: str, check: bool = True) -> str:
    """One ``ip``/``tc`` command; its stdout. Fails with its stderr when ``check``."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr}")
    return done.stdout


def in_namespace(namespace: str, fn: Callable[[], T], timeout: float = COMMAND_TIMEOUT) -> T:
    """``fn()`` in a fresh thread that has entered ``namespace`` (its sockets live there)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    value: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace} failed")
            finally:
                os.close(fd)
            value.append(fn())
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"a call inside {namespace} did not return within {timeout} s")
    if error:
        raise error[0]
    return value[0]


class ShapingUnavailable(AssertionError):
    """The kernel lacks what a shaping needs (TUN and ``ingress``/``u32``/``mirred`` for a
    delay)."""


@dataclass(frozen=True)
class Shaping:
    """One direction of one link: ``rate_kbit`` (tbf; None: unlimited), ``delay_ms`` and
    ``jitter_ms`` (the link emulator), ``loss`` (0..1; the emulator's when there is a delay,
    else nftables), ``queue_ms``: how long tbf lets packets wait before dropping them."""

    rate_kbit: int | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    queue_ms: float = 100.0

    @property
    def emulated(self) -> bool:
        """Whether this shaping needs the link emulator (a delay or jitter)."""
        return bool(self.delay_ms or self.jitter_ms)

    def tc_commands(self, device: str) -> list[list[str]]:
        """The ``tc qdisc`` arguments (after ``tc``) that set this shaping's rate on ``device``."""
        if self.rate_kbit is None:
            return []
        burst_bytes = max(2000, int(self.rate_kbit * 1000 / 8 * 0.02))  # >= MTU, ~20 ms
        return [["qdisc", "replace", "dev", device, "root", "tbf", "rate", f"{self.rate_kbit}kbit",
                 "burst", str(burst_bytes), "latency", f"{self.queue_ms}ms"]]  # fmt: skip

    def emulator_args(self) -> list[str]:
        """The link emulator's options for this shaping (delay, jitter, loss)."""
        return ["--delay-ms", str(self.delay_ms), "--jitter-ms", str(self.jitter_ms),
                "--loss", str(self.loss)]  # fmt: skip


@dataclass
class RunningEmulator:
    """A link emulator process on one direction of one client's link."""

    process: subprocess.Popen[bytes]
    namespace: str
    device: str  # the receiving end whose ingress is redirected through ``tap``
    tap: str
    output: Path  # its stdout: "ready", then a line of counters a second

    def counters(self) -> dict[str, int]:
        """Its latest counters (frames in/out/lost/overflow, held); empty before the first."""
        lines = self.output.read_text(errors="replace").splitlines()
        for line in reversed(lines):
            try:
                counters: dict[str, int] = json.loads(line)
            except json.JSONDecodeError:  # "ready", or the line being written
                continue
            return counters
        return {}


def remove_orphans() -> None:
    """Delete the namespaces of this harness left by a test process that no longer exists
    (killed before its teardown ran)."""
    for line in run("ip", "netns", "list", check=False).splitlines():
        name = line.split(" ", 1)[0]
        match = _OUR_NAMESPACE.match(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            run("ip", "netns", "del", name, check=False)


@dataclass(frozen=True)
class Client:
    """A client namespace: its name, address, and the two ends of its link."""

    index: int
    namespace: str
    address: str
    server_end: str  # in the server namespace: what the server sends this client leaves here
    client_end: str = "eth0"


class EmulatedNetwork:
    """The namespaces of one test; ``close`` removes them all."""

    def __init__(self, root: Path, servers: ServerFactory) -> None:
        self.root = root
        self.servers = servers
        self.tag = f"{os.getpid()}-{next(_networks)}"
        self.server_namespace = f"zvn-s-{self.tag}"
        self.clients: list[Client] = []
        self._namespaces: list[str] = []
        self._started: list[ZvonokServer] = []
        self._browsers: list[Browser] = []
        self._playwright: Playwright | None = None
        self._emulators: dict[tuple[int, str], RunningEmulator] = {}

    def setup(self) -> None:
        """The server namespace and its bridge (``close`` removes whatever was made)."""
        remove_orphans()
        self._add_namespace(self.server_namespace)
        ns = self.server_namespace
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", ns, "addr", "add", f"{SERVER_ADDRESS}/{PREFIX_LENGTH}", "dev", "br0")
        run("ip", "-n", ns, "link", "set", "br0", "up")

    def _add_namespace(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self._namespaces.append(name)

    def add_client(self) -> Client:
        """A new client namespace on its own veth pair into the bridge (198.18.0.2, .3, ...)."""
        index = len(self.clients) + 1
        if index > MAX_CLIENTS:
            raise AssertionError("too many clients for one /24")
        namespace = f"zvn-c{index}-{self.tag}"
        client = Client(index, namespace, f"198.18.0.{index + 1}", f"vs{index}")
        self._add_namespace(namespace)
        ns = self.server_namespace
        run("ip", "-n", ns, "link", "add", client.server_end, "type", "veth",
            "peer", "name", client.client_end, "netns", namespace)  # fmt: skip
        run("ip", "-n", ns, "link", "set", client.server_end, "master", "br0")
        run("ip", "-n", ns, "link", "set", client.server_end, "up")
        run("ip", "-n", namespace, "link", "set", "lo", "up")
        run("ip", "-n", namespace, "addr", "add", f"{client.address}/{PREFIX_LENGTH}",
            "dev", client.client_end)  # fmt: skip
        run("ip", "-n", namespace, "link", "set", client.client_end, "up")
        self.clients.append(client)
        return client

    # ------------------------------------------------------------------ shaping

    def shape(self, client: Client, direction: str, shaping: Shaping) -> None:
        """Set (or replace) the shaping of ``client``'s ``"down"``link (server → client) or
        ``"up"``link; a ``Shaping()`` with nothing set lifts it."""
        namespace, device = self._end(client, direction)
        self.lift(client, direction)
        for argv in shaping.tc_commands(device):
            run("tc", "-n", namespace, *argv)
        if shaping.emulated:
            self._emulate(client, direction, shaping)
        elif shaping.loss:
            self._drop(client, direction, shaping.loss)

    def _emulate(self, client: Client, direction: str, shaping: Shaping) -> None:
        """Start a link emulator on the receiving end of that direction and redirect the
        direction's IPv4 frames through it (``lift`` undoes both)."""
        namespace, device = self._receiving_end(client, direction)
        tap = f"ze{client.index}{direction[0]}"
        output = self.root / f"linkemu-{tap}-{self.tag}.out"
        errors = self.root / f"linkemu-{tap}-{self.tag}.err"
        with output.open("wb") as out, errors.open("wb") as err:
            process = subprocess.Popen(
                ["ip", "netns", "exec", namespace, sys.executable, linkemu.__file__,
                 "--tap", tap, *shaping.emulator_args()],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        emulator = RunningEmulator(process, namespace, device, tap, output)
        self._emulators[(client.index, direction)] = emulator
        deadline = time.monotonic() + EMULATOR_START_TIMEOUT
        while not output.read_text(errors="replace").startswith("ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                self._stop_emulator(client, direction)
                problem = errors.read_text(errors="replace").strip()
                if "/dev/net/tun" in problem:
                    raise ShapingUnavailable(f"no TUN device for the link emulator: {problem}")
                raise AssertionError(f"the link emulator did not start: {problem}")
            time.sleep(0.05)
        for argv in linkemu.tc_redirect(namespace, device, tap):
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
            )
            if done.returncode != 0:
                self._stop_emulator(client, direction)
                message = f"{' '.join(argv)}: {done.stderr.strip()}"
                if "nknown" in done.stderr or "not supported" in done.stderr.lower():
                    raise ShapingUnavailable(f"the kernel cannot redirect frames: {message}")
                raise AssertionError(message)

    def _stop_emulator(self, client: Client, direction: str) -> None:
        """Undo the redirect, then end the emulator's process by its pid."""
        emulator = self._emulators.pop((client.index, direction), None)
        if emulator is None:
            return
        run("tc", "-n", emulator.namespace, "qdisc", "del", "dev", emulator.device, "ingress",
            check=False)  # fmt: skip
        if emulator.process.poll() is None:
            emulator.process.terminate()
            try:
                emulator.process.wait(EMULATOR_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                emulator.process.kill()
                emulator.process.wait(EMULATOR_STOP_TIMEOUT)

    def emulator_counters(self, client: Client, direction: str) -> dict[str, int] | None:
        """The link emulator's latest counters on that direction; None when none runs."""
        emulator = self._emulators.get((client.index, direction))
        return None if emulator is None else emulator.counters()

    def emulator_pid(self, client: Client, direction: str) -> int | None:
        """The pid of the link emulator on that direction; None when none runs."""
        emulator = self._emulators.get((client.index, direction))
        return None if emulator is None else emulator.process.pid

    def _drop(self, client: Client, direction: str, loss: float) -> None:
        """Drop ``loss`` of the packets of that direction at random, where they arrive."""
        if direction == "down":
            namespace, match = client.namespace, f"ip saddr {SERVER_ADDRESS}"
        else:
            namespace, match = self.server_namespace, f"ip saddr {client.address}"
        per_100k = round(loss * 100_000)
        rules = (
            f"table inet {self._loss_table(client, direction)} {{\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    {match} numgen random mod 100000 < {per_100k} counter drop\n"
            "  }\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", namespace, NFT, "-f", "-"],
            input=rules, text=True, capture_output=True, timeout=COMMAND_TIMEOUT, check=True,
        )  # fmt: skip

    @staticmethod
    def _loss_table(client: Client, direction: str) -> str:
        return f"zvn_loss_{client.index}_{direction}"

    def lift(self, client: Client, direction: str) -> None:
        """Remove any shaping of that direction (the link runs at veth speed again)."""
        namespace, device = self._end(client, direction)
        run("tc", "-n", namespace, "qdisc", "del", "dev", device, "root", check=False)
        loss_namespace = client.namespace if direction == "down" else self.server_namespace
        table = self._loss_table(client, direction)
        run("ip", "netns", "exec", loss_namespace, NFT, "delete", "table", "inet", table,
            check=False)  # fmt: skip
        self._stop_emulator(client, direction)

    def qdisc_stats(self, client: Client, direction: str) -> str:
        """``tc -s qdisc show`` of that end (sent/dropped counters), for test messages."""
        namespace, device = self._end(client, direction)
        stats = run("tc", "-n", namespace, "-s", "qdisc", "show", "dev", device, check=False)
        counters = self.emulator_counters(client, direction)
        return stats if counters is None else f"{stats}link emulator: {counters}\n"

    def _end(self, client: Client, direction: str) -> tuple[str, str]:
        if direction == "down":
            return self.server_namespace, client.server_end
        if direction == "up":
            return client.namespace, client.client_end
        raise ValueError(f"direction is 'down' or 'up', not {direction!r}")

    def _receiving_end(self, client: Client, direction: str) -> tuple[str, str]:
        if direction == "down":
            return client.namespace, client.client_end
        if direction == "up":
            return self.server_namespace, client.server_end
        raise ValueError(f"direction is 'down' or 'up', not {direction!r}")

    # ------------------------------------------------------------------ server

    def start_server(
        self, *, extra_args: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> ZvonokServer:
        """``zvonok serve`` in the server namespace, on 0.0.0.0, announcing 198.18.0.1; stopped
        and its log checked like any ``ServerFactory`` server."""
        data_dir = self.root / f"netns-server{len(self.servers.servers)}"
        command = [
            "ip", "netns", "exec", self.server_namespace,
            sys.executable, "-m", "zvonok", "serve",
            "--host", "0.0.0.0", "--port", "{port}", "--media-port", "{media_port}",
            "--data-dir", str(data_dir), "--announce-ip", SERVER_ADDRESS,
            "--log-format", "json",
        ]  # fmt: skip
        server = ZvonokServer(
            data_dir, command=command, env={"ZVONOK_MEDIA_HOST": "0.0.0.0", **(env or {})},
            extra_args=extra_args,
        )  # fmt: skip
        server.host = SERVER_ADDRESS  # URLs name the address the clients reach
        self.servers.servers.append(server)
        self._started.append(server)
        in_namespace(self.server_namespace, lambda: server.wait_ready(START_TIMEOUT),
                     timeout=START_TIMEOUT + 15)  # fmt: skip
        return server

    def http_get(self, url: str, timeout: float = 5.0) -> bytes:
        """GET ``url`` from inside the server namespace (e.g. the server's /metrics)."""

        def get() -> bytes:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                body: bytes = resp.read()
                return body

        return in_namespace(self.server_namespace, get, timeout=timeout + 5)

    # ------------------------------------------------------------------ browsers

    async def chromium(self, client: Client, origin: str, args: Sequence[str] = ()) -> Browser:
        """A headless Chromium whose network is ``client``'s namespace; ``origin`` (the
        server's http://198.18.0.1:PORT) counts as secure. Closed by ``close``."""
        wrapper = self.root / f"chromium-{client.namespace}"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {client.namespace} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        flags = [
            *CHROMIUM_FLAGS,
            f"--unsafely-treat-insecure-origin-as-secure={origin}",
            f"--proxy-bypass-list={SERVER_ADDRESS}",  # the namespace reaches nothing else
            *args,
        ]
        browser = await self._playwright.chromium.launch(
            executable_path=str(wrapper), headless=True, args=flags
        )
        self._browsers.append(browser)
        return browser

    def delete_namespaces(self) -> list[str]:
        """``ip netns del`` every namespace made here (their veths go with them); the errors."""
        problems = []
        for namespace in reversed(self._namespaces):
            done = subprocess.run(
                ["ip", "netns", "del", namespace],
                capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                problems.append(f"ip netns del {namespace}: {done.stderr.strip()}")
        self._namespaces.clear()
        return problems

    async def close(self) -> None:
        """Browsers, then servers, then namespaces; every step runs even if one fails."""
        problems: list[str] = []
        for browser in self._browsers:
            try:
                await browser.close()
            except Exception as exc:  # noqa: BLE001 - teardown goes on
                problems.append(f"closing a browser: {exc!r}")
        self._browsers.clear()
        if self._playwright is not None:
            try:
                await self._playwright.stop()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"stopping playwright: {exc!r}")
            self._playwright = None
        for index, direction in list(self._emulators):
            try:
                self._stop_emulator(self.clients[index - 1], direction)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"stopping a link emulator: {exc!r}")
        for server in self._started:
            server.stop()
        problems += self.delete_namespaces()
        if problems:
            raise AssertionError("emulated network teardown: " + "; ".join(problems))


@pytest.fixture
async def emulated_network(
    tmp_path: Path, zvonok_server_factory: ServerFactory
) -> AsyncIterator[EmulatedNetwork]:
    """A server namespace for this test (clients added with ``add_client``); everything it made
    is removed at the end, also when the test fails."""
    network = EmulatedNetwork(tmp_path, zvonok_server_factory)
    try:
        network.setup()
        yield network
    finally:
        await network.close()
