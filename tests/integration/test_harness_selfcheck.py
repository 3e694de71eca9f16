"""Self-check of the real-client harness, without a zvonok server: each client decodes the right
colour through a loopback call of its own, the page server and the server wrapper work, and
every process is closed. Browsers run one at a time (tests are sequential)."""

from __future__ import annotations

import signal
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import jwt
import pytest

from zvonok.auth.secret import load_or_create_secret

from .harness.aiortc_media import frame_colour, rgb_to_yuv
from .harness.aiortc_peer import AiortcPeers, local_candidates
from .harness.chromium import ChromiumPeers
from .harness.firefox import FirefoxPeers
from .harness.report_server import ReportServer
from .harness.server import ServerFactory, ZvonokServer
from .harness.stats import COLOURS, PeerReport, nearest_colour, track_problem

pytestmark = pytest.mark.timeout(60)


@pytest.mark.browser
async def test_chromium_loopback_decodes_colour(chromium_peers: ChromiumPeers) -> None:
    peer = await chromium_peers.open_loopback(user="alice", color="blue")
    track = await peer.wait_receiving(from_user="alice", color="blue", timeout=20)
    assert track.colour == "blue"
    await peer.wait_receiving(from_user="alice", kind="audio", color="blue", timeout=10)
    with pytest.raises(AssertionError, match="decoded colour blue"):
        await peer.wait_receiving(from_user="alice", color="red", timeout=2)
    with pytest.raises(AssertionError, match="decoded tone blue"):
        await peer.wait_receiving(from_user="alice", kind="audio", color="red", timeout=2)


@pytest.mark.browser
async def test_firefox_loopback_decodes_colour(firefox_peers: FirefoxPeers) -> None:
    peer = await firefox_peers.open_loopback(user="bob", color="green")
    track = await peer.wait_receiving(from_user="bob", color="green", timeout=20)
    assert track.colour == "green"
    await peer.wait_receiving(from_user="bob", kind="audio", timeout=10)  # no tone: firefox.py
    assert await peer.call("closeSocket") is True  # the command channel answers
    await peer.close()
    assert peer.process is not None and peer.process.poll() is not None
    assert not peer.profile.exists()


async def test_aiortc_loopback_decodes_colour(aiortc_peers: AiortcPeers) -> None:
    peer = await aiortc_peers.open_loopback(user="carol", color="yellow")
    track = await peer.wait_receiving(from_user="carol", color="yellow", timeout=20)
    assert track.colour == "yellow"
    await peer.wait_receiving(from_user="carol", kind="audio", color="yellow", timeout=10)
    with pytest.raises(AssertionError, match="decoded tone yellow"):
        await peer.wait_receiving(from_user="carol", kind="audio", color="red", timeout=3)


