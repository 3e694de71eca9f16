"""Active speaker and subscriber wishes end to end, with aiortc clients on a real server.

- ``speakers``: aiortc writes the RFC 6464 audio level of what it sends; one peer sends a tone,
  one silence (a zero-amplitude tone): everyone is told the toned one speaks, the silent one never.
- ``track-settings``: refused before ``join`` (``not-joined``) and when malformed
  (``bad-message``); a ``paused`` wish holds the video back (``track-paused`` reason
  ``subscriber``, the forwarded packets stop) and clearing it resumes it (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from .harness.aiortc_media import ToneTrack
from .harness.aiortc_peer import AiortcPeer, AiortcPeers
from .harness.server import ServerFactory, ZvonokServer

pytestmark = pytest.mark.timeout(150)

WAIT = 30.0


def record(peer: AiortcPeer) -> list[dict[str, Any]]:
    """Every message ``peer`` receives from now on, decoded, in order."""
    seen: list[dict[str, Any]] = []
    handle = peer._handle

    async def recording(m: dict[str, Any]) -> None:
        payload = m.get("payload")
        if isinstance(payload, str):
            payload = json.loads(payload)
        seen.append({"type": m.get("type"), "payload": payload or {}})
        await handle(m)

    peer._handle = recording  # type: ignore[method-assign]
    return seen


async def until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def payloads(seen: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m["payload"] for m in seen if m["type"] == kind]


async def test_speakers_names_the_one_who_sends_sound(
    zvonok_server: ZvonokServer, aiortc_peers: AiortcPeers
) -> None:
    server = zvonok_server
    group = server.create_group(["alice", "bob", "carol"])
    talker = await aiortc_peers.open(server, "alice", group, "red", kind="group", video=False)
    heard = record(talker)
    # bob's microphone is silent: a zero-amplitude tone (aiortc writes level 127)
    token = await asyncio.to_thread(server.token, "bob")
    silent = AiortcPeer(
        "aiortc-silent(bob)", url=server.ws_url("group", group), token=token, room=group,
        session_id="silent-bob", user="bob", color="blue", audio=False, video=False,
        mode="answer",
    )  # fmt: skip
    silent.pc.addTrack(ToneTrack("blue", amplitude=0))
    aiortc_peers.peers.append(silent)
    await silent.start()
    told_bob = record(silent)
    listener = await aiortc_peers.open(
        server, "carol", group, "green", kind="group", audio=False, video=False
    )
    told_carol = record(listener)
    # carol joined while alice was speaking: she is told at once
    await until("carol hears of a speaker", lambda: bool(payloads(told_carol, "speakers")))
    await asyncio.sleep(3.0)  # bob's silence has had time to show
    for seen in (heard, told_bob, told_carol):
        lists = [[s["sessionId"] for s in p["speakers"]] for p in payloads(seen, "speakers")]
        assert lists and lists[-1][:1] == [talker.session_id], lists
        assert all(silent.session_id not in names for names in lists), lists
    first = payloads(told_carol, "speakers")[-1]["speakers"][0]
    assert first["userId"] == "alice" and 0 < first["level"] <= 1
    # alice leaves: the list empties
    await talker.leave()
    await until(
        "an empty speakers list",
        lambda: payloads(told_carol, "speakers")[-1]["speakers"] == [],
        timeout=10,
    )


async def test_track_settings_is_checked_like_every_message(
    zvonok_server: ZvonokServer, aiortc_peers: AiortcPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    peer = await aiortc_peers.open(zvonok_server, "alice", chat, "red")
    seen = record(peer)
    await until("joined", lambda: peer.joined)
    # a malformed one: bad-message naming track-settings; the session goes on
    await peer.send("track-settings", {"tracks": [{"trackId": "t", "maxWidth": -5}]})
    await peer.send("track-settings", {"tracks": "all"})
    await until("two errors", lambda: len(payloads(seen, "error")) >= 2, timeout=5)
    errors = payloads(seen, "error")
    assert [(e["code"], e["ref"]) for e in errors] == [("bad-message", "track-settings")] * 2
    # an unknown track id is ignored without a word
    await peer.send("track-settings", {"tracks": [{"trackId": "t-nobody", "paused": True}]})
    await asyncio.sleep(0.5)
    assert len(payloads(seen, "error")) == 2
    # before join: not-joined, like any other message
    token = await asyncio.to_thread(zvonok_server.token, "bob")
    headers = [("Authorization", f"Bearer {token}")]
    async with connect(zvonok_server.ws_url("chat", chat), additional_headers=headers) as ws:
        message = {
            "type": "track-settings",
            "payload": {"tracks": []},
            "roomId": chat,
            "sessionId": "early-bob",
        }
        await ws.send(json.dumps(message))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (reply["type"], reply["payload"]["code"]) == ("error", "not-joined")


async def test_a_paused_wish_holds_the_video_back_and_clearing_it_resumes(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers
) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_STATS_INTERVAL": "1"})
    chat = server.create_chat(["alice", "bob"])
    alice = await aiortc_peers.open(server, "alice", chat, "red")
    bob = await aiortc_peers.open(server, "bob", chat, "blue")
    seen = record(bob)
    await bob.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    video = next(
        t for t in bob.track_map if t["kind"] == "video" and t["sessionId"] == alice.session_id
    )

    def received_packets() -> int | None:
        for stats in reversed(payloads(seen, "stats")):
            for entry in stats["receiving"]:
                if entry["trackId"] == video["trackId"]:
                    assert "layer" in entry and "layerSwitches" in entry
                    assert "downlinkBps" in stats
                    return int(entry["packets"])
        return None

    await until("a stats message", lambda: received_packets() is not None, timeout=10)
    await bob.send("track-settings", {"tracks": [{"trackId": video["trackId"], "paused": True}]})
    await until("track-paused", lambda: bool(payloads(seen, "track-paused")), timeout=5)
    told = payloads(seen, "track-paused")[0]
    assert told == {
        "trackId": video["trackId"], "kind": "video", "sessionId": alice.session_id,
        "userId": "alice", "paused": True, "reason": "subscriber",
    }  # fmt: skip
    count = len(payloads(seen, "stats"))
    await until("two more stats", lambda: len(payloads(seen, "stats")) >= count + 2, timeout=5)
    held = received_packets()
    await until("a third stats", lambda: len(payloads(seen, "stats")) >= count + 3, timeout=5)
    assert received_packets() == held  # nothing forwarded while paused
    paused_entry = [
        e for e in payloads(seen, "stats")[-1]["receiving"] if e["trackId"] == video["trackId"]
    ]
    assert paused_entry[0]["paused"] is True
    # an entry with no limit clears the wish: the video comes back (at a keyframe)
    await bob.send("track-settings", {"tracks": [{"trackId": video["trackId"]}]})
    await until("resumed", lambda: len(payloads(seen, "track-paused")) >= 2, timeout=5)
    assert payloads(seen, "track-paused")[1]["paused"] is False
    await until("packets again", lambda: (received_packets() or 0) > (held or 0), timeout=10)
    await bob.wait_receiving(from_user="alice", color="red", timeout=WAIT)
