"""Firefox ESR publishing simulcast through the SDK to a Chromium subscriber (issue 15).

The demo page on loopback (test_demo.py's dev-mode server and helpers): bob in Firefox ESR (over
WebDriver BiDi) publishes a 1280x720 camera, which the SDK sends in 3 simulcast encodings
(q/h/f); alice in Chromium must see bob's colour and hear bob's tone (test_demo's identity
check), Firefox's sender keeps the three encodings after the server's answer, and its
outbound-rtp streams carry the rids, the active ones growing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from playwright.async_api import Browser

from .harness.firefox_bidi import BiDiFirefox
from .harness.stats import COLOURS, TONES
from .test_demo import (
    PAGE_ERRORS,
    USER_COLOURS,
    browser,
    check_errors,
    open_demo,
    sees_and_hears,
    server,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]
__all__ = ["browser", "check_errors", "server"]  # test_demo's fixtures, used here

# getUserMedia: a 1280x720 canvas of the user's colour (with a noisy corner, so frames carry a
# real bitrate) and an oscillator at the user's tone.
FAKE_HD_JS = """(([rgb, hz]) => {
  if (!navigator.mediaDevices) return;
  navigator.mediaDevices.getUserMedia = async (c) => {
    const stream = new MediaStream();
    if (c && c.video) {
      const canvas = document.createElement("canvas");
      canvas.width = 1280; canvas.height = 720;
      const g = canvas.getContext("2d");
      const paint = () => {
        g.fillStyle = `rgb(${rgb.join(",")})`; g.fillRect(0, 0, 1280, 720);
        for (let i = 0; i < 256; i++) {
          g.fillStyle = `hsl(${Math.floor(Math.random() * 360)}, 100%, 50%)`;
          g.fillRect((i % 16) * 20, Math.floor(i / 16) * 20, 20, 20);
        }
      };
      paint();
      setInterval(paint, 50);
      stream.addTrack(canvas.captureStream(20).getVideoTracks()[0]);
    }
    if (c && c.audio) {
      const ctx = new AudioContext();
      const osc = ctx.createOscillator();
      osc.frequency.value = hz;
      const gain = ctx.createGain();
      gain.gain.value = 0.3;
      const dst = ctx.createMediaStreamDestination();
      osc.connect(gain).connect(dst);
      osc.start();
      ctx.resume();
      stream.addTrack(dst.stream.getAudioTracks()[0]);
    }
    return stream;
  };
})(__MEDIA__);"""

SENDER_JS = """async () => {
  const pc = window.zvonokDemo.call.peerConnection;
  const camera = pc.getSenders().find((s) => s.track && s.track.kind === "video");
  const encodings = camera ? camera.getParameters().encodings.map((e) =>
    ({rid: e.rid ?? null, active: e.active})) : null;
  const outbound = [];
  (await pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") {
      outbound.push({rid: s.rid ?? null, bytes: s.bytesSent || 0, width: s.frameWidth || 0});
    }
  });
  const offers = (window.sentOffers || []);
  return {encodings, outbound, offers};
}"""

# Keep the SDP of every offer the SDK sends (a WebSocket.send hook, before the page's scripts).
SENT_OFFERS_JS = """(() => {
  window.sentOffers = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const m = JSON.parse(data);
      if (m.type === "offer") window.sentOffers.push(m.payload.sdp);
    } catch (e) {}
    return send.call(this, data);
  };
})();"""


async def test_firefox_publishes_simulcast_to_chromium(server: str, browser: Browser) -> None:
    alice = await open_demo(browser, server, "alice", "chat", "ffsimulcast")
    colour = USER_COLOURS["bob"]
    media = json.dumps([list(COLOURS[colour]), TONES[colour]])
    async with BiDiFirefox("bob (firefox)", colour) as bob:
        try:
            fake = FAKE_HD_JS.replace("__MEDIA__", media)
            await bob.preload("() => {" + SENT_OFFERS_JS + fake + "}")
            await bob.navigate(f"{server}/?user=bob&kind=chat&room=ffsimulcast&join")
            joined = """() => Boolean(window.zvonokDemo && window.zvonokDemo.call
              && !document.querySelector("#call").hidden
              && document.querySelector(".tile.local"))"""
            await wait_for(lambda: bob.evaluate(joined), "bob to join in firefox", 20)
            await sees_and_hears(alice, "bob", "chromium to see and hear firefox's simulcast", 30)

            async def sent() -> dict[str, Any] | None:
                first: dict[str, Any] = await bob.evaluate(SENDER_JS)
                await asyncio.sleep(1.0)
                second: dict[str, Any] = await bob.evaluate(SENDER_JS)
                before = {r["rid"]: r["bytes"] for r in first["outbound"]}
                active = {e["rid"] for e in second["encodings"] or [] if e["active"]}
                growing = {
                    r["rid"] for r in second["outbound"] if r["bytes"] > before.get(r["rid"], 0)
                }
                ok = [e["rid"] for e in second["encodings"] or []] == ["q", "h", "f"]
                return second if ok and active and active <= growing else None

            seen = await wait_for(sent, "firefox to send its active simulcast layers", 20)
            assert any("a=simulcast:send q;h;f" in o for o in seen["offers"]), seen["offers"]
            print(f"ADAPTIVE firefox simulcast: {seen['encodings']} {seen['outbound']}")
        finally:
            PAGE_ERRORS.extend(f"bob (firefox): {e}" for e in bob.errors)
    await alice.click("#leave")
