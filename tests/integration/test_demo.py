"""The demo page and the browser SDK against the real server, driven in headless Chromium.

Starts ``python -m zvonok serve`` on loopback (dev mode, free TCP and UDP ports, a temporary data
directory), opens the demo page for two users in separate browser contexts and checks what a
person would: each sees and hears the other (``framesDecoded`` / ``packetsReceived`` grow), the
tiles carry the right names, a distinct picture arrives at the right side, a screen share comes
and goes, a camera turned off shows as off, a dropped socket resumes, and leaving ends the other
side's tiles. Uses the Debian Chromium (never ``playwright install``) with the flags of
``real-clients.md``; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from zvonok.web import static_text

from .harness.chromium import CHROMIUM, CHROMIUM_FLAGS
from .harness.udp_relay import UdpRelay

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

DOCS = Path(__file__).resolve().parents[2] / "docs"

# Inbound counters and the SDK's view of the received tracks, read in the page.
STATS_JS = """async () => {
  const call = window.zvonokDemo.call;
  const out = {video: 0, audio: 0, byTrack: {}, remote: [], sessionId: call.sessionId};
  (await call.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    const n = s.kind === "video" ? (s.framesDecoded || 0) : (s.packetsReceived || 0);
    out[s.kind] += n;
    out.byTrack[s.trackIdentifier] = n;
  });
  out.remote = call.remoteTracks.map((t) => ({trackId: t.trackId, kind: t.kind,
    userId: t.userId, sessionId: t.sessionId, id: t.track.id}));
  return out;
}"""

# Replace the camera with a canvas of one colour (redrawn so frames keep flowing).
PAINT_JS = """async (colour) => {
  const canvas = document.createElement("canvas");
  canvas.width = 320; canvas.height = 240;
  const ctx = canvas.getContext("2d");
  const draw = () => { ctx.fillStyle = colour; ctx.fillRect(0, 0, 320, 240); };
  draw();
  window.paintTimer = setInterval(draw, 50);
  await window.zvonokDemo.call.publish(canvas.captureStream(15));
}"""

# The centre pixel of the camera tile of `userId`.
PIXEL_JS = """(userId) => {
  const tile = document.querySelector(`.tile:not(.screen)[data-user-id="${userId}"]`);
  const video = tile && tile.querySelector("video");
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(video, 0, 0);
  return Array.from(ctx.getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data);
}"""


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(
    data_dir: Path, announce: str = "127.0.0.1", media_port: int | None = None, **env: str
) -> Iterator[str]:
    """Run ``python -m zvonok serve`` in dev mode on loopback; yields its http base URL."""
    port = _free_port(socket.SOCK_STREAM)
    media_port = media_port or _free_port(socket.SOCK_DGRAM)
    environ = {**os.environ, "ZVONOK_DEV_MODE": "true", "ZVONOK_MEDIA_HOST": "127.0.0.1", **env}
    args = [sys.executable, "-m", "zvonok", "serve", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--media-port", str(media_port), "--data-dir", str(data_dir)]
    args += ["--announce-ip", announce]
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, env=environ, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, log_path.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                assert time.monotonic() < deadline, "the server did not become ready in 20 s"
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real dev-mode server for this module's tests.

    ``ZVONOK_DEMO_SERVER=http://127.0.0.1:PORT`` runs the tests against a dev-mode server that is
    already running instead.
    """
    running = os.environ.get("ZVONOK_DEMO_SERVER")
    if running:
        yield running.rstrip("/")
        return
    with serve(tmp_path_factory.mktemp("zvonok-demo")) as base:
        yield base


