"""Hostile signaling input against a real ``zvonok serve``: SDP, WebSocket frames and limits.

Each test runs a real server (harness fixtures) with real aiortc calls next to the attacker, and
checks both that the attacker gets the documented answer (an ``error`` code, a close code) and
that nothing else in the room is affected (media keeps flowing, sessions stay). RTCP naming
another session's SSRCs is covered at unit level (tests/unit/media/test_rtcp_isolation.py),
because a client cannot send authenticated RTCP without SRTP keys only aiortc holds internally.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .harness.aiortc_media import ColourVideoTrack, ToneTrack
from .harness.aiortc_peer import AiortcPeer, AiortcPeers
from .harness.server import ServerFactory, ZvonokServer

pytestmark = pytest.mark.timeout(150)


class Client:
    """A raw protocol client on one WebSocket: send envelopes, wait for message types."""

    def __init__(self, ws: ClientConnection, room_id: str, session_id: str) -> None:
        self.ws = ws
        self.room_id = room_id
        self.session_id = session_id
        self.seen: list[dict[str, Any]] = []

    async def send(self, msg_type: str, payload: Any = None, **fields: Any) -> None:
        envelope = {"type": msg_type, "roomId": self.room_id, "sessionId": self.session_id}
        if payload is not None:
            envelope["payload"] = payload
        envelope.update(fields)
        await self.ws.send(json.dumps(envelope))

    async def expect(self, msg_type: str, wait: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        for _ in range(10_000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msg: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            except TimeoutError:
                break
            self.seen.append(msg)
            if msg["type"] == msg_type:
                return msg
        raise AssertionError(f"no {msg_type!r}; saw {[m['type'] for m in self.seen]}")

    async def join(self) -> dict[str, Any]:
        await self.send("join")
        return await self.expect("joined")


@asynccontextmanager
async def client(
    server: ZvonokServer, user: str, room: str, *, kind: str = "chat", session: str
) -> AsyncIterator[Client]:
    token = await asyncio.to_thread(server.token, user)
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(server.ws_url(kind, room), additional_headers=headers) as ws:
        yield Client(ws, room, session)


async def debug_state(server: ZvonokServer) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(server.http_url + "/debug/state")).json()  # type: ignore[no-any-return]


async def until(check: Callable[[], Awaitable[bool] | bool], what: str, wait: float = 10.0) -> None:
    """Poll ``check`` every 0.1 s until true; fail after ``wait`` seconds."""
    for _ in range(int(wait / 0.1) + 1):
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def next_error(
    peer: AiortcPeer, sdp: str, what: str, *, negotiated: bool = True, wait: float = 10.0
) -> dict[str, Any]:
    """Send ``sdp`` as an ``offer`` on the peer's socket; the ``error`` it provokes.

    An offer the negotiation refused is followed by the server's own offer (docs/protocol.md:
    the negotiation stays alive); with ``negotiated`` this waits until the peer has answered it,
    so that the next hostile offer meets a stable negotiation and not a ``glare``. An offer the
    message layer refused (oversized) never reaches the negotiation: no offer follows.
    """
    before, answered = len(peer.server_errors), peer.answers_sent
    await peer.send("offer", {"type": "offer", "sdp": sdp})
    await until(lambda: len(peer.server_errors) > before, f"an error reply to {what}", wait)
    error: dict[str, Any] = peer.server_errors[before]
    if negotiated:
        await until(lambda: peer.answers_sent > answered, f"the server's offer after {what}", wait)
    return error


def strip_lines(sdp: str, pattern: str) -> str:
    return "".join(line for line in sdp.splitlines(keepends=True) if not re.match(pattern, line))


def unsupported_codecs(sdp: str) -> str:
    """Every m-line offers only codecs zvonok does not forward: H265/AV1 video, iLBC audio."""
    out: list[str] = []
    for line in sdp.splitlines(keepends=True):
        if line.startswith("m=audio "):
            out += [" ".join(line.split()[:3]) + " 102\r\n", "a=rtpmap:102 iLBC/8000\r\n"]
        elif line.startswith("m=video "):
            out += [" ".join(line.split()[:3]) + " 100 101\r\n"]
            out += ["a=rtpmap:100 H265/90000\r\n", "a=rtpmap:101 AV1/90000\r\n"]
        elif not re.match(r"a=(rtpmap|fmtp|rtcp-fb|ssrc-group):", line):
            out.append(line)
    return "".join(out)


def flip(digit: re.Match[str]) -> str:
    """Another hex digit: every byte of a fingerprint changes."""
    return "0" if digit[0] in "Ff" else "F"


def many_m_lines(sdp: str, count: int) -> str:
    head, _, _ = sdp.partition("m=")
    section = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n"
    return head + section * count


async def test_hostile_sdp_gets_bad_sdp_and_every_call_goes_on(
    zvonok_server: ZvonokServer, aiortc_peers: AiortcPeers
) -> None:
    server = zvonok_server
    group = server.create_group(["alice", "bob", "mallory"])
    alice = await aiortc_peers.open(server, "alice", group, "red", kind="group")
    bob = await aiortc_peers.open(server, "bob", group, "blue", kind="group")
    mallory = await aiortc_peers.open(server, "mallory", group, "green", kind="group")
    await bob.wait_receiving(from_user="alice", color="red", timeout=30)
    await mallory.wait_receiving(from_user="alice", color="red", timeout=30)
    await alice.wait_receiving(from_user="mallory", color="green", timeout=30)
    await asyncio.sleep(1)  # let the last server offers be answered: every negotiation stable
    # A valid re-offer of mallory's session (same m-lines, mids, credentials), then broken.
    valid = (await mallory.pc.createOffer()).sdp
    assert "a=fingerprint:" in valid and "a=setup:actpass" in valid
    hostile = {
        "garbage": ("v=0\r\nthis is not sdp\r\n\x00\x01\x02", r"line 2"),
        "binary noise": ("\x16\xfe\xfd" + "\ufffd" * 500, r"v=0"),
        "above the length limit": (valid + "a=x-pad:" + "p" * 140_000 + "\r\n", r"longer than"),
        "above the m-line limit": (many_m_lines(valid, 300), r"more than 256"),
        "no fingerprint": (strip_lines(valid, r"a=fingerprint:"), r"no a=fingerprint"),
        "passive setup": (valid.replace("a=setup:actpass", "a=setup:passive"), r"passive"),
        "only unsupported codecs": (unsupported_codecs(valid), r"codec"),
    }
    for name, (sdp, reason) in hostile.items():
        error = await next_error(mallory, sdp, name, negotiated=name != "above the length limit")
        assert error["code"] == "bad-sdp", (name, error)
        assert re.search(reason, error["message"]), (name, error)
    # Every session, mallory's included, goes on; nobody left, media still flows both ways.
    await bob.wait_receiving(from_user="alice", color="red", timeout=10)
    await bob.wait_receiving(from_user="mallory", color="green", timeout=10)
    await mallory.wait_receiving(from_user="alice", color="red", timeout=10)
    await alice.wait_receiving(from_user="bob", color="blue", timeout=10)
    state = await debug_state(server)
    assert state["sessions"] == 3 and state["transports"] == 3
    for peer in (alice, bob, mallory):
        assert "failed" not in peer.states and peer.closes == [], peer.name
    assert alice.server_errors == [] and bob.server_errors == []
    # Each subscriber's video started at a keyframe it got (docs/media.md: before, a keyframe
    # that met a transport still in DTLS left ~30 undecodable frames in 2 of 3 runs).
    assert aiortc_peers.decode_failures.messages == []


async def test_wrong_fingerprint_fails_dtls_and_ends_only_that_session(
    zvonok_server: ZvonokServer, aiortc_peers: AiortcPeers
) -> None:
    server = zvonok_server
    group = server.create_group(["alice", "bob", "mallory"])
    alice = await aiortc_peers.open(server, "alice", group, "red", kind="group")
    bob = await aiortc_peers.open(server, "bob", group, "blue", kind="group")
    await bob.wait_receiving(from_user="alice", color="red", timeout=30)
    config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    pc = RTCPeerConnection(config)
    try:
        pc.addTrack(ToneTrack("green"))
        pc.addTrack(ColourVideoTrack("green"))
        async with client(server, "mallory", group, kind="group", session="m-1") as m:
            await m.join()
            await m.expect("offer")  # the server's offer: not answered, mallory offers instead
            await pc.setLocalDescription(await pc.createOffer())
            real = pc.localDescription.sdp
            # Every fingerprint (aiortc lists sha-256/384/512) names a certificate not its own.
            forged = re.sub(
                r"(a=fingerprint:\S+ )([0-9A-Fa-f:]+)",
                lambda found: found[1] + re.sub("[0-9A-Fa-f]", flip, found[2]),
                real,
            )
            assert forged != real
            await m.send("offer", {"type": "offer", "sdp": forged})
            assert (await m.expect("error"))["payload"]["code"] == "glare"
            await m.send("offer", {"type": "offer", "sdp": forged})  # a naive client insists
            answer = await m.expect("answer")
            await pc.setRemoteDescription(RTCSessionDescription(answer["payload"]["sdp"], "answer"))
            states = []
            for _ in range(60):
                msg = await m.expect("state", wait=20)
                states.append(msg["payload"]["state"])
                if states[-1] in ("failed", "connected", "closed"):
                    break
            assert states[-1] == "failed", states
    finally:
        await pc.close()
    # It was the certificate check that failed (not ICE, not a timeout).
    assert any("does not match the SDP fingerprint" in str(line) for line in server.logs())

    def left_failed(peer: AiortcPeer) -> bool:
        return any("participant-left" in line and "'failed'" in line for line in peer.log)

    await until(lambda: left_failed(alice) and left_failed(bob), "participant-left failed", 10)
    await bob.wait_receiving(from_user="alice", color="red", timeout=10)
    await alice.wait_receiving(from_user="bob", color="blue", timeout=10)
    state = await debug_state(server)
    assert state["sessions"] == 2 and state["transports"] == 2


async def closed_code(c: Client, wait: float = 10.0) -> int | None:
    """Read until the server closes the socket; its close code."""
    deadline = time.monotonic() + wait
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(1000):
            await asyncio.wait_for(c.ws.recv(), max(0.01, deadline - time.monotonic()))
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def test_hostile_websocket_frames(zvonok_server_factory: ServerFactory) -> None:
    limit = 8192
    server = zvonok_server_factory.start(env={"ZVONOK_MAX_MESSAGE_BYTES": str(limit)})
    group = server.create_group(["alice", "bob"])
    async with (
        client(server, "alice", group, kind="group", session="a-1") as a,
        client(server, "bob", group, kind="group", session="b-1") as b,
    ):
        await a.join()
        await b.join()
        await a.expect("participant-joined")
        # JSON nested deeper than the decoder's recursion limit: an error, not a dead socket.
        await b.ws.send("[" * 5000)
        assert (await b.expect("error"))["payload"]["code"] == "bad-json"
        await b.ws.send(json.dumps({"type": "ice", "roomId": group, "sessionId": "b-1",
                                    "payload": "[" * 5000}))  # fmt: skip
        assert (await b.expect("error"))["payload"]["code"] == "bad-message"
        # Between max_message_bytes and the transport limit: refused, the socket lives.
        await b.ws.send("x" * (2 * limit))
        assert (await b.expect("error"))["payload"]["code"] == "too-large"
        # leave naming alice's session: refused, alice's session untouched.
        await b.send("leave", sessionId="a-1")
        assert (await b.expect("error"))["payload"]["code"] == "session-mismatch"
        await a.send("dance")
        assert (await a.expect("error"))["payload"]["code"] == "bad-message"
        assert "participant-left" not in [m["type"] for m in a.seen]
        assert (await debug_state(server))["sessions"] == 2
        # Above the transport limit (4 x max_message_bytes): the socket is closed with 1009.
        await b.ws.send("y" * (4 * limit + 1024))
        assert await closed_code(b) == 1009
        # alice's connection and session go on; bob's session waits for a resume.
        await a.send("dance")
        assert (await a.expect("error"))["payload"]["code"] == "bad-message"
        assert "participant-left" not in [m["type"] for m in a.seen]


async def test_pending_ice_limit(zvonok_server_factory: ServerFactory) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_MAX_PENDING_ICE": "3"})
    chat = server.create_chat(["alice", "bob"])
    candidate = "candidate:1 1 UDP 2113667326 127.0.0.1 {port} typ host"
    async with client(server, "alice", chat, session="a-1") as a:
        await a.join()
        await a.expect("offer")  # not answered: no remote description, candidates are buffered
        for port in range(50000, 50003):
            payload = {"candidate": candidate.format(port=port), "sdpMid": "0"}
            await a.send("ice", payload)
        await a.send("ice", {"candidate": candidate.format(port=50003), "sdpMid": "0"})
        error = await a.expect("error")
        assert error["payload"]["code"] == "rate-limited", error
        assert error["payload"]["message"] == "too many ICE candidates buffered"
        assert error["payload"]["ref"] == "ice"
        assert [m["type"] for m in a.seen].count("error") == 1  # the first three were taken
        await a.send("dance")  # the connection and the session live on
        assert (await a.expect("error"))["payload"]["code"] == "bad-message"
        assert (await debug_state(server))["sessions"] == 1


async def test_track_limit(zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_MAX_TRACKS_PER_SESSION": "1"})
    chat = server.create_chat(["alice", "bob"])
    alice = await aiortc_peers.open(server, "alice", chat, "red")  # publishes audio + video
    bob = await aiortc_peers.open(server, "bob", chat, "blue")
    await until(
        lambda: any(e.get("code") == "too-many-tracks" for e in alice.server_errors),
        "too-many-tracks",
        20,
    )
    assert alice.server_errors[0] == {"code": "too-many-tracks", "message": "track limit reached"}
    await until(lambda: len(bob.track_map) >= 1, "bob's track map", 20)
    await asyncio.sleep(2)  # any further offer would have arrived by now
    from_alice = [t for t in bob.track_map if t["userId"] == "alice"]
    assert len(from_alice) == 1, bob.track_map
    state = await debug_state(server)
    room = state["rooms"][f"chat:{chat}"]
    published = {p["userId"]: p["published"] for p in room["participants"]}
    assert len(published["alice"]) == 1 and len(published["bob"]) == 1, published
    # The one accepted track is forwarded; the extra one is not.
    kind = from_alice[0]["kind"]
    await bob.wait_receiving(from_user="alice", kind=kind, color="red" if kind == "video" else None)
    other = "video" if kind == "audio" else "audio"
    report = await bob.report()
    assert report.tracks_from(user="alice", kind=other) == [], report.dump()
