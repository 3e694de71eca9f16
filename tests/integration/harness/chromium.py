"""Headless Chromium call participants, driven with Playwright (async API).

Owns ``CHROMIUM_FLAGS`` (from /work/shared/testing/real-clients.md), ``ChromiumPeer`` (one
browser context + page running ``pages/peer.html``) and ``ChromiumPeers`` with its fixture
``chromium_peers`` (function scope: one browser per test, launched on the first ``open``, closed
with every context at the end of the test). Debian's /usr/bin/chromium is used; Playwright's own
browser download is never needed. At the end of the test every peer's recorded errors (the
page's ``errors`` and uncaught page errors) must be empty or allowed (errors.py).

Imports the harness (``stats``, ``report_server``, ``server``) and playwright; never zvonok.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

from . import errors
from .report_server import ReportServer
from .server import CallServer
from .stats import PeerReport, ReportPeer

CHROMIUM = os.environ.get("ZVONOK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    # A dead proxy: nothing non-local is fetched; loopback bypasses proxies by default.
    "--proxy-server=http://127.0.0.1:9",
]
START_TIMEOUT_MS = 15000
CONSOLE_LINES = 500
_peer_ids = itertools.count(1)


async def join_params(
    server: CallServer,
    peer_id: str,
    *,
    user: str,
    room: str,
    color: str,
    kind: str,
    audio: bool,
    video: bool,
    mode: str,
    session_id: str | None,
    token: str | None,
) -> tuple[str, dict[str, str]]:
    """The session id and query string of ``peer.html`` for one participant joining a call
    (shared with firefox.py); a token is fetched from the server's CLI when none is given."""
    session = session_id or f"{peer_id}-{user}"
    if token is None:
        token = await asyncio.to_thread(server.token, user)
    return session, {
        "ws": server.ws_url(kind, room),
        "token": token,
        "roomId": room,
        "sessionId": session,
        "user": user,
        "peerId": peer_id,
        "color": color,
        "audio": "1" if audio else "0",
        "video": "1" if video else "0",
        "mode": mode,
    }


class ChromiumPeer(ReportPeer):
    """One participant in its own browser context; methods call ``window.peer``."""

    def __init__(self, name: str, context: BrowserContext, page: Page, session_id: str) -> None:
        self.name = name
        self.session_id = session_id
        self.context = context
        self.page = page
        self._console: list[str] = []
        self._page_errors: list[str] = []
        self._reported_errors: list[str] = []
        self._closed = False
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_page_error(self, exc: Exception) -> None:
        self._log(f"pageerror: {exc}")
        self._page_errors.append(f"pageerror: {exc}")

    def _on_console(self, message: ConsoleMessage) -> None:
        self._log(f"[{message.type}] {message.text}")

    def _log(self, line: str) -> None:
        self._console.append(line)
        del self._console[:-CONSOLE_LINES]

    def console(self) -> list[str]:
        return list(self._console)

    async def call(self, method: str, *args: Any) -> Any:
        """``await window.peer[method](...args)`` in the page."""
        return await self.page.evaluate("([m, a]) => window.peer[m](...a)", [method, list(args)])

    async def report(self) -> PeerReport:
        try:
            raw = await self.page.evaluate("window.peer.report()")
        except PlaywrightError as exc:
            raise RuntimeError(f"report() failed in the page: {exc}") from exc
        if isinstance(raw, dict) and isinstance(raw.get("errors"), list):
            self._reported_errors = [str(e) for e in raw["errors"]]
        return PeerReport.parse(raw)

    async def errors(self) -> list[str]:
        """What the page recorded as errors (its ``errors`` list and uncaught page errors)."""
        if not self._closed:
            try:
                await asyncio.wait_for(self.report(), 5.0)
            except (TimeoutError, RuntimeError, ValueError) as exc:
                self._log(f"no final report for the error check: {exc!r}")
        return [*self._reported_errors, *self._page_errors]

    async def add_screen_share(self, color: str = "yellow") -> None:
        await self.call("addScreenShare", color)

    async def remove_screen_share(self) -> None:
        await self.call("removeScreenShare")

    async def leave(self) -> None:
        await self.call("leave")

    async def close_socket(self, code: int = 1000) -> None:
        await self.call("closeSocket", code)

    async def reconnect(self, ice_restart: bool = False) -> None:
        await self.call("reconnect", ice_restart)

    async def send_raw(self, frame: str) -> None:
        await self.call("sendRaw", frame)

    async def close(self) -> None:
        self._closed = True
        try:
            await self.context.close()
        except PlaywrightError:
            pass


