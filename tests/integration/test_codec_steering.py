"""Codec steering with real browsers (docs/media.md, "Codec steering"; issue 19).

A subscriber that cannot decode a publisher's codec still sees that camera: the server
renegotiates the publisher so that it sends a codec every subscriber decodes, never decoding
anything itself. Firefox ESR here has no OpenH264 (harness/firefox.py turns its download off), so
it decodes VP8 and VP9 only; a Chromium page narrows what it accepts with setCodecPreferences
(peer.js ``recvCodec``) or prefers H.264 for what it sends (``codecFirst``). "Sees" is the
harness's meaning: frames decoded, growing, in the publisher's colour.

Each test joins a codec-limited subscriber a few times (leaving in between, which lifts the
restriction again) and prints the time from its `join` to its first decoded frame of the camera
(the page's own clock: ``joinSentAt`` → its ``<video>``'s ``loadeddata``). Browsers run one at a
time.

The backup stream (no single codec fits: an H.264-only and a VP8-only subscriber) needs our SDK on
the publisher's side: that publisher is the demo page (``test_demo.fake_media_js`` makes its
camera a red canvas), read through ``window.zvonokDemo.call``.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections.abc import Callable
from typing import Any

import pytest
from playwright.async_api import Page

from .harness.chromium import ChromiumPeer, ChromiumPeers
from .harness.firefox import FirefoxPeer, FirefoxPeers
from .harness.firefox_bidi import BiDiFirefox
from .harness.server import ServerFactory, ZvonokServer
from .harness.stats import PeerReport, ReportPeer
from .test_demo import fake_media_js

pytestmark = pytest.mark.timeout(150)

WAIT = 20.0
#: Issue 19: a codec-limited subscriber decodes the camera this soon after joining.
FIRST_FRAME_WITHIN = 5.0
RUNS = 3


async def outbound_codec(peer: ChromiumPeer, want: set[str], timeout: float = WAIT) -> str:  # noqa: ASYNC109
    """Until the publisher's outbound video codec is one of ``want`` (lower-case mime types)."""
    got: list[str] = []

    def check(now: PeerReport) -> str | None:
        codec = str(now.raw.get("outboundVideoCodec") or "").lower()
        got[:] = [codec]
        return None if codec in want else f"outbound video codec {codec or 'none'}"

    await peer.wait_for(check, f"outbound codec in {sorted(want)}", timeout)
    return got[0]


async def join_to_first_frame(peer: ReportPeer, from_user: str, colour: str) -> float:
    """Wait until ``peer`` decodes ``from_user``'s camera in ``colour``; seconds from its join
    to the first frame of that track."""
    track = await peer.wait_receiving(from_user=from_user, color=colour, timeout=WAIT)
    report = await peer.report()
    raw = next(t for t in report.raw["tracks"] if t.get("id") == track.id)
    joined, first = report.raw.get("joinSentAt"), raw.get("firstFrameAt")
    assert isinstance(joined, int | float) and isinstance(first, int | float), (joined, first)
    return (first - joined) / 1000


def received_codec(report: PeerReport, track_id: object) -> str:
    """The codec (mime type, lower case) ``report`` names for ``track_id``; "" if none."""
    raw = [t for t in report.raw["tracks"] if t.get("id") == track_id]
    return str(raw[0].get("codec", "")).lower() if raw else ""


def summary(what: str, times: list[float]) -> str:
    line = (
        f"{what}: join → first decoded frame, {len(times)} runs: median "
        f"{statistics.median(times):.2f} s, max {max(times):.2f} s "
        f"({', '.join(f'{t:.2f}' for t in times)})"
    )
    print(line)
    return line


