"""Self-check of the media-identity and error checks: a deliberately broken variant fails each.

- Identity: a participant whose page echoes what it receives (``window.peer.echo()`` in
  pages/peer.js, the same effect as an echoing server) makes the receiver's colour and tone checks
  fail, both for an aiortc receiver (Goertzel on decoded audio) and for a Chromium one
  (``AnalyserNode``); in a group the echo also shows a misroute: one participant's media under
  another's name. A Firefox receiver fails the same way (its ``AnalyserNode`` runs on cubeb's
  mock context, harness/firefox.py), and also when its sender sends black frames and silence
  (tracks disabled: packets and frames still grow). The demo/SDK variant is
  ``test_demo.py::test_echo_fails_the_identity_check``.
- Errors: an ERROR record and a traceback in a server's log, and an error recorded by a client
  page, fail the teardown checks of harness/errors.py unless the test's ``allow_errors`` marker
  names them.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from .harness import errors
from .harness.aiortc_peer import AiortcPeers
from .harness.chromium import ChromiumPeers
from .harness.firefox import FirefoxPeers
from .harness.server import ServerFactory, ZvonokServer

pytestmark = pytest.mark.timeout(90)

WAIT = 30.0


async def both_fail(*checks: tuple[Coroutine[Any, Any, object], str]) -> None:
    """Each wait must fail with an ``AssertionError`` matching its pattern; the waits run at
    once (a failing wait lasts its whole timeout: the picture's and the sound's overlap)."""

    async def fails(wait: Coroutine[Any, Any, object], pattern: str) -> None:
        with pytest.raises(AssertionError, match=pattern):
            await wait

    async with asyncio.TaskGroup() as group:
        for wait, pattern in checks:
            group.create_task(fails(wait, pattern))


@pytest.mark.browser
async def test_an_echo_fails_colour_and_tone(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, aiortc_peers: AiortcPeers
) -> None:
    group = zvonok_server.create_group(["alice", "bob", "carol"])
    a = await aiortc_peers.open(zvonok_server, user="alice", room=group, color="red", kind="group")
    b = await chromium_peers.open(zvonok_server, user="bob", room=group, color="blue", kind="group")
    await a.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
    await a.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)
    await b.wait_receiving(from_user="alice", kind="audio", color="red", timeout=WAIT)

    # bob sends alice's media back: alice still gets growing media "from bob", but her own.
    assert await b.call("echo") is True
    # the echo has taken effect (else a check for blue could still pass on bob's last frames)
    await a.wait_receiving(from_user="bob", color="red", timeout=WAIT)
    await a.wait_receiving(from_user="bob", kind="audio", color="red", timeout=WAIT)
    await both_fail(
        (a.wait_receiving(from_user="bob", color="blue", timeout=6),
         "decoded colour red .*, expected blue"),
        (a.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=6),
         r"decoded tone red \(440.0 Hz\), expected blue"),
    )  # fmt: skip
    await a.wait_receiving(from_user="bob", kind="audio", color="red", timeout=10)

    # carol joins: bob's echo is now alice's media under bob's name at carol's side (a misroute),
    # and carol (Chromium) says so for the picture and the sound.
    c = await chromium_peers.open(
        zvonok_server, user="carol", room=group, color="green", kind="group"
    )
    await c.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    await both_fail(
        (c.wait_receiving(from_user="bob", color="blue", timeout=8),
         "decoded colour red .*, expected blue"),
        (c.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=8),
         "decoded tone red .*, expected blue"),
    )  # fmt: skip


# Bob (Chromium) sends a black picture (a canvas at the camera's frame rate) and silence (his
# microphone track disabled: Opus packets keep flowing), then his camera and tone again.
_BLACK_AND_SILENT_JS = """async () => {
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  document.body.appendChild(canvas);
  const g = canvas.getContext("2d");
  let n = 0;
  const paint = () => {
    g.fillStyle = "#000";
    g.fillRect(0, 0, 320, 240);
    g.fillStyle = n++ % 2 ? "#000" : "#fff";
    g.fillRect(0, 0, 8, 8);
  };
  paint();
  setInterval(paint, 66);
  const black = canvas.captureStream(15).getVideoTracks()[0];
  for (const s of window.peer.pc.getSenders()) {
    if (!s.track) continue;
    if (s.track.kind === "audio") {
      s.track.enabled = false;
    } else {
      window.cameraTrack = s.track;
      await s.replaceTrack(black);
    }
  }
}"""
_CAMERA_AND_TONE_JS = """async () => {
  for (const s of window.peer.pc.getSenders()) {
    if (!s.track) continue;
    if (s.track.kind === "audio") s.track.enabled = true;
    else await s.replaceTrack(window.cameraTrack);
  }
}"""


@pytest.mark.browser
async def test_a_firefox_receiver_fails_on_black_silence_and_an_echo(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, firefox_peers: FirefoxPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await firefox_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await chromium_peers.open(zvonok_server, user="bob", room=chat, color="blue")
    video = await a.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
    await a.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)
    assert video.frames_decoded, video.describe()  # Firefox's getStats counts decoded frames

    # Black and silence: media still flows "from bob" (first seen arriving), but shows and
    # sounds no one.
    await b.page.evaluate(_BLACK_AND_SILENT_JS)
    await a.wait_receiving(from_user="bob", color="black", timeout=WAIT)
    await both_fail(
        (a.wait_receiving(from_user="bob", color="blue", timeout=6),
         r"decoded colour black .*, expected blue"),
        (a.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=6),
         r"decoded tone None \(None Hz\), expected blue"),
    )  # fmt: skip
    await b.page.evaluate(_CAMERA_AND_TONE_JS)
    await a.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
    await a.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)

    # bob sends alice's media back: Firefox decodes its own colour and tone under bob's name
    # (first seen arriving, so the checks below sample the echo, not the frames before it).
    await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    assert await b.call("echo") is True
    await a.wait_receiving(from_user="bob", color="red", timeout=WAIT)
    await a.wait_receiving(from_user="bob", kind="audio", color="red", timeout=WAIT)
    await both_fail(
        (a.wait_receiving(from_user="bob", color="blue", timeout=6),
         "decoded colour red .*, expected blue"),
        (a.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=6),
         r"decoded tone red \(4\d\d\.\d Hz\), expected blue"),
    )  # fmt: skip


def test_server_problems_are_found() -> None:
    lines = [
        json.dumps({"level": "INFO", "msg": "joined"}),
        json.dumps({"level": "WARNING", "msg": "slow"}),
        json.dumps({"level": "ERROR", "msg": "boom"}),
        json.dumps({"level": "WARNING", "msg": "caught", "exc": "Traceback ...\nValueError"}),
        "2026-01-01T00:00:00.000Z INFO zvonok: fine",
        "2026-01-01T00:00:00.000Z ERROR zvonok.rooms: broken room=chat:1",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "KeyError: 'x'",
        "after the traceback",
    ]
    found = errors.server_problems(lines)
    assert [f.splitlines()[0][:40] for f in found] == [
        lines[2][:40],
        lines[3][:40],
        lines[5][:40],
        "Traceback (most recent call last):",
    ]
    assert found[3].endswith("KeyError: 'x'")
    with pytest.raises(AssertionError, match="recorded 4 unexpected error"):
        errors.check("a server", found, [])
    errors.check("a server", found, [re.compile(p) for p in ("boom", "caught", "broken", "Key")])


# A stand-in server: logs an ERROR record and a traceback, then answers HTTP.
_NOISY = """
import json, sys, http.server
print(json.dumps({"level": "ERROR", "logger": "zvonok", "msg": "deliberate failure"}), flush=True)
print("Traceback (most recent call last):\\nRuntimeError: deliberate crash", flush=True)
http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=int(sys.argv[1]),
                 bind="127.0.0.1")
