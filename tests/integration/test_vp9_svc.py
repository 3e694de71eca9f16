"""VP9 SVC with real Chromium (issue 15): one VP9 encoding carrying 3 spatial and 3 temporal
layers (``scalabilityMode`` L3T3_KEY), and the server forwarding each subscriber the spatial
layers it can use.

The demo page (``?codec=vp9``: the SDK's ``videoCodec`` option) in Chromium publishes its fake
1280x720 camera; each browser runs in its own network namespace (harness/netns.py, no shaping).
Two receive-only subscribers: ``small`` has a small window, so its tile's wish
(``track-settings`` ``maxWidth``) is covered by the lowest spatial layer (320x180), ``big`` a
window wide enough for 1280 px. Checked with ``getStats``: the publisher's outbound video is VP9
in L3T3_KEY (else the test is skipped, saying what Chromium sends), both subscribers decode VP9
(``framesDecoded`` growing), ``small`` at <= 320 px at a fluid frame rate, ``big`` at 1280 px,
and the server's ``stats`` name the spatial layer each gets (``layer`` ``s0`` / ``s2``).
Bounded waits; the whole test takes well under a minute.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from playwright.async_api import Page

from .harness import demo_page
from .harness.demo_page import wait_for
from .harness.netns import Client, EmulatedNetwork, emulated_network
from .harness.server import ZvonokServer

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]
__all__ = ["emulated_network"]  # the fixture, imported for this module's tests

WAIT = 25.0

WATCH_JS = """() => {
  const call = window.zvonokDemo.call;
  if (window.watching === call) return;
  window.watching = call;
  call.addEventListener("serverstats", (e) => { window.lastServerStats = e.detail; });
}"""

# The video streams of the page's peer connection: codec, frames, size, and the SVC mode sent.
STATS_JS = """async () => {
  const call = window.zvonokDemo && window.zvonokDemo.call;
  const pc = call && call.peerConnection;
  if (!pc) return null;
  const report = await pc.getStats();
  const codecs = {};
  report.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
  const out = {inbound: [], outbound: [], serverStats: window.lastServerStats || null};
  report.forEach((s) => {
    if (s.kind !== "video") return;
    if (s.type === "inbound-rtp") {
      out.inbound.push({codec: codecs[s.codecId] || null, frames: s.framesDecoded || 0,
        width: s.frameWidth || 0, height: s.frameHeight || 0, freezes: s.freezeCount || 0});
    } else if (s.type === "outbound-rtp") {
      out.outbound.push({codec: codecs[s.codecId] || null, mode: s.scalabilityMode || null,
        width: s.frameWidth || 0, frames: s.framesEncoded || 0, rid: s.rid ?? null});
    }
  });
  return out;
}"""


# What the SDK last told the server about the received tracks (``track-settings``).
SETTINGS_JS = """() => (window.sentSettings || []).slice(-1)"""
SENT_JS = """(() => {
  window.sentSettings = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const m = JSON.parse(data);
      if (m.type === "track-settings") window.sentSettings.push(m.payload.tracks);
    } catch (e) {}
    return send.call(this, data);
  };
})();"""


async def open_demo(
    network: EmulatedNetwork,
    client: Client,
    server: ZvonokServer,
    user: str,
    group: str,
    *,
    publish: bool,
    viewport: tuple[int, int],
    scale: float = 1.0,
) -> Page:
    """The demo (``harness/demo_page.py``) joined to ``group`` with ``?codec=vp9``, the
    track-settings tap and the server-stats listener installed."""
    return await demo_page.open_demo(
        network, client, server, user, group, kind="group", publish=publish,
        viewport=viewport, scale=scale, query="codec=vp9", init_scripts=[SENT_JS],
        watch_js=WATCH_JS,
    )  # fmt: skip


async def sample(page: Page) -> dict[str, Any]:
    value: dict[str, Any] | None = await page.evaluate(STATS_JS)
    assert value is not None, "the demo has no call"
    return value


async def decoding(page: Page, seconds: float = 2.0) -> tuple[float, int, str | None]:
    """Decoded frames per second over ``seconds``, the frame width now and the codec."""
    first = (await sample(page))["inbound"]
    await asyncio.sleep(seconds)
    second = (await sample(page))["inbound"]
    if len(first) != 1 or len(second) != 1:
        return 0.0, 0, None
    rate = (second[0]["frames"] - first[0]["frames"]) / seconds
    return rate, second[0]["width"], second[0]["codec"]


def server_layer(stats: dict[str, Any]) -> str | None:
    """The ``layer`` the server's last ``stats`` names for the received video."""
    server = stats["serverStats"] or {}
    video = [r for r in server.get("receiving", []) if r.get("kind") == "video"]
    return video[0].get("layer") if len(video) == 1 else None