def test_colour_round_trip_through_yuv() -> None:
    import av

    for name, rgb in COLOURS.items():
        frame = av.VideoFrame(64, 48, "yuv420p")
        for plane, value in zip(frame.planes, rgb_to_yuv(rgb), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        assert nearest_colour(frame_colour(frame)) == name


def test_track_problem_needs_growth_and_colour() -> None:
    def report(packets: int, frames: int, colour: str) -> PeerReport:
        track = {
            "id": 0,
            "kind": "video",
            "userId": "a",
            "packetsReceived": packets,
            "framesDecoded": frames,
            "colour": colour,
            "rgb": list(COLOURS[colour]),
        }
        return PeerReport.parse({"ts": 1, "tracks": [track]})

    first, second = report(10, 5, "red").tracks[0], report(20, 9, "red").tracks[0]
    assert track_problem(first, second, "red") is None
    assert "packetsReceived not growing" in str(track_problem(second, second, "red"))
    assert "expected blue" in str(track_problem(first, second, "blue"))
    with pytest.raises(ValueError, match="kind is not audio/video"):
        PeerReport.parse({"ts": 1, "tracks": [{"kind": "data"}]})


def test_local_candidates_from_sdp() -> None:
    sdp = "v=0\r\nm=audio 9 X 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 5 typ host\r\n"
    assert local_candidates(sdp) == [
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    ]


def test_report_server_serves_pages_and_commands(report_server: ReportServer) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(report_server.page_url("peer.js")) as resp:
        assert b"window.peer" in resp.read()
    command = report_server.push_command("p1", "leave")
    body = json.dumps({"ts": 1, "commands": {command: {"ok": True, "value": True}}}).encode()
    request = urllib.request.Request(report_server.report_url("p1"), data=body, method="POST")
    with urllib.request.urlopen(request) as resp:
        assert json.loads(resp.read())["commands"][0]["method"] == "leave"
    assert report_server.command_result("p1", command) == {"ok": True, "value": True}


def test_server_wrapper_starts_waits_and_stops(
    zvonok_server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A stand-in HTTP server exercises start/wait/stop; the CLI parts are the real ones."""
    stand_in = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
    server = zvonok_server_factory.start(command=stand_in, health_path="/")
    assert server.ws_url("chat", "7").endswith("/api/v1/chat/7/call")
    chat = server.create_chat(["alice", "bob"])
    group = server.create_group(["alice", "bob", "carol"])
    # the real CLI wrote both, with their members, into the server's embedded database
    with closing(sqlite3.connect(server.data_dir / "zvonok.db")) as db:
        members = {
            (kind, user)
            for kind, table, column, room in (
                ("chat", "zvonok_chat_members", "chat_id", chat),
                ("group", "zvonok_group_members", "group_id", group),
            )
            for (user,) in db.execute(f"SELECT user_id FROM {table} WHERE {column} = ?", (room,))
        }  # fmt: skip
    assert members == {("chat", "alice"), ("chat", "bob"), ("group", "alice"),
                       ("group", "bob"), ("group", "carol")}  # fmt: skip
    # and signed the token with the secret the server reads
    secret = load_or_create_secret(server.data_dir)
    assert jwt.decode(server.token("alice"), secret, algorithms=["HS256"])["sub"] == "alice"
    assert server.stop() == -signal.SIGTERM  # ended by our SIGTERM, not on its own
    assert server.process.poll() == -signal.SIGTERM


def test_server_wrapper_reports_early_exit(zvonok_server_factory: ServerFactory) -> None:
    failing = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    with pytest.raises(AssertionError, match="exited with 3 before answering:\nboom"):
        zvonok_server_factory.start(command=failing)


@pytest.mark.browser
async def test_real_server_two_chromium_peers(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers
) -> None:
    """The lead's example, end to end against the real server."""
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await chromium_peers.open(zvonok_server, user="bob", room=chat, color="blue")
    await a.wait_receiving(from_user="bob", color="blue", timeout=20)
    await b.wait_receiving(from_user="alice", color="red", timeout=20)
    await b.wait_receiving(from_user="alice", kind="audio", color="red", timeout=10)
    await a.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=10)
    await a.leave()
    await b.wait_track_ended(from_user="alice", timeout=10)


@pytest.mark.browser
async def test_real_server_firefox_and_chromium(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, firefox_peers: FirefoxPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "dave"])
    a = await chromium_peers.open(zvonok_server, user="alice", room=chat, color="red")
    d = await firefox_peers.open(zvonok_server, user="dave", room=chat, color="cyan")
    await a.wait_receiving(from_user="dave", color="cyan", timeout=20)
    await d.wait_receiving(from_user="alice", color="red", timeout=20)
    await a.wait_receiving(from_user="dave", kind="audio", color="cyan", timeout=20)
    with pytest.raises(AssertionError, match="decoded tone cyan"):
        await a.wait_receiving(from_user="dave", kind="audio", color="red", timeout=2)


@pytest.mark.browser
async def test_real_server_aiortc_and_chromium(
    zvonok_server: ZvonokServer, chromium_peers: ChromiumPeers, aiortc_peers: AiortcPeers
) -> None:
    group = zvonok_server.create_group(["alice", "carol"])
    a = await chromium_peers.open(
        zvonok_server, user="alice", room=group, color="red", kind="group"
    )
    c = await aiortc_peers.open(
        zvonok_server, user="carol", room=group, color="green", kind="group"
    )
    await a.wait_receiving(from_user="carol", color="green", timeout=20)
    await c.wait_receiving(from_user="alice", color="red", timeout=20)