@pytest.mark.browser
async def test_firefox_without_openh264_sees_a_chromium_camera_sent_in_h264(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, firefox_peers: FirefoxPeers
) -> None:
    users = ["alice", *(f"ff{i}" for i in range(RUNS))]
    group = zvonok_server.create_group(users)
    alice = await chromium_peers.open(
        zvonok_server, user="alice", room=group, kind="group", color="red",
        extra={"codecFirst": "H264"},
    )  # fmt: skip
    await alice.wait_connected()
    assert await outbound_codec(alice, {"video/h264"}) == "video/h264"
    times = []
    for i in range(RUNS):
        ff = await firefox_peers.open(
            zvonok_server, user=f"ff{i}", room=group, kind="group", color="green"
        )
        times.append(await join_to_first_frame(ff, "alice", "red"))
        # The publisher was steered: it sends what Firefox decodes now.
        assert await outbound_codec(alice, {"video/vp8", "video/vp9"})
        await alice.wait_receiving(from_user=f"ff{i}", color="green", timeout=WAIT)
        assert not (await ff.report()).raw.get("unavailable")
        await ff.leave()
        await ff.close()
        # Firefox gone: the restriction is lifted and Alice goes back to H.264.
        assert await outbound_codec(alice, {"video/h264"}) == "video/h264"
    line = summary("Firefox ESR (no OpenH264) ← Chromium H.264 camera", times)
    assert max(times) <= FIRST_FRAME_WITHIN, line


@pytest.mark.browser
async def test_an_h264_only_chromium_subscriber_sees_a_vp8_camera(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers
) -> None:
    users = ["alice", *(f"h264-{i}" for i in range(RUNS))]
    group = zvonok_server.create_group(users)
    alice = await chromium_peers.open(
        zvonok_server, user="alice", room=group, kind="group", color="red"
    )
    await alice.wait_connected()
    assert await outbound_codec(alice, {"video/vp8"}) == "video/vp8"
    times = []
    for i in range(RUNS):
        sub = await chromium_peers.open(
            zvonok_server, user=f"h264-{i}", room=group, kind="group", color="blue",
            extra={"recvCodec": "H264"},
        )  # fmt: skip
        times.append(await join_to_first_frame(sub, "alice", "red"))
        track = await sub.wait_receiving(from_user="alice", color="red", timeout=WAIT)
        report = await sub.report()
        assert received_codec(report, track.id) == "video/h264", report.raw["tracks"]
        assert await outbound_codec(alice, {"video/h264"}) == "video/h264"
        await sub.leave()
        await sub.close()
        assert await outbound_codec(alice, {"video/vp8"}) == "video/vp8"
    line = summary("Chromium accepting H.264 only ← Chromium VP8 camera", times)
    assert max(times) <= FIRST_FRAME_WITHIN, line


@pytest.mark.browser
async def test_a_subscriber_that_decodes_nothing_the_publisher_sends_is_told(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, firefox_peers: FirefoxPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    # setCodecPreferences([H.264]) only: Alice can send nothing Firefox decodes.
    alice = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red",
                                      codec="H264")  # fmt: skip
    bob = await firefox_peers.open(zvonok_server, user="bob", room=chat, color="green")
    await bob.wait_message("track-unavailable", timeout=WAIT)
    told = (await bob.report()).raw["unavailable"]
    assert [(t["userId"], t["kind"], t["unavailable"], t["reason"]) for t in told] == [
        ("alice", "video", True, "unsupported-codec")
    ], told
    assert "video/H264" in told[0]["codecs"]
    await bob.wait_receiving(from_user="alice", kind="audio", timeout=WAIT)
    await alice.wait_receiving(from_user="bob", color="green", timeout=WAIT)
    assert await outbound_codec(alice, {"video/h264"}) == "video/h264"  # not steered
    assert (await alice.report()).messages("track-unavailable") == 0


@pytest.mark.browser
async def test_three_browsers_in_every_join_order_see_every_camera(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, firefox_peers: FirefoxPeers
) -> None:
    """A Chromium preferring H.264 (red), a Firefox without OpenH264 (green) and a plain Chromium
    (blue) join in all six orders: each decodes both other cameras in the right colour."""
    colours = {"h264": "red", "ff": "green", "plain": "blue"}
    for n, order in enumerate(itertools.permutations(colours)):
        users = [f"{who}{n}" for who in colours]
        group = zvonok_server.create_group(users)
        peers: dict[str, ChromiumPeer | FirefoxPeer] = {}
        for who in order:
            user, colour = f"{who}{n}", colours[who]
            if who == "ff":
                peers[who] = await firefox_peers.open(
                    zvonok_server, user=user, room=group, kind="group", color=colour
                )
            else:
                extra = {"codecFirst": "H264"} if who == "h264" else {}
                peers[who] = await chromium_peers.open(
                    zvonok_server, user=user, room=group, kind="group", color=colour, extra=extra
                )
        for who, peer in peers.items():
            for other in peers:
                if other != who:
                    await peer.wait_receiving(
                        from_user=f"{other}{n}", color=colours[other], timeout=WAIT
                    )
        # Closed, not left one by one: a page that already left would still get the server's
        # offers for the others' departures and record failed setRemoteDescription calls.
        for peer in peers.values():
            await peer.close()