async def test_vp9_svc_subscribers_get_the_spatial_layer_they_need(
    emulated_network: EmulatedNetwork,
) -> None:
    network = emulated_network
    pub_net, small_net, big_net = (network.add_client() for _ in range(3))
    server = network.start_server(env={"ZVONOK_STATS_INTERVAL": "1"})
    group = server.create_group(["pub", "small", "big"])
    publisher = await open_demo(
        network, pub_net, server, "pub", group, publish=True, viewport=(1280, 720)
    )

    async def sends_svc() -> dict[str, Any] | None:
        out = [r for r in (await sample(publisher))["outbound"] if r["frames"] > 0]
        return out[0] if len(out) == 1 and out[0]["codec"] == "video/VP9" else None

    sent = await wait_for(sends_svc, "the publisher to send VP9", WAIT)
    if sent["mode"] != "L3T3_KEY":
        pytest.skip(f"Chromium does not send VP9 SVC here: outbound {sent}")
    # Tiles wide enough (in device pixels) for 1280 px, and small enough for 320 px.
    big = await open_demo(
        network, big_net, server, "big", group, publish=False, viewport=(1400, 900), scale=2.0
    )
    small = await open_demo(
        network, small_net, server, "small", group, publish=False, viewport=(360, 240)
    )

    seen: list[str] = []

    async def small_gets_low() -> tuple[float, int, str | None] | None:
        rate, width, codec = await decoding(small, 1.0)
        stats = await sample(small)
        settings = await small.evaluate(SETTINGS_JS)
        seen.append(f"{width} px {rate:.0f} fps layer {server_layer(stats)} wish {settings}")
        return (rate, width, codec) if rate > 0 and 0 < width <= 320 else None

    async def big_gets_full() -> tuple[float, int, str | None] | None:
        rate, width, codec = await decoding(big, 1.0)
        return (rate, width, codec) if rate > 0 and width >= 1280 else None

    await wait_for(big_gets_full, "big to decode 1280 px", WAIT)
    try:
        await wait_for(small_gets_low, "small to decode <= 320 px", WAIT)
    finally:
        print("VP9 SVC small:\n" + "\n".join(seen))
    started = time.monotonic()
    small_rate, small_width, small_codec = await decoding(small, 5.0)
    big_rate, big_width, big_codec = await decoding(big, 2.0)
    small_stats, big_stats = await sample(small), await sample(big)
    print(
        f"VP9 SVC: publisher {sent}; small {small_width} px at {small_rate:.1f} fps "
        f"({small_codec}, server layer {server_layer(small_stats)}, "
        f"{small_stats['inbound']}); big {big_width} px at {big_rate:.1f} fps ({big_codec}, "
        f"server layer {server_layer(big_stats)}) after {time.monotonic() - started:.1f} s"
    )
    assert small_codec == big_codec == "video/VP9"
    assert 0 < small_width <= 320, small_width
    assert small_rate >= 20, small_rate  # fluid: the fake camera sends 30 fps
    assert big_width >= 1280, big_width
    assert big_rate >= 20, big_rate
    assert server_layer(small_stats) == "s0", small_stats["serverStats"]
    assert server_layer(big_stats) == "s2", big_stats["serverStats"]
