"""Headless Firefox ESR driven over WebDriver BiDi, the browser's own remote protocol.

Owns ``BiDiFirefox``: one ``firefox-esr --headless --no-remote --profile <fresh dir>
--remote-debugging-port 0`` process in its own process group (killed by PGID on close), one
WebSocket session to it (``session.new``) and the few commands a test needs: a preload script
that runs before any page script (``script.addPreloadScript``), ``navigate`` and ``evaluate``
(``script.callFunction``; the argument and the result cross as JSON text, so only JSON values
travel). Uncaught page errors (``log.entryAdded`` entries of type ``javascript`` at level
``error``) are kept in ``errors``. The profile is harness/firefox.py's ``write_profile`` (fake
devices, loopback ICE, cubeb's mock context so Web Audio runs, the dead proxy). Every wait is
bounded.

For pages that cannot report by themselves (the demo, test_demo.py); pages/peer.js peers report
by HTTP POST instead (firefox.py). Imports the harness and ``websockets``; never zvonok.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from .firefox import FIREFOX, write_profile

START_TIMEOUT = 40.0
COMMAND_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
MAX_MESSAGE = 16 * 1024 * 1024
_LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")


class BiDiFirefox:
    """One Firefox process and its BiDi session; use as ``async with``."""

    def __init__(self, name: str, colour: str = "red") -> None:
        self.name = name
        self.profile = Path(tempfile.mkdtemp(prefix="zvonok-ffbidi-"))
        write_profile(self.profile, colour)
        self.errors: list[str] = []
        self._output = self.profile / "firefox.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._context = ""

    async def __aenter__(self) -> BiDiFirefox:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self, timeout: float = START_TIMEOUT) -> None:  # noqa: ASYNC109
        """Launch Firefox, open a BiDi session and find its tab."""
        self._launch()
        url = await self._listening(timeout)
        self._ws = await connect(url + "/session", max_size=MAX_MESSAGE, open_timeout=timeout)
        self._reader = asyncio.create_task(self._read())
        await self.command("session.new", {"capabilities": {}})
        tree = await self.command("browsingContext.getTree", {})
        self._context = str(tree["contexts"][0]["context"])
        await self.command("session.subscribe", {"events": ["log.entryAdded"]})

    def _launch(self) -> None:
        env = {**os.environ, "HOME": str(self.profile), "MOZ_HEADLESS": "1"}
        command = [FIREFOX, "--headless", "--no-remote", "--profile", str(self.profile)]
        command += ["--remote-debugging-port", "0", "about:blank"]
        with self._output.open("wb") as out:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    async def _listening(self, timeout: float) -> str:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            found = _LISTENING.search(self._output.read_text(errors="replace"))
            if found:
                return found.group(1)
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name}: no BiDi endpoint within {timeout:.0f} s\n{self.log()}")

    def log(self) -> str:
        """The last lines Firefox printed."""
        try:
            return "\n".join(self._output.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                if not isinstance(message, dict):
                    continue
                waiting = self._pending.pop(message.get("id", -1), None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(message)
                elif message.get("method") == "log.entryAdded":
                    entry = message.get("params") or {}
                    if entry.get("type") == "javascript" and entry.get("level") == "error":
                        self.errors.append(str(entry.get("text")))
        finally:
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionError(f"{self.name}: BiDi session closed"))
            self._pending.clear()

    async def command(
        self,
        method: str,
        params: dict[str, Any],
        timeout: float = COMMAND_TIMEOUT,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Send one BiDi command and return its ``result``; an ``error`` answer raises."""
        if self._ws is None:
            raise RuntimeError(f"{self.name}: not started")
        command_id = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._pending[command_id] = answer
        await self._ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        try:
            message = await asyncio.wait_for(answer, timeout)
        finally:
            self._pending.pop(command_id, None)
        if message.get("type") == "error":
            raise RuntimeError(
                f"{self.name}: {method}: {message.get('error')}: {message.get('message')}"
            )
        result = message.get("result")
        return result if isinstance(result, dict) else {}

    async def preload(self, function_declaration: str) -> None:
        """Run ``function_declaration`` (a JS function, no arguments) in every new document,
        before its own scripts."""
        await self.command("script.addPreloadScript", {"functionDeclaration": function_declaration})

    async def navigate(self, url: str) -> None:
        """Load ``url`` in the tab and wait for its ``load`` event."""
        params = {"context": self._context, "url": url, "wait": "complete"}
        await self.command("browsingContext.navigate", params)

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        """``await (expression)(arg)`` in the page, ``expression`` being a JS function; the
        argument and the result cross as JSON (the shape of Playwright's ``Page.evaluate``)."""
        wrapper = f"async (a) => JSON.stringify((await ({expression})(JSON.parse(a))) ?? null)"
        result = await self.command(
            "script.callFunction",
            {
                "functionDeclaration": wrapper,
                "arguments": [{"type": "string", "value": json.dumps(arg)}],
                "awaitPromise": True,
                "target": {"context": self._context},
            },
        )
        if result.get("type") == "exception":
            details = result.get("exceptionDetails") or {}
            raise RuntimeError(f"{self.name}: evaluate failed: {details.get('text')}")
        return json.loads(str(result["result"]["value"]))

    async def close(self) -> None:
        """End the session, kill the process group by PGID and remove the profile."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), STOP_TIMEOUT)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        proc = self._process
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self.profile, ignore_errors=True)
