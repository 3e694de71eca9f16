"""Calls through zvonok with real WebRTC clients we did not write, on loopback.

"Receives" means: the remote track's packets and decoded frames grow (getStats), the decoded
picture has the sender's colour and the decoded sound the sender's tone (harness/stats.py), so an
echo or a mix-up fails. Browsers run one at a time.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from .harness.aiortc_peer import AiortcPeers
from .harness.chromium import ChromiumPeers
from .harness.firefox import FirefoxPeers
from .harness.server import ServerFactory, ZvonokServer
from .harness.stats import PeerReport, ReportPeer

pytestmark = pytest.mark.timeout(150)

WAIT = 30.0


async def hear_and_see_each_other(
    a: ReportPeer, a_colour: str, b: ReportPeer, b_colour: str
) -> None:
    """alice (a) and bob (b) each decode the other's colour and hear the other's tone."""
    await a.wait_receiving(from_user="bob", color=b_colour, timeout=WAIT)
    await b.wait_receiving(from_user="alice", color=a_colour, timeout=WAIT)
    await a.wait_receiving(from_user="bob", kind="audio", color=b_colour, timeout=WAIT)
    await b.wait_receiving(from_user="alice", kind="audio", color=a_colour, timeout=WAIT)


async def test_two_aiortc_peers_in_a_private_chat(
    zvonok_server: ZvonokServer, aiortc_peers: AiortcPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await aiortc_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await aiortc_peers.open(zvonok_server, user="bob", room=chat, color="blue")
    await hear_and_see_each_other(a, "red", b, "blue")


async def test_two_aiortc_peers_through_the_pure_python_forwarding_loop(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers
) -> None:
    """``ZVONOK_PURE_PYTHON=1``: the reference of the compiled loop carries a real call too."""
    server = zvonok_server_factory.start(env={"ZVONOK_PURE_PYTHON": "1"})
    chat = server.create_chat(["alice", "bob"])
    a = await aiortc_peers.open(server, user="alice", room=chat, color="red")
    b = await aiortc_peers.open(server, user="bob", room=chat, color="blue")
    await hear_and_see_each_other(a, "red", b, "blue")
    async with httpx.AsyncClient() as http:
        state = (await http.get(server.http_url + "/debug/state")).json()
    assert state["forwarding"] == "python"


async def test_the_default_server_runs_the_compiled_forwarding_loop(
    zvonok_server: ZvonokServer,
) -> None:
    async with httpx.AsyncClient() as http:
        state = (await http.get(zvonok_server.http_url + "/debug/state")).json()
    assert state["forwarding"] == "compiled"


@pytest.mark.browser
async def test_two_chromium_peers_in_a_private_chat(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await chromium_peers.open(zvonok_server, user="bob", room=chat, color="blue")
    await hear_and_see_each_other(a, "red", b, "blue")


@pytest.mark.browser
async def test_chromium_and_firefox_in_a_private_chat(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, firefox_peers: FirefoxPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await firefox_peers.open(zvonok_server, user="bob", room=chat, color="green")
    await hear_and_see_each_other(a, "red", b, "green")


@pytest.mark.browser
async def test_three_chromium_peers_in_a_group_then_one_leaves(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers
) -> None:
    group = zvonok_server.create_group(["alice", "bob", "carol"])
    colours = {"alice": "red", "bob": "blue", "carol": "yellow"}
    peers = {
        user: await chromium_peers.open(
            zvonok_server, user=user, room=group, color=colour, kind="group"
        )
        for user, colour in colours.items()
    }
    for user, peer in peers.items():
        for other, colour in colours.items():
            if other != user:
                await peer.wait_receiving(from_user=other, color=colour, timeout=WAIT)
                await peer.wait_receiving(from_user=other, kind="audio", color=colour, timeout=WAIT)
        report = await peer.report()
        assert not report.tracks_from(user), f"{user} receives its own media"
        live = [t for t in report.tracks if not t.ended]
        assert len(live) == 4, f"{user} should receive exactly 2 x (audio, video): {live}"
    # carol leaves: her tracks end at the others within 2 s, and alice and bob keep talking.
    await peers["carol"].leave()
    started = time.monotonic()
    await peers["alice"].wait_track_ended(from_user="carol", timeout=5)
    await peers["bob"].wait_track_ended(from_user="carol", timeout=5)
    assert time.monotonic() - started < 2.5
    await peers["alice"].wait_participant("carol", present=False, timeout=5)
    await asyncio.sleep(1)
    await peers["alice"].wait_receiving(from_user="bob", color="blue", timeout=WAIT)
    await peers["bob"].wait_receiving(from_user="alice", color="red", timeout=WAIT)


@pytest.mark.browser
async def test_screen_share_added_mid_call_with_the_clients_own_offer(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await chromium_peers.open(zvonok_server, user="bob", room=chat, color="blue")
    await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    await a.add_screen_share("green")
    await b.wait_receiving(from_user="alice", color="green", timeout=WAIT)
    await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    videos = [t for t in (await b.report()).tracks_from("alice", kind="video") if not t.ended]
    assert len(videos) == 2
    await a.remove_screen_share()

    def one_video_left(report: PeerReport) -> str | None:
        live = [t for t in report.tracks_from("alice", kind="video") if not t.ended]
        return None if len(live) == 1 else f"{len(live)} live videos from alice"

    await b.wait_for(one_video_left, "screen share track ended", timeout=10)
    await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)


@pytest.mark.browser
async def test_audio_only_peer(zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await chromium_peers.open(zvonok_server, user="bob", room=chat, color="blue", video=False)
    await a.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)
    await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    assert not (await a.report()).tracks_from("bob", kind="video")


@pytest.mark.browser
async def test_peer_that_offers_and_trickles_before_any_answer(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await chromium_peers.open(
        zvonok_server, user="bob", room=chat, color="magenta", mode="early-ice"
    )
    await a.wait_receiving(from_user="bob", color="magenta", timeout=WAIT)
    await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)


@pytest.mark.browser
async def test_resume_with_ice_restart_keeps_media_flowing(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await chromium_peers.open(zvonok_server, user="bob", room=chat, color="blue")
    await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    await a.reconnect(ice_restart=True)
    await a.wait_message("joined", count=2, timeout=10)
    logs = zvonok_server.log_tail(400)
    assert '"msg": "resumed"' in logs, "the session was not resumed"
    await asyncio.sleep(3)
    await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    await a.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
    assert (await b.report()).messages("participant-left") == 0
    ufrags = [
        line for line in zvonok_server.log_tail(400).splitlines() if "ice restart: True" in line
    ]
    assert ufrags, "the client's ICE restart was not seen by the server"


@pytest.mark.browser
@pytest.mark.parametrize("codec", ["H264", "VP9"])
async def test_video_forwarded_in_the_publishers_codec(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, codec: str
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red", codec=codec)
    b = await chromium_peers.open(zvonok_server, user="bob", room=chat, color="blue")
    track = await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    await a.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
    report = await b.report()
    raw = [t for t in report.raw.get("tracks", []) if t.get("trackId") == track.track_id]
    assert raw and str(raw[0].get("codec", "")).lower() == f"video/{codec.lower()}", raw


@pytest.mark.browser
async def test_subscriber_gets_a_track_only_in_a_codec_it_accepts(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, firefox_peers: FirefoxPeers
) -> None:
    # Firefox here has no H.264 (the OpenH264 download is off): it must refuse Alice's H.264
    # video, still get her audio, and still send its own video to her.
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red", codec="H264")
    b = await firefox_peers.open(zvonok_server, user="bob", room=chat, color="green")
    await a.wait_receiving(from_user="bob", color="green", timeout=WAIT)
    await a.wait_receiving(from_user="bob", kind="audio", color="green", timeout=WAIT)
    await b.wait_receiving(from_user="alice", kind="audio", timeout=WAIT)
    # No video RTP reaches Firefox at all (alice is the only other participant): not on a track
    # of hers, and not on one the server forgot to label. Sampled after a few more seconds.
    await asyncio.sleep(3)
    video = (await b.report()).tracks_from(kind="video")
    assert all(not t.packets_received and not t.frames_decoded for t in video), [
        t.describe() for t in video
    ]