#: The text on the demo's tile of a camera this browser cannot decode.
UNAVAILABLE_TILE_JS = """() => {
  const t = document.querySelector('.tile.unavailable[data-user-id="alice"]');
  return t ? t.querySelector(".placeholder").textContent : null;
}"""


@pytest.mark.browser
async def test_the_demo_says_video_not_available_in_this_browser(
    zvonok_server_factory: ServerFactory, chromium_peers: ChromiumPeers
) -> None:
    """The demo page in Firefox (no OpenH264, over WebDriver BiDi) shows the text on the tile of a
    camera sent in H.264 only, instead of a black box."""
    server = zvonok_server_factory.start(env={"ZVONOK_DEV_MODE": "true"})
    group = server.create_group(["alice", "bob"])
    alice = await chromium_peers.open(
        server, user="alice", room=group, kind="group", color="red", codec="H264"
    )
    await alice.wait_connected()
    async with BiDiFirefox("bob (firefox demo)", "green") as bob:
        await bob.navigate(f"{server.http_url}/?user=bob&kind=group&room={group}&join")
        text = None
        for _ in range(int(WAIT / 0.25)):
            text = await bob.evaluate(UNAVAILABLE_TILE_JS)
            if text:
                break
            await asyncio.sleep(0.25)
        assert text == "video not available in this browser", bob.log()[-3000:]
        await alice.wait_receiving(from_user="bob", timeout=WAIT)  # bob's camera still flows


# The demo's published video: per sending video transceiver, its codec and bytes sent; and the
# backup streams the SDK keeps (``publish-backup``), with the events it emitted.
SDK_SENDING_JS = """async () => {
  const call = window.zvonokDemo.call;
  const pc = call.peerConnection;
  const stats = await pc.getStats();
  const byMid = {};
  stats.forEach((r) => {
    if (r.type !== "outbound-rtp" || r.kind !== "video" || !r.mid) return;
    const codec = r.codecId && stats.get(r.codecId);
    byMid[r.mid] = { codec: codec ? codec.mimeType.toLowerCase() : null,
      bytes: (byMid[r.mid]?.bytes || 0) + (r.bytesSent || 0) };
  });
  const sending = pc.getTransceivers().filter((t) => t.mid !== null && t.direction !== "stopped"
    && t.currentDirection !== "stopped" && t.sender.track && t.sender.track.kind === "video");
  return { video: sending.map((t) => ({ mid: t.mid, ...(byMid[t.mid] || {}) })),
    backups: [...call._backups.keys()], events: window.backupEvents || [] };
}"""
WATCH_BACKUPS_JS = """() => {
  window.backupEvents = [];
  const call = window.zvonokDemo.call;
  call.addEventListener("publishbackup", (e) => window.backupEvents.push(e.detail));
}"""