class ChromiumPeers:
    """Opens Chromium participants; one browser for the owner's lifetime."""

    def __init__(self, pages: ReportServer, allowed: errors.Allowed | None = None) -> None:
        self.pages = pages
        self.allowed = allowed or errors.Allowed()
        self.peers: list[ChromiumPeer] = []
        self.recorded: dict[str, list[str]] = {}
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    async def browser(self) -> Browser:
        if self._browser is None:
            self._playwright = await async_playwright().start()
            self._browser = await self._playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
            )
        return self._browser

    async def open(
        self,
        server: CallServer,
        user: str,
        room: str,
        color: str,
        kind: str = "chat",
        audio: bool = True,
        video: bool = True,
        mode: str = "answer",
        session_id: str | None = None,
        token: str | None = None,
        codec: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> ChromiumPeer:
        """Join ``kind:room`` as ``user`` sending ``color`` video (in ``codec``) and a tone;
        ``extra``: more peer.js query parameters (e.g. ``codecFirst``, ``recvCodec``)."""
        peer_id = f"chromium{next(_peer_ids)}"
        session, params = await join_params(
            server, peer_id, user=user, room=room, color=color, kind=kind, audio=audio,
            video=video, mode=mode, session_id=session_id, token=token,
        )  # fmt: skip
        if codec:
            params["codec"] = codec
        params.update(extra or {})
        return await self._start(f"{peer_id}({user})", session, params)

    async def open_loopback(
        self, user: str = "self", color: str = "red", audio: bool = True, video: bool = True
    ) -> ChromiumPeer:
        """A page that calls itself (two RTCPeerConnections); no server needed."""
        peer_id = f"chromium{next(_peer_ids)}"
        params = {"mode": "loopback", "user": user, "color": color, "peerId": peer_id,
                  "audio": "1" if audio else "0", "video": "1" if video else "0"}  # fmt: skip
        return await self._start(f"{peer_id}(loopback)", f"{peer_id}-loop", params)

    async def _start(self, name: str, session_id: str, params: dict[str, str]) -> ChromiumPeer:
        browser = await self.browser()
        context = await browser.new_context()
        page = await context.new_page()
        peer = ChromiumPeer(name, context, page, session_id)
        self.peers.append(peer)
        try:
            await page.goto(self.pages.page_url("peer.html", **params))
            await page.wait_for_function(
                "window.peer && window.peer.started", timeout=START_TIMEOUT_MS
            )
        except PlaywrightError as exc:
            raise AssertionError(
                f"{name}: the page did not start: {exc}\n" + "\n".join(peer.console()[-40:])
            ) from exc
        return peer

    async def check_errors(self) -> None:
        """Fail on any error a peer recorded that the allow-list does not cover."""
        for peer in self.peers:
            self.recorded[peer.name] = await peer.errors()
        for name, recorded in self.recorded.items():
            errors.check(name, recorded, self.allowed.client)

    async def close(self) -> None:
        for peer in self.peers:
            self.recorded[peer.name] = await peer.errors()
            await peer.close()
        self.peers.clear()
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None


@pytest.fixture
async def chromium_peers(
    report_server: ReportServer, request: pytest.FixtureRequest
) -> AsyncIterator[ChromiumPeers]:
    """Chromium participants for one test; the browser is closed at its end, then every
    peer's recorded errors must be empty or allowed."""
    peers = ChromiumPeers(report_server, errors.Allowed.of(request))
    try:
        yield peers
    finally:
        await peers.close()
    await peers.check_errors()