@pytest.fixture(scope="module")
def server_without_resume(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose sessions end as soon as their socket drops (resume grace 0).

    With ``ZVONOK_DEMO_SERVER`` set, ``ZVONOK_DEMO_SERVER_NO_RESUME`` names such a server.
    """
    if os.environ.get("ZVONOK_DEMO_SERVER"):
        running = os.environ.get("ZVONOK_DEMO_SERVER_NO_RESUME")
        if not running:
            pytest.skip("ZVONOK_DEMO_SERVER_NO_RESUME is not set")
        yield running.rstrip("/")
        return
    with serve(tmp_path_factory.mktemp("zvonok-demo-noresume"), ZVONOK_RESUME_GRACE="0") as base:
        yield base


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def wait_for(
    probe: Callable[[], Awaitable[Any]], what: str, limit: float = 15.0, every: float = 0.25
) -> Any:
    """Poll ``probe`` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + limit
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what} (last {value!r})")
        await asyncio.sleep(every)


async def open_demo(browser: Browser, base: str, user: str, kind: str, room: str) -> Page:
    """A fresh browser context showing the demo page, joined as ``user``."""
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(15000)
    await page.goto(f"{base}/?user={user}&kind={kind}&room={room}")
    await page.click("#join")
    await page.wait_for_selector("#call:not([hidden])")
    await page.wait_for_selector(".tile.local")
    assert errors == [], errors
    return page


