"""Headless Firefox ESR call participants: bare processes whose page reports by HTTP POST.

Owns ``FIREFOX_PREFS`` (the ``user.js`` of /work/shared/testing/real-clients.md plus autoplay and
quiet-startup prefs), ``FirefoxPeer`` (one ``firefox-esr --headless --no-remote --profile <fresh
dir> <url>`` process in its own process group, killed by PID/PGID on close) and
``FirefoxPeers`` with its fixture ``firefox_peers`` (function scope). There is no driver:
``report()`` returns the page's latest POSTed report, and page methods (``leave``,
``add_screen_share``...) travel as commands in the answer to its next POST (<= 0.5 s). At the
end of the test every page's recorded ``errors`` (from its last report) must be empty or allowed
(errors.py).

Audio: Firefox here has no audio device (no sound server; cubeb's PulseAudio backend fails), and
then every ``AudioContext`` stays ``suspended`` (``resume()`` never settles, autoplay prefs or
not). The profile therefore sets ``media.cubeb.force_mock_context``: cubeb's mock backend, a
device-less output that still clocks the media graph in real time, so the receiving page's
``AnalyserNode`` measures the dominant frequency of what it decodes, as in Chromium. A Firefox
peer sends its colour's tone from the fake microphone (``audioSource=gum`` with
``media.navigator.audio.fake_frequency`` set per profile). As a receiver it is checked like
Chromium: packets and decoded frames grow (``getStats``), the decoded picture (the ``<video>``
drawn on a canvas) is the sender's colour and the decoded sound the sender's tone.

Imports the harness (``stats``, ``report_server``, ``server``, ``chromium.join_params``); never
zvonok.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from . import errors
from .chromium import join_params
from .report_server import ReportServer
from .server import CallServer
from .stats import TONES, PeerReport, ReportPeer

FIREFOX = os.environ.get("ZVONOK_TEST_FIREFOX", "firefox-esr")
FIREFOX_PREFS: dict[str, bool | int | str] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "permissions.default.camera": 1,
    "permissions.default.microphone": 1,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    # No audio device here: without a (mock) cubeb context Web Audio never runs (module docstring).
    "media.cubeb.force_mock_context": True,
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.normandy.enabled": False,
    "extensions.update.enabled": False,
    "toolkit.telemetry.enabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-gmpopenh264.autoupdate": False,
    "media.gmp-gmpopenh264.enabled": False,
    "media.gmp-manager.url": "http://127.0.0.1:9/",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "datareporting.policy.firstRunURL": "",
    "dom.min_background_timeout_value": 10,
    # A dead proxy for everything but loopback.
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": 9,
    "network.proxy.no_proxies_on": "localhost, 127.0.0.1",
    "network.proxy.allow_hijacking_localhost": False,
}
START_TIMEOUT = 40.0
COMMAND_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_peer_ids = itertools.count(1)


def write_profile(directory: Path, colour: str = "red") -> None:
    """A fresh profile: ``user.js`` with ``FIREFOX_PREFS`` and the fake microphone playing the
    tone of ``colour``."""
    prefs = {**FIREFOX_PREFS, "media.navigator.audio.fake_frequency": int(TONES[colour])}
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in prefs.items()]
    (directory / "user.js").write_text("\n".join(lines) + "\n")


class FirefoxPeer(ReportPeer):
    """One Firefox process with one page; state from POSTed reports."""

    def __init__(
        self, name: str, peer_id: str, session_id: str, pages: ReportServer, colour: str = "red"
    ) -> None:
        self.name = name
        self.colour = colour
        self.peer_id = peer_id
        self.session_id = session_id
        self.pages = pages
        self.profile = Path(tempfile.mkdtemp(prefix="zvonok-ff-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._output = self.profile / "firefox.log"

    def launch(self, url: str) -> None:
        write_profile(self.profile, self.colour)
        env = {**os.environ, "HOME": str(self.profile), "MOZ_HEADLESS": "1"}
        with self._output.open("wb") as out:
            self.process = subprocess.Popen(
                [FIREFOX, "--headless", "--no-remote", "--profile", str(self.profile), url],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def console(self) -> list[str]:
        lines = [str(x) for x in (self.pages.latest(self.peer_id) or {}).get("log", [])]
        try:
            tail = self._output.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            tail = []
        return lines + [f"[firefox] {line}" for line in tail]

    async def report(self) -> PeerReport:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"firefox exited with {self.process.returncode}")
        raw = self.pages.latest(self.peer_id)
        if raw is None:
            raise RuntimeError("no report POSTed yet")
        return PeerReport.parse(raw)

    def errors(self) -> list[str]:
        """What the page recorded as errors, as of its latest report."""
        recorded = (self.pages.latest(self.peer_id) or {}).get("errors") or []
        return [str(e) for e in recorded]

    async def wait_started(self, timeout: float = START_TIMEOUT) -> None:  # noqa: ASYNC109
        def check(now: PeerReport) -> str | None:
            return (
                None if now.raw.get("started") else f"not started; errors {now.raw.get('errors')}"
            )

        await self.wait_for(check, "page started", timeout)

    async def call(
        self,
        method: str,
        *args: Any,
        timeout: float = COMMAND_TIMEOUT,  # noqa: ASYNC109
    ) -> Any:
        """Run ``window.peer[method](...args)`` in the page through the report channel."""
        command_id = self.pages.push_command(self.peer_id, method, *args)
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.1) + 1):
            result = self.pages.command_result(self.peer_id, command_id)
            if result is not None:
                if not result.get("ok"):
                    raise AssertionError(f"{self.name}: {method} failed: {result.get('error')}")
                return result.get("value")
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        raise AssertionError(self.failure(f"command {method}", timeout, "no answer", None))

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

    async def close(self) -> None:
        """Kill the process group by PGID (SIGTERM, then SIGKILL) and remove the profile."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
        if proc is not None:
            try:  # children that outlived the leader
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class FirefoxPeers:
    """Opens Firefox participants (one process each) and closes them all."""

    def __init__(self, pages: ReportServer, allowed: errors.Allowed | None = None) -> None:
        self.pages = pages
        self.allowed = allowed or errors.Allowed()
        self.peers: list[FirefoxPeer] = []
        self.recorded: dict[str, list[str]] = {}

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
    ) -> FirefoxPeer:
        """Join ``kind:room`` as ``user`` sending ``color`` video and a tone."""
        peer_id = f"firefox{next(_peer_ids)}"
        session, params = await join_params(
            server, peer_id, user=user, room=room, color=color, kind=kind, audio=audio,
            video=video, mode=mode, session_id=session_id, token=token,
        )  # fmt: skip
        return await self._start(f"{peer_id}({user})", peer_id, session, params)

    async def open_loopback(
        self, user: str = "self", color: str = "red", audio: bool = True, video: bool = True
    ) -> FirefoxPeer:
        """A page that calls itself (two RTCPeerConnections); no server needed."""
        peer_id = f"firefox{next(_peer_ids)}"
        params = {"mode": "loopback", "user": user, "color": color, "peerId": peer_id,
                  "audio": "1" if audio else "0", "video": "1" if video else "0"}  # fmt: skip
        return await self._start(f"{peer_id}(loopback)", peer_id, f"{peer_id}-loop", params)

    async def _start(
        self, name: str, peer_id: str, session_id: str, params: dict[str, str]
    ) -> FirefoxPeer:
        peer = FirefoxPeer(name, peer_id, session_id, self.pages, params.get("color", "red"))
        self.peers.append(peer)
        params["report"] = self.pages.report_url(peer_id)
        params["audioSource"] = "gum"  # the fake microphone's tone (see the module docstring)
        peer.launch(self.pages.page_url("peer.html", **params))
        await peer.wait_started()
        return peer

    def check_errors(self) -> None:
        """Fail on any error a page recorded that the allow-list does not cover."""
        for peer in self.peers:
            self.recorded[peer.name] = peer.errors()
        for name, recorded in self.recorded.items():
            errors.check(name, recorded, self.allowed.client)

    async def close(self) -> None:
        for peer in self.peers:
            self.recorded[peer.name] = peer.errors()
            await peer.close()
        self.peers.clear()


@pytest.fixture
async def firefox_peers(
    report_server: ReportServer, request: pytest.FixtureRequest
) -> AsyncIterator[FirefoxPeers]:
    """Firefox participants for one test; every process is killed at its end, then every
    page's recorded errors must be empty or allowed."""
    peers = FirefoxPeers(report_server, errors.Allowed.of(request))
    try:
        yield peers
    finally:
        await peers.close()
    peers.check_errors()