async def sdk_sending(
    page: Page, want: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Until the demo page's sending state satisfies ``want``."""
    state: dict[str, Any] = {}
    for _ in range(int(WAIT / 0.25)):
        state = await page.evaluate(SDK_SENDING_JS)
        if want(state):
            return state
        await asyncio.sleep(0.25)
    raise AssertionError(f"the publisher never got to: {what}; last {state}")


@pytest.mark.browser
async def test_a_backup_stream_serves_an_h264_only_and_a_vp8_only_subscriber(
    zvonok_server_factory: ServerFactory, chromium_peers: ChromiumPeers
) -> None:
    """Alice (the demo, our SDK) publishes her camera in VP8; a Chromium accepting VP8 only
    watches it. A Chromium accepting H.264 only joins: no single codec fits both, so the server
    asks Alice's SDK for a backup stream in H.264 and feeds the newcomer from it, with its
    ``track-unavailable`` withdrawn. Both decode the camera in their codec; when the H.264 one
    leaves, the backup stream stops. Three joins, then a fourth after which the VP8 one leaves
    instead; prints join → first frame."""
    server = zvonok_server_factory.start(env={"ZVONOK_DEV_MODE": "true"})
    users = ["alice", "vp8", "h264-last", *(f"h264-{i}" for i in range(RUNS))]
    group = server.create_group(users)
    context = await (await chromium_peers.browser()).new_context()
    await context.add_init_script(fake_media_js("alice"))  # a red camera
    alice = await context.new_page()
    await alice.goto(f"{server.http_url}/?user=alice&kind=group&room={group}&join")
    await alice.wait_for_function("window.zvonokDemo.call?.state === 'joined'", timeout=15000)
    await alice.evaluate(WATCH_BACKUPS_JS)
    vp8 = await chromium_peers.open(
        server, user="vp8", room=group, kind="group", color="green", extra={"recvCodec": "VP8"}
    )
    camera = await vp8.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    assert received_codec(await vp8.report(), camera.id) == "video/vp8"
    times = []
    for i in range(RUNS):
        sub = await chromium_peers.open(
            server, user=f"h264-{i}", room=group, kind="group", color="blue",
            extra={"recvCodec": "H264"},
        )  # fmt: skip
        times.append(await join_to_first_frame(sub, "alice", "red"))
        track = await sub.wait_receiving(from_user="alice", color="red", timeout=WAIT)
        report = await sub.report()
        assert received_codec(report, track.id) == "video/h264", report.raw["tracks"]
        # Not told codec-conflict while the backup was on its way (told and withdrawn if that
        # took more than the server's 2 s grace).
        told = report.raw.get("unavailable") or []
        assert not told or told[-1]["unavailable"] is False, told
        assert all(t["reason"] in ("codec-conflict", None) for t in told), told
        state = await sdk_sending(
            alice, lambda s: {v.get("codec") for v in s["video"]} == {"video/vp8", "video/h264"},
            "a VP8 camera and an H.264 backup",
        )  # fmt: skip
        assert len(state["video"]) == 2 and state["backups"], state
        # The VP8 subscriber still decodes the camera itself, in VP8.
        camera = await vp8.wait_receiving(from_user="alice", color="red", timeout=WAIT)
        assert received_codec(await vp8.report(), camera.id) == "video/vp8"
        await sub.leave()
        await sub.close()
        state = await sdk_sending(
            alice, lambda s: not s["backups"] and len(s["video"]) == 1, "the backup stopped"
        )
        assert state["video"][0]["codec"] == "video/vp8", state
        assert [e["active"] for e in state["events"]] == [True, False] * (i + 1), state
    # The other way out: the VP8 subscriber leaves. The camera itself is steered to H.264, the
    # backup stops, and the H.264 subscriber moves back to the camera on the same SSRC (its
    # output continued, not restarted), decoding on.
    sub = await chromium_peers.open(
        server, user="h264-last", room=group, kind="group", color="blue",
        extra={"recvCodec": "H264"},
    )  # fmt: skip
    times.append(await join_to_first_frame(sub, "alice", "red"))
    await vp8.leave()
    await vp8.close()
    await sdk_sending(
        alice,
        lambda s: not s["backups"] and [v.get("codec") for v in s["video"]] == ["video/h264"],
        "the camera itself in H.264, no backup",
    )
    track = await sub.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    before = track.frames_decoded or 0
    await asyncio.sleep(2)
    track = await sub.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    assert (track.frames_decoded or 0) >= before + 10, (before, track.describe())
    assert received_codec(await sub.report(), track.id) == "video/h264"
    line = summary("Chromium accepting H.264 only ← VP8 camera with an SDK backup stream", times)
    assert max(times) <= FIRST_FRAME_WITHIN, line
    await context.close()