"""


def test_a_server_error_fails_the_teardown_check(tmp_path: Path) -> None:
    factory = ServerFactory(tmp_path)  # not the fixture: its failure is what this test expects
    try:
        script = tmp_path / "noisy_server.py"
        script.write_text(_NOISY)
        factory.start(command=[sys.executable, str(script), "{port}"], health_path="/")
    finally:
        factory.close()
    with pytest.raises(AssertionError, match=r"(?s)2 unexpected error.*deliberate failure"):
        factory.check_logs()
    allowed = ServerFactory(tmp_path / "allowed")
    allowed.servers = factory.servers
    allowed.allowed = errors.Allowed(server=(re.compile("deliberate"),))
    allowed.check_logs()


@pytest.mark.browser
@pytest.mark.allow_errors(client=[r"deliberate client fault"], reason="this test records it")
async def test_a_client_error_fails_the_teardown_check(chromium_peers: ChromiumPeers) -> None:
    peer = await chromium_peers.open_loopback(user="erin", color="white")
    await peer.page.evaluate(
        "() => { setTimeout(() => { throw new Error('deliberate client fault'); }, 0); }"
    )
    await asyncio.sleep(0.5)
    recorded = await peer.errors()
    assert any("deliberate client fault" in e for e in recorded), recorded
    with pytest.raises(AssertionError, match="unexpected error"):
        errors.check(peer.name, recorded, [])
    # The marker's allow-list is what lets the fixture's own check at teardown pass.
    assert chromium_peers.allowed.client[0].pattern == "deliberate client fault"
