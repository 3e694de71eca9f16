"""The demo page and the browser SDK against the real server, driven in headless Chromium.

Starts ``python -m zvonok serve`` on loopback (dev mode, free TCP and UDP ports, a temporary data
directory), opens the demo page for two users in separate browser contexts and checks what a
person would: each sees and hears the other, the tiles carry the right names, a screen share
comes and goes, a camera turned off shows as off, a dropped socket resumes, and leaving ends the
other side's tiles. Uses the Debian Chromium (never ``playwright install``) with the flags of
``real-clients.md``; nothing leaves 127.0.0.1.

Media identity, per remote participant: every user's camera and microphone are replaced, before
the page loads (``FAKE_MEDIA_JS``, a Playwright init script; the SDK and the demo are unchanged),
by a canvas of the user's own colour and an oscillator at that colour's tone (``USER_COLOURS``,
the harness palette). "Alice sees and hears Bob" then means: Bob's camera track decodes growing
frames, Bob's audio packets grow, Bob's tile shows Bob's colour and Bob's audio's dominant
frequency (an ``AnalyserNode``) is Bob's tone; so an echo of one's own media or another
participant's media under Bob's name fails (``test_echo_fails_the_identity_check`` proves it).
Firefox ESR runs the same: driven over WebDriver BiDi (harness/firefox_bidi.py, no driver
binary), it gets ``FAKE_MEDIA_JS`` as a preload script, and its side of the call is read with the
same ``STATS_JS`` and ``PIXEL_JS`` (Web Audio runs on cubeb's mock context, harness/firefox.py),
so Firefox as a receiver is checked as strictly as Chromium, and its echo fails too.

Errors fail the tests: uncaught page errors, and ERROR records or tracebacks in the server's log
during a test (``check_errors``, autouse; ``@pytest.mark.allow_errors`` names expected ones).
The call test saves a screenshot in its tmp_path; ``./dev screenshot`` (``ZVONOK_SCREENSHOT``)
copies it to docs/screenshot-call.png, the README's picture; nothing else writes the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from zvonok.web import static_text

from .harness import errors
from .harness.chromium import CHROMIUM, CHROMIUM_FLAGS
from .harness.firefox_bidi import BiDiFirefox
from .harness.stats import COLOURS, TONES, nearest_colour, nearest_tone
from .harness.udp_relay import UdpRelay

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

#: Each user's camera colour and microphone tone (harness/stats.py palette).
USER_COLOURS = {
    "alice": "red", "bob": "blue", "ann": "green", "ben": "magenta", "cat": "cyan",
}  # fmt: skip
SCREEN_COLOUR = "yellow"  # every fake screen share

# Before any page script: getUserMedia gives a canvas of the user's colour and an oscillator at
# its tone, getDisplayMedia a canvas of the screen colour (redrawn so frames keep flowing).
FAKE_MEDIA_JS = """(([rgb, hz, screen]) => {
  if (!navigator.mediaDevices) return;
  const canvasTrack = (c) => {
    const canvas = document.createElement("canvas");
    canvas.width = 320; canvas.height = 240;
    const g = canvas.getContext("2d");
    const paint = () => {
      g.fillStyle = `rgb(${c.join(",")})`; g.fillRect(0, 0, 320, 240);
      for (let i = 0; i < 64; i++) {  // a noisy corner: frames keep flowing at a real bitrate
        g.fillStyle = `hsl(${Math.floor(Math.random() * 360)}, 100%, 50%)`;
        g.fillRect((i % 8) * 10, Math.floor(i / 8) * 10, 10, 10);
      }
    };
    paint();
    setInterval(paint, 66);
    return canvas.captureStream(15).getVideoTracks()[0];
  };
  let ctx = null;
  const toneTrack = () => {
    ctx = ctx || new AudioContext();
    const osc = ctx.createOscillator();
    osc.frequency.value = hz;
    const gain = ctx.createGain();
    gain.gain.value = 0.3;
    const dst = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dst);
    osc.start();
    ctx.resume();
    return dst.stream.getAudioTracks()[0];
  };
  navigator.mediaDevices.getUserMedia = async (c) => {
    const stream = new MediaStream();
    if (c && c.video) stream.addTrack(canvasTrack(rgb));
    if (c && c.audio) stream.addTrack(toneTrack());
    return stream;
  };
  navigator.mediaDevices.getDisplayMedia = async () => new MediaStream([canvasTrack(screen)]);
})(__MEDIA__);"""

# Per remote track: who sent it (the SDK's mapping from the server's `tracks` message) and its
# inbound counters; per user, the camera tile's centre colour and the audio's dominant frequency
# (an AnalyserNode per remote audio track, kept on window; the demo plays each remote audio track
# in an <audio>, which is what makes Chromium feed it to WebAudio).
STATS_JS = """async () => {
  const call = window.zvonokDemo.call;
  const inbound = {};
  (await call.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp") inbound[s.trackIdentifier] = s;
  });
  // Keyed by the track object: a rebuilt connection's track may reuse the old track's id.
  const rx = window.toneProbe = window.toneProbe || {ctx: new AudioContext(), by: new WeakMap()};
  rx.ctx.resume();
  const dominantHz = (track) => {
    let an = rx.by.get(track);
    if (!an) {
      an = rx.ctx.createAnalyser();
      an.fftSize = 8192;
      an.smoothingTimeConstant = 0;
      rx.ctx.createMediaStreamSource(new MediaStream([track])).connect(an);
      rx.by.set(track, an);
      return null;
    }
    const bins = new Float32Array(an.frequencyBinCount);
    an.getFloatFrequencyData(bins);
    const per = rx.ctx.sampleRate / an.fftSize;
    let best = Math.ceil(100 / per);
    for (let i = best; i < 3000 / per; i++) if (bins[i] > bins[best]) best = i;
    return bins[best] > -80 ? Math.round(best * per) : null;
  };
  const remote = call.remoteTracks.map((t) => {
    const s = inbound[t.track.id] || {};
    return {trackId: t.trackId, kind: t.kind, userId: t.userId, sessionId: t.sessionId,
      id: t.track.id, live: t.track.readyState === "live", packets: s.packetsReceived || 0,
      frames: s.framesDecoded || 0, hz: t.kind === "audio" ? dominantHz(t.track) : null};
  });
  const byTrack = {};
  for (const t of remote) byTrack[t.id] = t.kind === "video" ? t.frames : t.packets;
  return {sessionId: call.sessionId, remote, byTrack};
}"""

# Replace the camera with a canvas of one colour (redrawn so frames keep flowing).
PAINT_JS = """async (colour) => {  // publish a canvas of one colour instead of the camera
  const canvas = document.createElement("canvas");
  canvas.width = 320; canvas.height = 240;
  const ctx = canvas.getContext("2d");
  const draw = () => { ctx.fillStyle = colour; ctx.fillRect(0, 0, 320, 240); };
  draw();
  window.paintTimer = setInterval(draw, 50);
  await window.zvonokDemo.call.publish(canvas.captureStream(15));
}"""

# The track id the camera tile of `userId` shows.
CAMERA_ID_JS = """(userId) => {
  const tile = document.querySelector(`.tile:not(.screen)[data-user-id="${userId}"]`);
  return tile ? tile.getAttribute("data-track-id") : null;
}"""

# The centre pixel of the camera (or screen) tile of `userId`.
PIXEL_JS = """([userId, screen]) => {
  const tile = document.querySelector(
    `.tile${screen ? ".screen" : ":not(.screen)"}[data-user-id="${userId}"]`);
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


#: The logs of every server this module started, and the page errors of the running test.
SERVER_LOGS: list[Path] = []
PAGE_ERRORS: list[str] = []


@pytest.fixture(autouse=True)
def check_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test: no uncaught page error, and no unexpected ERROR record or traceback in
    the part of any server log written during the test (harness/errors.py)."""
    offsets = {log: _size(log) for log in SERVER_LOGS}
    PAGE_ERRORS.clear()
    yield
    allowed = errors.Allowed.of(request)  # @pytest.mark.allow_errors(server=..., client=...)
    for log in SERVER_LOGS:
        with log.open("rb") as f:
            f.seek(offsets.get(log, 0))
            lines = f.read().decode(errors="replace").splitlines()
        errors.check(f"the server ({log})", errors.server_problems(lines), allowed.server)
    errors.check("the demo pages", list(PAGE_ERRORS), allowed.client)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@contextlib.contextmanager
def serve(
    data_dir: Path,
    announce: str = "127.0.0.1",
    media_port: int | None = None,
    *,
    log_name: str = "server.log",
    started: list[subprocess.Popen[bytes]] | None = None,
    **env: str,
) -> Iterator[str]:
    """Run ``python -m zvonok serve`` in dev mode on loopback; yields its http base URL. Nodes
    that share ``data_dir`` need their own ``log_name``; ``started`` collects the process."""
    port = _free_port(socket.SOCK_STREAM)
    media_port = media_port or _free_port(socket.SOCK_DGRAM)
    environ = {**os.environ, "ZVONOK_DEV_MODE": "true", "ZVONOK_MEDIA_HOST": "127.0.0.1", **env}
    args = [sys.executable, "-m", "zvonok", "serve", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--media-port", str(media_port), "--data-dir", str(data_dir)]
    args += ["--announce-ip", announce]
    log_path = data_dir / log_name
    SERVER_LOGS.append(log_path)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, env=environ, stdout=log, stderr=subprocess.STDOUT)
        if started is not None:
            started.append(proc)
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
            proc.send_signal(signal.SIGINT)  # stop now (SIGTERM would drain its rooms first)
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


class Evaluates(Protocol):
    """A demo page we can run JS in: a Playwright ``Page`` or a ``BiDiFirefox``."""

    async def evaluate(self, expression: str, arg: Any = None) -> Any: ...


def fake_media_js(user: str) -> str:
    """``FAKE_MEDIA_JS`` for ``user``: the user's colour and tone, the shared screen colour."""
    colour = USER_COLOURS[user]
    media = [list(COLOURS[colour]), TONES[colour], list(COLOURS[SCREEN_COLOUR])]
    return FAKE_MEDIA_JS.replace("__MEDIA__", json.dumps(media))


async def open_demo(browser: Browser, base: str, user: str, kind: str, room: str) -> Page:
    """A fresh browser context showing the demo page, joined as ``user``, whose camera and
    microphone are the user's colour and tone (``FAKE_MEDIA_JS``)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    await context.add_init_script(fake_media_js(user))
    page = await context.new_page()
    page.on("pageerror", lambda exc: PAGE_ERRORS.append(f"{user}: {exc}"))
    page.set_default_timeout(15000)
    await page.goto(f"{base}/?user={user}&kind={kind}&room={room}")
    await page.click("#join")
    await page.wait_for_selector("#call:not([hidden])")
    await page.wait_for_selector(".tile.local")
    return page


async def stats(page: Evaluates) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(STATS_JS)
    return result


async def identity_problem(
    page: Evaluates, peer: str, colour: str | None, tone: str | None
) -> tuple[str, float]:
    """Why ``page`` does not see and hear ``peer`` as ``colour`` / ``tone`` ("" when it does),
    and the monotonic time of the second sample (by then the media was flowing).

    Sampled 1 s apart, per remote participant: ``peer``'s camera track (the one its tile shows)
    decodes more frames and its tile's centre is ``colour``; ``peer``'s audio packets grow and
    their dominant frequency is the tone of ``tone``. None skips that identity check.
    """
    before = await stats(page)
    await asyncio.sleep(1.0)
    after = await stats(page)
    at = time.monotonic()
    mine = [t for t in after["remote"] if t["userId"] == peer and t["live"]]
    camera_id = await page.evaluate(CAMERA_ID_JS, peer)
    cameras = [t for t in mine if t["kind"] == "video" and t["trackId"] == camera_id]
    audios = [t for t in mine if t["kind"] == "audio"]
    if not cameras or not audios:
        return f"no live camera ({camera_id}) and audio from {peer}: {after['remote']}", at
    old = before["byTrack"]
    if cameras[0]["frames"] <= old.get(cameras[0]["id"], 0):
        return f"{peer}'s camera frames not growing: {cameras[0]}", at
    if not any(a["packets"] > old.get(a["id"], 0) for a in audios):
        return f"{peer}'s audio packets not growing: {audios}", at
    if colour is not None:
        seen = await page.evaluate(PIXEL_JS, [peer, False])
        if seen is None or nearest_colour(tuple(seen[:3])) != colour:
            return f"{peer}'s tile shows {seen}, not {colour}", at
    if tone is not None:
        heard = [nearest_tone(a["hz"]) for a in audios]
        if heard != [tone]:
            heard_hz = [a["hz"] for a in audios]
            return f"{peer}'s audio is {heard_hz} Hz, not {TONES[tone]} ({tone})", at
    return "", at


async def sees_and_hears(
    page: Evaluates,
    peer: str,
    what: str,
    limit: float = 20,
    colour: str | None = "",
    tone: str | None = "",
) -> float:
    """Until ``page`` gets ``peer``'s media with ``peer``'s colour and tone (``USER_COLOURS``
    unless given; None skips one); fails with the last reason after ``limit`` seconds. Returns
    the monotonic time by which the media was seen flowing."""
    colour = USER_COLOURS[peer] if colour == "" else colour
    tone = USER_COLOURS[peer] if tone == "" else tone
    deadline = time.monotonic() + limit
    problem, at = "not sampled", 0.0
    for _ in range(int(limit) + 2):
        problem, at = await identity_problem(page, peer, colour, tone)
        if not problem or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert not problem, f"timed out after {limit} s waiting for {what}: {problem}"
    return at


async def two_party(browser: Browser, base: str, room: str) -> tuple[Page, Page]:
    alice = await open_demo(browser, base, "alice", "chat", room)
    bob = await open_demo(browser, base, "bob", "chat", room)
    await sees_and_hears(alice, "bob", "alice to see and hear bob")
    await sees_and_hears(bob, "alice", "bob to see and hear alice")
    return alice, bob


async def tile_count(page: Page, selector: str) -> int:
    return len(await page.query_selector_all(selector))


async def test_two_party_call(server: str, browser: Browser, tmp_path: Path) -> None:
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
    # The quality line names the path the call took (from getStats' selected pair): UDP here.
    await alice.wait_for_function(
        "document.querySelector('#quality .text').textContent.endsWith(' · via UDP')",
        timeout=10000,
    )
    await alice.screenshot(path=str(tmp_path / "screenshot-call.png"))
    if os.environ.get("ZVONOK_SCREENSHOT"):  # ./dev screenshot: refresh the README's picture
        shutil.copyfile(tmp_path / "screenshot-call.png", os.environ["ZVONOK_SCREENSHOT"])

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

    async def screen_is_yellow() -> bool:
        seen = await bob.evaluate(PIXEL_JS, ["alice", True])
        return seen is not None and nearest_colour(tuple(seen[:3])) == SCREEN_COLOUR

    await wait_for(screen_is_yellow, "bob to see alice's screen in its colour", 10)
    await sees_and_hears(bob, "alice", "bob to still see alice's camera beside her screen")
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
    """``publish(stream)`` mid-call replaces the camera: the other side decodes the new colour."""
    alice, bob = await two_party(browser, server, "colours")
    await alice.evaluate(PAINT_JS, "rgb(0, 255, 0)")
    await bob.evaluate(PAINT_JS, "rgb(255, 255, 255)")
    await sees_and_hears(bob, "alice", "bob to decode alice's new green", 15, colour="green")
    await sees_and_hears(alice, "bob", "alice to decode bob's new white", 15, colour="white")
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
    await sees_and_hears(alice, "bob", "media to alice after the resume", 15)
    await sees_and_hears(bob, "alice", "media to bob after the resume", 15)
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
    await sees_and_hears(alice, "bob", "media to alice after the rebuild", 20)
    await sees_and_hears(bob, "alice", "media to bob after the rebuild", 20)
    assert await tile_count(bob, '.tile[data-user-id="alice"]') == 1
    for page in (alice, bob):
        await page.click("#leave")


async def test_demo_page_joins_from_both_loopback_names(server: str, browser: Browser) -> None:
    """The demo page's own requests (JSON, same origin) pass the development endpoints' Host and
    Origin checks as 127.0.0.1 and as localhost: both users get a token and a membership, and
    each sees and hears the other (docs/security.md, development endpoints)."""
    localhost = server.replace("127.0.0.1", "localhost")
    alice = await open_demo(browser, server, "alice", "chat", "loopnames")
    bob = await open_demo(browser, localhost, "bob", "chat", "loopnames")
    await sees_and_hears(alice, "bob", "alice to see and hear bob")
    await sees_and_hears(bob, "alice", "bob to see and hear alice")
    assert await bob.evaluate("location.host") == localhost.removeprefix("http://")
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
            paths: [["relay", "udp"], ["host", "tcp"], ["host", "udp"], ["srflx", "udp"]].map(
              ([candidateType, protocol]) => sdk.callPath(
                new Map([["c", {candidateType, protocol}]]), {localCandidateId: "c"}))
              .concat([sdk.callPath(new Map(), null)]),
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
    assert result["paths"] == ["relay", "tcp", "udp", "udp", None]


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


async def open_firefox_demo(
    firefox: BiDiFirefox, base: str, user: str, kind: str, room: str
) -> None:
    """The demo page in ``firefox``, joined (``?join``) as ``user`` with the user's colour and
    tone (``FAKE_MEDIA_JS`` as a preload script), like ``open_demo``."""
    await firefox.preload("() => {" + fake_media_js(user) + "}")
    await firefox.navigate(f"{base}/?user={user}&kind={kind}&room={room}&join")
    joined = """() => Boolean(window.zvonokDemo && window.zvonokDemo.call
      && !document.querySelector("#call").hidden && document.querySelector(".tile.local"))"""
    await wait_for(lambda: firefox.evaluate(joined), f"{user} to join in firefox", 20)


async def test_firefox_and_chromium_call(server: str, browser: Browser) -> None:
    """Firefox ESR (the demo's ``?join``, over WebDriver BiDi) and Chromium call each other: each
    side decodes the other's frames, colour and tone, per participant."""
    alice = await open_demo(browser, server, "alice", "chat", "firefox")
    async with BiDiFirefox("bob (firefox)", USER_COLOURS["bob"]) as bob:
        try:
            await open_firefox_demo(bob, server, "bob", "chat", "firefox")
            await sees_and_hears(alice, "bob", "chromium to see and hear firefox", 30)
            await sees_and_hears(bob, "alice", "firefox to see and hear chromium", 30)
        finally:
            PAGE_ERRORS.extend(f"bob (firefox): {e}" for e in bob.errors)
    await alice.click("#leave")


async def test_group_call_of_three(server: str, browser: Browser) -> None:
    pages = {
        user: await open_demo(browser, server, user, "group", "three")
        for user in ("ann", "ben", "cat")
    }
    for user, page in pages.items():
        for peer in pages:
            if peer != user:
                await sees_and_hears(page, peer, f"{user} to see and hear {peer}")
        names = await page.eval_on_selector_all(
            ".tile:not(.local)", "(tiles) => tiles.map((t) => t.dataset.userId).sort()"
        )
        assert names == sorted(set(pages) - {user})
    for page in pages.values():
        await page.click("#leave")


# A deliberate fault (self-check of the identity check): send back what one receives.
ECHO_JS = """async () => {
  const call = window.zvonokDemo.call;
  for (const sender of call.peerConnection.getSenders()) {
    const kind = sender.track && sender.track.kind;
    const back = call.remoteTracks.find((t) => t.kind === kind && t.track.readyState === "live");
    if (back) await sender.replaceTrack(back.track);
  }
}"""


async def test_echo_fails_the_identity_check(server: str, browser: Browser) -> None:
    """Bob's page echoes alice's media back in place of his own, as an echoing server would:
    alice still gets growing frames and packets "from bob", but the picture is her own colour
    and the sound her own tone, and the check says so."""
    alice, bob = await two_party(browser, server, "echo")
    await bob.evaluate(ECHO_JS)
    with pytest.raises(AssertionError, match=r"bob's tile shows .*, not blue"):
        await sees_and_hears(alice, "bob", "alice to see bob (echoed)", 6, tone=None)
    with pytest.raises(AssertionError, match=r"bob's audio is \[4\d\d\] Hz, not 660.0"):
        await sees_and_hears(alice, "bob", "alice to hear bob (echoed)", 6, colour=None)
    await sees_and_hears(alice, "bob", "alice to get her own media back", 10, "red", "red")
    for page in (alice, bob):
        await page.click("#leave")


async def test_echo_fails_a_firefox_receivers_identity_check(server: str, browser: Browser) -> None:
    """Alice's Chromium page echoes bob's media back: bob's Firefox still gets growing frames and
    packets "from alice", but his own colour and tone, and the check says so."""
    alice = await open_demo(browser, server, "alice", "chat", "ffecho")
    async with BiDiFirefox("bob (firefox)", USER_COLOURS["bob"]) as bob:
        try:
            await open_firefox_demo(bob, server, "bob", "chat", "ffecho")
            await sees_and_hears(bob, "alice", "firefox to see and hear chromium", 30)
            await sees_and_hears(alice, "bob", "chromium to see and hear firefox", 30)
            await alice.evaluate(ECHO_JS)
            await sees_and_hears(
                bob, "alice", "firefox to get its own media back", 15, "blue", "blue"
            )
            with pytest.raises(AssertionError, match=r"alice's tile shows .*, not red"):
                await sees_and_hears(bob, "alice", "firefox to see alice (echoed)", 6, tone=None)
            with pytest.raises(AssertionError, match=r"alice's audio is \[6\d\d\] Hz, not 440.0"):
                await sees_and_hears(bob, "alice", "firefox to hear alice (echoed)", 6, colour=None)
        finally:
            PAGE_ERRORS.extend(f"bob (firefox): {e}" for e in bob.errors)
    await alice.click("#leave")


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
    await sees_and_hears(alice, "bob", "media to alice after the restart", 15)
    await sees_and_hears(bob, "alice", "media to bob after the restart", 15)
    for page in (alice, bob):
        await page.click("#leave")


class WorkerRelays:
    """A ``UdpRelay`` from 127.0.0.2 to 127.0.0.1 on every media worker's port: ``media_port``
    and, when the suite runs with ``ZVONOK_WORKERS=N``, the next N−1 ports (worker i listens on
    ``media_port + i``), cut and counted together."""

    def __init__(self, media_port: int) -> None:
        workers = os.environ.get("ZVONOK_WORKERS", "1")
        count = len(os.sched_getaffinity(0)) if workers == "auto" else int(workers)
        ports = range(media_port, media_port + count)
        self.relays = [UdpRelay(("127.0.0.2", p), ("127.0.0.1", p)) for p in ports]

    async def start(self) -> None:
        for relay in self.relays:
            await relay.start()

    def cut(self, seconds: float) -> None:
        for relay in self.relays:
            relay.cut(seconds)

    @property
    def dropped(self) -> int:
        return sum(relay.dropped for relay in self.relays)

    def close(self) -> None:
        for relay in self.relays:
            relay.close()


async def test_network_cut_reconnects_without_a_leave(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Alice's network goes away for a while: her WebSocket drops and her media is blackholed.
    The SDK reconnects on its own (same session, ICE restart), media resumes both ways, and Bob
    never sees her leave. Media goes through a NAT-like relay on 127.0.0.2 that the test cuts."""
    media_port = _free_port(socket.SOCK_DGRAM)
    relay = WorkerRelays(media_port)
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
            healed = (
                max(
                    await asyncio.gather(  # both directions at once, each timed on its own
                        sees_and_hears(alice, "bob", "media to alice after the cut", 30),
                        sees_and_hears(bob, "alice", "media to bob after the cut", 30),
                    )
                )
                - cut_ended
            )
            print(f"network cut healed {healed:.1f} s after the network came back")
            assert healed < 5.0, f"media resumed {healed:.1f} s after the network came back"
            assert await tile_count(bob, '.tile[data-user-id="alice"]') >= 1
            for page in (alice, bob):
                await page.click("#leave")
    finally:
        relay.close()


async def test_failed_media_ends_the_session_and_the_sdk_joins_again(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Alice's media path is blackholed (her WebSocket stays up) for longer than the server's ICE
    consent timeout: the server ends her session (bob gets ``participant-left`` ``failed``, alice
    ``error`` ``media-failed`` and close 4002) instead of keeping a zombie socket; her SDK joins
    again on its own (a fresh session, same sessionId) and media flows both ways once more."""
    media_port = _free_port(socket.SOCK_DGRAM)
    relay = WorkerRelays(media_port)
    await relay.start()
    try:
        with serve(
            tmp_path_factory.mktemp("zvonok-failed"),
            announce="127.0.0.2",
            media_port=media_port,
            ZVONOK_CONSENT_TIMEOUT="4",
        ) as base:
            alice, bob = await two_party(browser, base, "mediafail")
            watch = """(types) => {
              const call = window.zvonokDemo.call;
              window.events = [];
              for (const t of types) call.addEventListener(t, (e) => window.events.push(
                t + (e.detail && e.detail.reason ? ":" + e.detail.reason : "")));
            }"""
            await alice.evaluate(watch, ["reconnecting", "reconnected", "failed"])
            await bob.evaluate(watch, ["participantleft", "participantjoined"])
            session = await alice.evaluate("() => window.zvonokDemo.call.sessionId")
            relay.cut(9)
            events = await wait_for(
                lambda: alice.evaluate(
                    "() => window.events.includes('reconnected') && window.events.join(',')"
                ),
                "alice's SDK to join again after media-failed",
                30,
            )
            assert "failed" not in events, events
            assert await alice.evaluate("() => window.zvonokDemo.call.sessionId") == session
            bob_events = await wait_for(
                lambda: bob.evaluate(
                    "() => window.events.includes('participantjoined') && window.events.join(',')"
                ),
                "bob to see alice leave (failed) and come back",
                30,
            )
            assert bob_events.startswith("participantleft:failed"), bob_events
            await asyncio.gather(
                sees_and_hears(alice, "bob", "media to alice after her session was rebuilt", 30),
                sees_and_hears(bob, "alice", "media to bob after alice's session was rebuilt", 30),
            )
            for page in (alice, bob):
                await page.click("#leave")
    finally:
        relay.close()