async def stats(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(STATS_JS)
    return result


async def media_flows(page: Page, peer: str) -> bool:
    """Video frames decode and audio packets arrive from ``peer`` (sampled 1 s apart)."""
    before = await stats(page)
    await asyncio.sleep(1.0)
    after = await stats(page)
    kinds = {t["kind"] for t in after["remote"] if t["userId"] == peer}
    return (
        kinds == {"audio", "video"}
        and after["video"] > before["video"]
        and after["audio"] > before["audio"]
    )


async def two_party(browser: Browser, base: str, room: str) -> tuple[Page, Page]:
    alice = await open_demo(browser, base, "alice", "chat", room)
    bob = await open_demo(browser, base, "bob", "chat", room)
    await wait_for(lambda: media_flows(alice, "bob"), "alice to see and hear bob", 20)
    await wait_for(lambda: media_flows(bob, "alice"), "bob to see and hear alice", 20)
    return alice, bob


async def tile_count(page: Page, selector: str) -> int:
    return len(await page.query_selector_all(selector))


async def test_two_party_call(server: str, browser: Browser) -> None:
    alice, bob = await two_party(browser, server, "call1")

    # Each side names the other, and never gets its own tracks back.
    for page, me, peer in ((alice, "alice", "bob"), (bob, "bob", "alice")):
        seen = await stats(page)
        assert {t["userId"] for t in seen["remote"]} == {peer}
        assert all(t["sessionId"] != seen["sessionId"] for t in seen["remote"])
        name = await page.inner_text(f'.tile[data-user-id="{peer}"] .name')
        assert name == peer, me
    alice_session = (await stats(alice))["sessionId"]
    assert {t["sessionId"] for t in (await stats(bob))["remote"]} == {alice_session}

    await asyncio.sleep(1.5)  # a few more frames and a quality sample for the picture
    await alice.screenshot(path=str(DOCS / "screenshot-call.png"))

    # Screen share: appears at bob's side with frames decoding, then disappears.
    await alice.click("#share")
    await bob.wait_for_selector('.tile.screen[data-user-id="alice"]', timeout=10000)

    async def screen_decodes() -> bool:
        track_id = await bob.get_attribute('.tile.screen[data-user-id="alice"]', "data-track-id")
        first = await stats(bob)
        ids = [t["id"] for t in first["remote"] if t["trackId"] == track_id]
        await asyncio.sleep(0.7)
        second = await stats(bob)
        return bool(ids) and second["byTrack"].get(ids[0], 0) > first["byTrack"].get(ids[0], 0)

    await wait_for(screen_decodes, "bob to decode alice's screen", 15)
    await alice.click("#share")
    await wait_for(
        lambda: _none(bob, ".tile.screen"), "the screen tile to go at bob's side", limit=5
    )

    # Camera off at bob's side shows as off at alice's side (detected from RTP), and back on.
    await bob.click("#mute-video")
    await wait_for(
        lambda: alice.is_visible('.tile[data-user-id="bob"] .cam-off'), "camera-off at alice", 10
    )
    await bob.click("#mute-video")
    await wait_for(
        lambda: alice.is_hidden('.tile[data-user-id="bob"] .cam-off'), "camera-on at alice", 10
    )

    # Leaving ends the other side's tiles within two seconds or so.
    await bob.click("#leave")
    await wait_for(lambda: _none(alice, '.tile[data-user-id="bob"]'), "bob's tiles to go", limit=4)
    assert (await stats(alice))["remote"] == []
    await alice.click("#leave")
    await wait_for(lambda: alice.is_visible("#join-form"), "alice's form to come back", 5)


async def _none(page: Page, selector: str) -> bool:
    return await tile_count(page, selector) == 0


async def test_each_side_decodes_the_other_colour(server: str, browser: Browser) -> None:
    alice, bob = await two_party(browser, server, "colours")
    await alice.evaluate(PAINT_JS, "rgb(255, 0, 0)")
    await bob.evaluate(PAINT_JS, "rgb(0, 0, 255)")

    def is_red(px: list[int] | None) -> bool:
        return px is not None and px[0] > 180 and px[1] < 80 and px[2] < 80

    def is_blue(px: list[int] | None) -> bool:
        return px is not None and px[2] > 180 and px[0] < 80 and px[1] < 80

    async def bob_sees_red() -> bool:
        return is_red(await bob.evaluate(PIXEL_JS, "alice"))

    async def alice_sees_blue() -> bool:
        return is_blue(await alice.evaluate(PIXEL_JS, "bob"))

    await wait_for(bob_sees_red, "bob to decode alice's red", 15)
    await wait_for(alice_sees_blue, "alice to decode bob's blue", 15)
    for page in (alice, bob):
        await page.click("#leave")


async def test_dropped_socket_resumes(server: str, browser: Browser) -> None:
    alice, bob = await two_party(browser, server, "resume")
    await alice.evaluate(
        """() => {
          const call = window.zvonokDemo.call;
          window.resumed = null;
          call.addEventListener("reconnected", (e) => { window.resumed = e.resumed; });
          call._ws.close(4000, "test drop");
        }"""
    )
    resumed = await wait_for(
        lambda: alice.evaluate("() => window.resumed !== null && String(window.resumed)"),
        "alice to reconnect",
        15,
    )
    assert resumed == "true"
    await wait_for(lambda: media_flows(alice, "bob"), "media to alice after the resume", 15)
    await wait_for(lambda: media_flows(bob, "alice"), "media to bob after the resume", 15)
    # No leave/join churn at bob's side: alice's tile stayed.
    assert await tile_count(bob, '.tile[data-user-id="alice"]') >= 1
    for page in (alice, bob):
        await page.click("#leave")


async def test_lost_session_is_rebuilt(server_without_resume: str, browser: Browser) -> None:
    """The server forgot the session (``resumed: false``): a new connection, tracks published."""
    alice, bob = await two_party(browser, server_without_resume, "rebuild")
    await alice.evaluate(
        """() => {
          const call = window.zvonokDemo.call;
          window.resumed = null;
          window.oldPc = call.peerConnection;
          call.addEventListener("reconnected", (e) => { window.resumed = e.resumed; });
          call._ws.close(4000, "test drop");
        }"""
    )
    resumed = await wait_for(
        lambda: alice.evaluate("() => window.resumed !== null && String(window.resumed)"),
        "alice to reconnect",
        15,
    )
    assert resumed == "false"
    assert await alice.evaluate("() => window.zvonokDemo.call.peerConnection !== window.oldPc")
    await wait_for(lambda: media_flows(alice, "bob"), "media to alice after the rebuild", 20)
    await wait_for(lambda: media_flows(bob, "alice"), "media to bob after the rebuild", 20)
    assert await tile_count(bob, '.tile[data-user-id="alice"]') == 1
    for page in (alice, bob):
        await page.click("#leave")


async def test_a_third_user_cannot_join_a_private_chat(server: str, browser: Browser) -> None:
    alice = await open_demo(browser, server, "alice", "chat", "pair")
    bob = await open_demo(browser, server, "bob", "chat", "pair")
    context = await browser.new_context()
    carol = await context.new_page()
    await carol.goto(f"{server}/?user=carol&kind=chat&room=pair")
    await carol.click("#join")
    message = await carol.wait_for_selector(".message.error")
    assert message is not None
    assert "Cannot join chat pair" in await message.inner_text()
    assert await carol.is_visible("#join-form")
    for page in (alice, bob):
        await page.click("#leave")


async def test_refused_token_is_explained(server: str, browser: Browser) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{server}/")
    text = await page.evaluate(
        """async () => {
          const { ZvonokCall, callUrl } = await import("/sdk/zvonok.js");
          const call = new ZvonokCall({url: callUrl("chat", "x"), token: "bad", roomId: "x"});
          let code = null;
          call.addEventListener("error", (e) => { code = e.code; });
          try { await call.join(); } catch (e) { return [code, e.code, call.state]; }
          return ["joined?"];
        }"""
    )
    assert text == ["connect-failed", "connect-failed", "closed"]


# ---------------------------------------------------------------- the SDK alone (no server)

SDK_ORIGIN = "http://localhost:1"  # a secure context (media capture), served by route()


async def sdk_page(browser: Browser) -> Page:
    """A page whose origin serves only the SDK, from the package data (no network at all)."""
    context = await browser.new_context()
    page = await context.new_page()

    async def serve(route: Any) -> None:
        if route.request.url.endswith("/sdk/zvonok.js"):
            await route.fulfill(body=static_text("zvonok.js"), content_type="text/javascript")
        else:
            await route.fulfill(body="<!doctype html><title>sdk</title>", content_type="text/html")

    await page.route(f"{SDK_ORIGIN}/**", serve)
    await page.goto(f"{SDK_ORIGIN}/")
    return page


async def test_sdk_helpers(browser: Browser) -> None:
    page = await sdk_page(browser)
    result = await page.evaluate(
        """async () => {
          const sdk = await import("/sdk/zvonok.js");
          const errors = [];
          for (const options of [{}, {url: "/x"}, {url: "/x", roomId: 1, sessionId: "a b"}]) {
            try { new sdk.ZvonokCall(options); }
            catch (e) { errors.push(e.code + ": " + e.message); }
          }
          const call = new sdk.ZvonokCall({url: "/api/v1/chat/1/call", roomId: 1});
          const event = new sdk.ZvonokEvent("track", {kind: "video", userId: "u"});
          return {
            errors,
            url: sdk.callUrl("group", "g-1", "https://example.test/app/"),
            plain: sdk.callUrl("chat", 7, "http://127.0.0.1:8080/"),
            session: call.sessionId, state: call.state, connection: call.connectionState,
            levels: [sdk.qualityLevel(true, 40, 0), sdk.qualityLevel(true, 300, 0),
                     sdk.qualityLevel(true, 40, 0.05), sdk.qualityLevel(true, 40, 0.2),
                     sdk.qualityLevel(false, 10, 0), sdk.qualityLevel(true, null, 0)],
            event: [event.kind, event.userId, event.detail.kind, event.type],
          };
        }"""
    )
    assert result["errors"] == [
        "bad-options: url is required",
        "bad-options: roomId is required",
        "bad-options: sessionId must be 1-64 of [A-Za-z0-9_.-]",
    ]
    assert result["url"] == "wss://example.test/api/v1/group/g-1/call"
    assert result["plain"] == "ws://127.0.0.1:8080/api/v1/chat/7/call"
    assert re.fullmatch(r"s-[0-9a-f]{24}", result["session"])
    assert (result["state"], result["connection"]) == ("new", "new")
    assert result["levels"] == ["good", "fair", "fair", "poor", "poor", "good"]
    assert result["event"] == ["video", "u", "video", "track"]


async def test_sdk_local_media_before_join(browser: Browser) -> None:
    page = await sdk_page(browser)
    result = await page.evaluate(
        """async () => {
          const { ZvonokCall } = await import("/sdk/zvonok.js");
          const call = new ZvonokCall({url: "/api/v1/chat/1/call", roomId: 1});
          const mutes = [];
          call.addEventListener("mute", (e) => mutes.push([e.kind, e.muted, e.local]));
          const stream = await call.publish({audio: true, video: true});
          const kinds = stream.getTracks().map((t) => t.kind).sort();
          call.setMuted("video", true);
          const disabled = !stream.getVideoTracks()[0].enabled;
          call.setMuted("video", false);
          const tracks = stream.getTracks();
          await call.leave();
          return {kinds, disabled, mutes, state: call.state,
                  ended: tracks.map((t) => t.readyState)};
        }"""
    )
    assert result["kinds"] == ["audio", "video"]
    assert result["disabled"] is True
    assert result["mutes"] == [["video", True, True], ["video", False, True]]
    assert result["state"] == "closed"
    assert result["ended"] == ["ended", "ended"]


async def test_sdk_reports_media_denied(browser: Browser) -> None:
    page = await sdk_page(browser)
    result = await page.evaluate(
        """async () => {
          const { ZvonokCall } = await import("/sdk/zvonok.js");
          navigator.mediaDevices.getUserMedia = async () => {
            throw new DOMException("denied by the user", "NotAllowedError");
          };
          const call = new ZvonokCall({url: "/api/v1/chat/1/call", roomId: 1});
          const events = [];
          call.addEventListener("error", (e) => events.push(e.code));
          try { await call.publish(); } catch (e) { return [events, e.code, call.state]; }
          return ["published?"];
        }"""
    )
    assert result == [["media-denied"], "media-denied", "new"]


FIREFOX_PREFS: dict[str, bool | int | str] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "permissions.default.camera": 1,
    "permissions.default.microphone": 1,
    "media.autoplay.default": 0,
    "app.update.enabled": False,
    "app.update.auto": False,
    "toolkit.telemetry.enabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "media.gmp-gmpopenh264.enabled": False,
    "media.gmp-manager.url": "",
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": 9,
    "network.proxy.no_proxies_on": "127.0.0.1,localhost",
    "browser.shell.checkDefaultBrowser": False,
    "devtools.console.stdout.content": True,  # the page's console.debug is how it reports
}


def _user_js(prefs: dict[str, bool | int | str]) -> str:
    def value(v: bool | int | str) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v) if isinstance(v, int) else f'"{v}"'

    return "".join(f'user_pref("{k}", {value(v)});\n' for k, v in prefs.items())


def firefox_quality(log: Path) -> list[dict[str, Any]]:
    """The demo's ``quality`` events that Firefox printed (``?debug``) to its stdout."""
    marker = '"zvonok demo: quality" '
    events = []
    for line in log.read_text(errors="replace").splitlines():
        _, found, literal = line.partition(marker)
        if found:
            with contextlib.suppress(ValueError):
                events.append(json.loads(json.loads(literal)))
    return events


async def test_firefox_and_chromium_call(server: str, browser: Browser, tmp_path: Path) -> None:
    """Firefox ESR (a bare process, the demo's ``?join&debug``) calls Chromium both ways."""
    profile = tmp_path / "firefox-profile"
    profile.mkdir()
    (profile / "user.js").write_text(_user_js(FIREFOX_PREFS))
    alice = await open_demo(browser, server, "alice", "chat", "firefox")
    log = tmp_path / "firefox.log"
    url = f"{server}/?user=bob&kind=chat&room=firefox&join&debug"
    with log.open("wb") as out:
        firefox = await asyncio.create_subprocess_exec(
            "firefox-esr",
            "--headless",
            "--no-remote",
            "--profile",
            str(profile),
            url,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            await wait_for(lambda: media_flows(alice, "bob"), "chromium to get firefox's media", 30)

            async def firefox_receives() -> bool:
                events = firefox_quality(log)
                if not events:
                    return False
                seen = events[-1]["participants"].values()
                return any(p["userId"] == "alice" and p["bitrateIn"] > 50_000 for p in seen)

            await wait_for(firefox_receives, "firefox to receive chromium's media", 20, every=1.0)
        finally:
            firefox.terminate()
            try:
                await asyncio.wait_for(firefox.wait(), timeout=10)
            except TimeoutError:
                firefox.kill()
                await asyncio.wait_for(firefox.wait(), timeout=5)
    await alice.click("#leave")


async def test_group_call_of_three(server: str, browser: Browser) -> None:
    pages = {
        user: await open_demo(browser, server, user, "group", "three")
        for user in ("ann", "ben", "cat")
    }
    for user, page in pages.items():
        for peer in pages:
            if peer != user:
                await wait_for(
                    functools.partial(media_flows, page, peer), f"{user} to get {peer}'s media", 20
                )
        names = await page.eval_on_selector_all(
            ".tile:not(.local)", "(tiles) => tiles.map((t) => t.dataset.userId).sort()"
        )
        assert names == sorted(set(pages) - {user})
    for page in pages.values():
        await page.click("#leave")


async def test_ice_restart_keeps_the_call(server: str, browser: Browser) -> None:
    alice, bob = await two_party(browser, server, "icerestart")
    before = await alice.evaluate(
        """() => {
          const pc = window.zvonokDemo.call.peerConnection;
          const ufrag = /a=ice-ufrag:(\\S+)/.exec(pc.localDescription.sdp)[1];
          pc.restartIce();
          return ufrag;
        }"""
    )

    async def restarted() -> bool:
        state = await alice.evaluate(
            """() => {
              const pc = window.zvonokDemo.call.peerConnection;
              return [pc.signalingState, /a=ice-ufrag:(\\S+)/.exec(pc.localDescription.sdp)[1],
                      /a=ice-ufrag:(\\S+)/.exec(pc.remoteDescription.sdp)[1]];
            }"""
        )
        return bool(state[0] == "stable" and state[1] != before)

    await wait_for(restarted, "the ICE restart to complete", 10)
    await wait_for(lambda: media_flows(alice, "bob"), "media to alice after the restart", 15)
    await wait_for(lambda: media_flows(bob, "alice"), "media to bob after the restart", 15)
    for page in (alice, bob):
        await page.click("#leave")


async def test_network_cut_reconnects_without_a_leave(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Alice's network goes away for a while: her WebSocket drops and her media is blackholed.
    The SDK reconnects on its own (same session, ICE restart), media resumes both ways, and Bob
    never sees her leave. Media goes through a NAT-like relay on 127.0.0.2 that the test cuts."""
    media_port = _free_port(socket.SOCK_DGRAM)
    relay = UdpRelay(("127.0.0.2", media_port), ("127.0.0.1", media_port))
    await relay.start()
    try:
        with serve(
            tmp_path_factory.mktemp("zvonok-cut"), announce="127.0.0.2", media_port=media_port
        ) as base:
            alice, bob = await two_party(browser, base, "cut")
            await alice.evaluate(
                """() => {
                  const call = window.zvonokDemo.call;
                  window.events = [];
                  for (const t of ["reconnecting", "reconnected", "failed"])
                    call.addEventListener(t, () => window.events.push(t));
                  call._ws.close(4000, "network cut");
                }"""
            )
            relay.cut(7)
            await asyncio.sleep(7)
            cut_ended = time.monotonic()
            events = await wait_for(
                lambda: alice.evaluate(
                    "() => window.events.includes('reconnected') && window.events.join(',')"
                ),
                "alice's SDK to reconnect",
                20,
            )
            assert "failed" not in events
            assert relay.dropped > 0
            await wait_for(lambda: media_flows(alice, "bob"), "media to alice after the cut", 30)
            await wait_for(lambda: media_flows(bob, "alice"), "media to bob after the cut", 30)
            healed = time.monotonic() - cut_ended
            print(f"network cut healed {healed:.1f} s after the network came back")
            assert healed < 5.0, f"media resumed {healed:.1f} s after the network came back"
            assert await tile_count(bob, '.tile[data-user-id="alice"]') >= 1
            for page in (alice, bob):
                await page.click("#leave")
    finally:
        relay.close()
