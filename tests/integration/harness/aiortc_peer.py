"""aiortc call participants: the "native client" path (token in the Authorization header).

Owns ``AiortcPeer`` (docs/protocol.md over ``websockets``: join, answer the server's offers or
send its own, send its candidates as ``ice`` messages, buffer remote candidates until the remote
description is set, re-offer after ``glare``), ``AiortcLoopback`` (two local peer connections,
for the self-check), ``use_loopback_addresses`` and the ``aiortc_peers`` fixture (function
scope; patches aioice's host-address discovery to 127.0.0.1 for the test's duration, because
aioice never offers 127.0.0.1 by itself).

aiortc cannot roll back a local offer: on glare before the first answer the peer replaces its
RTCPeerConnection by a fresh one (nothing of the old one reached the server), later glare is
recorded as an error. ``remove_screen_share`` is not available (aiortc has no removeTrack).
Mode ``offer-first`` (the client matrix) is the client that cannot roll back: it offers once right
after ``join``, ignores server offers that collide with it (and ``glare``), waits for the answer,
and answers later server offers. ``delay_join`` / ``delay_offer`` / ``delay_answer`` (seconds,
set before ``start``) wait before sending ``join``, the first offer and each answer (race hunting).

Imports aiortc, websockets and the harness; never zvonok.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import errors
from .aiortc_media import ColourVideoTrack, Receiver, ToneTrack
from .server import CallServer
from .stats import PeerReport, ReportPeer

OPEN_TIMEOUT = 10.0
MAX_MESSAGES = 1_000_000  # bounds the reader loop
LOG_LINES = 300
_peer_ids = itertools.count(1)


def use_loopback_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make aioice gather 127.0.0.1 only (in this process, until the test ends)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def local_candidates(sdp: str) -> list[dict[str, Any]]:
    """The ``a=candidate`` lines of an SDP as ``ice`` payloads (per m-line mid)."""
    out: list[dict[str, Any]] = []
    mid, index = None, -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=candidate:"):
            out.append({"candidate": line[2:].strip(), "sdpMid": mid, "sdpMLineIndex": index})
    return out


class AiortcPeer(ReportPeer):
    """One participant; the reader task is owned here and cancelled by ``close``."""

    delay_join = delay_offer = delay_answer = 0.0

    def __init__(
        self, name: str, *, url: str, token: str, room: str, session_id: str, user: str,
        color: str, audio: bool, video: bool, mode: str, auth: str = "header",
    ) -> None:  # fmt: skip
        self.name = name
        self.url, self.token, self.auth = url, token, auth
        self.room, self.session_id, self.user = room, session_id, user
        self.color, self.audio, self.video, self.mode = color, audio, video, mode
        self.ws: ClientConnection | None = None
        self.log: list[str] = []
        self.errors: list[str] = []
        self.received: dict[str, int] = {}
        #: Server offers this peer has answered (the answer is on the socket when it counts).
        self.answers_sent = 0
        self.server_errors: list[dict[str, Any]] = []
        self.states: list[str] = []
        self.participants: dict[str, dict[str, Any]] = {}
        self.track_map: list[dict[str, Any]] = []
        self.pending_ice: list[dict[str, Any]] = []
        self.joined = self.answered_first = self.want_offer = self.left = False
        self.closes: list[int | None] = []
        self._extra_tracks: list[MediaStreamTrack] = []
        self._old_receivers: list[Receiver] = []
        self._reader: asyncio.Task[None] | None = None
        self._new_pc()

    def _new_pc(self) -> None:
        # max-bundle: with aiortc's default "balanced" policy, a transceiver created by a remote
        # offer keeps the pre-BUNDLE transport of the first transceiver of its kind and never
        # connects (an aiortc bug); a real client bundles everything on one transport anyway.
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.pc = RTCPeerConnection(config)
        self.receiver = Receiver(self.pc, self.track_map, self.participants)
        self.candidates_sent = False
        if self.audio:
            self.pc.addTrack(ToneTrack(self.color))
        if self.video:
            self.pc.addTrack(ColourVideoTrack(self.color))
        for track in self._extra_tracks:
            self.pc.addTrack(track)

    def _log(self, *parts: object) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} " + " ".join(str(p) for p in parts))
        del self.log[:-LOG_LINES]

    def console(self) -> list[str]:
        return list(self.log)

    async def start(self) -> None:
        url, headers = self.url, [("Authorization", f"Bearer {self.token}")]
        if self.auth == "query":
            url, headers = f"{url}?access_token={self.token}", []
        self.ws = await connect(url, additional_headers=headers, open_timeout=OPEN_TIMEOUT)
        if self.mode != "offer-first":
            self._reader = asyncio.get_running_loop().create_task(self._read())
        await asyncio.sleep(self.delay_join)
        await self.send("join")
        if self.mode == "early-ice":
            await self._offer("early-ice")
        if self.mode == "offer-first":  # a naive client: it reads nothing before its offer is out
            await asyncio.sleep(self.delay_offer)
            await self._offer(self.mode)
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def send(self, type_: str, payload: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"type": type_, "roomId": self.room, "sessionId": self.session_id}
        if payload is not None:
            message["payload"] = payload
        if self.ws is None:
            raise RuntimeError("not connected")
        await self.ws.send(json.dumps(message))

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            for _ in range(MAX_MESSAGES):
                raw = await self.ws.recv()
                try:
                    await self._handle(json.loads(raw))
                except Exception as exc:  # noqa: BLE001 - recorded; the session goes on
                    if self.left:
                        # A message that crossed our `leave` (an offer for a closed peer
                        # connection, a reply on a closed socket): a client that left ignores it.
                        self._log("after leave, not handled:", repr(exc))
                        continue
                    self.errors.append(f"handling a message: {exc!r}")
                    self._log("ERROR", repr(exc))
        except ConnectionClosed as exc:
            self.closes.append(exc.rcvd.code if exc.rcvd else None)
            self._log("ws closed", exc)

    async def _handle(self, m: dict[str, Any]) -> None:
        type_ = str(m.get("type"))
        self.received[type_] = self.received.get(type_, 0) + 1
        p = m.get("payload")
        if isinstance(p, str):
            p = json.loads(p)
        p = p or {}
        if type_ not in ("ice", "offer", "answer"):
            self._log("<-", type_, p)
        if type_ == "joined":
            self.joined = True
            for x in p.get("participants", []):
                self.participants[x["sessionId"]] = x
            if self.mode == "offer":
                await self._offer("after joined")
        elif type_ == "participant-joined":
            self.participants[p["sessionId"]] = p
        elif type_ == "participant-left":
            self.participants.pop(str(p.get("sessionId")), None)
        elif type_ == "tracks":
            self.track_map[:] = p.get("tracks", [])
        elif type_ == "offer":
            if self.left:  # an offer already on its way when we left: nothing to negotiate
                self._log("offer after leave ignored")
                return
            await self._on_offer(p)
        elif type_ == "answer":
            await self.pc.setRemoteDescription(RTCSessionDescription(p["sdp"], "answer"))
            await self._after_remote()
        elif type_ == "ice":
            await self._on_ice(p)
        elif type_ == "state":
            self.states.append(str(p.get("state")))
        elif type_ == "error":
            self.server_errors.append(p)
            if p.get("code") == "glare" and self.mode != "offer-first":
                self.want_offer = True
                await self._maybe_offer()

    async def _on_offer(self, p: dict[str, Any]) -> None:
        if self.mode == "offer-first" and self.pc.signalingState == "have-local-offer":
            self._log("offer-first: a server offer that collides with ours is ignored")
            return
        if self.pc.signalingState == "have-local-offer":
            if self.answered_first:
                self.errors.append("glare after the first negotiation: aiortc cannot roll back")
                return
            self._log("glare: replacing the unanswered peer connection (no rollback in aiortc)")
            self._old_receivers.append(self.receiver)
            await self.pc.close()
            self._new_pc()
            self.want_offer = True
        await self.pc.setRemoteDescription(RTCSessionDescription(p["sdp"], "offer"))
        await asyncio.sleep(self.delay_answer)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.send("answer", {"type": "answer", "sdp": self.pc.localDescription.sdp})
        self.answers_sent += 1
        self.answered_first = True
        await self._after_remote()
        await self._maybe_offer()

    async def _after_remote(self) -> None:
        for c in self.pending_ice:
            await self._add_ice(c)
        self.pending_ice.clear()
        await self._send_candidates()

    async def _send_candidates(self) -> None:
        if self.candidates_sent or self.pc.localDescription is None:
            return
        self.candidates_sent = True
        for payload in local_candidates(self.pc.localDescription.sdp):
            await self.send("ice", payload)
        await self.send("ice", {"candidate": ""})

    async def _on_ice(self, p: dict[str, Any]) -> None:
        if not p.get("candidate"):
            return
        if self.pc.remoteDescription is None:
            self.pending_ice.append(p)
        else:
            await self._add_ice(p)

    async def _add_ice(self, p: dict[str, Any]) -> None:
        candidate = candidate_from_sdp(str(p["candidate"]).removeprefix("candidate:"))
        candidate.sdpMid = p.get("sdpMid")
        candidate.sdpMLineIndex = p.get("sdpMLineIndex")
        await self.pc.addIceCandidate(candidate)

    async def _offer(self, why: str) -> None:
        self.want_offer = False
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.send("offer", {"type": "offer", "sdp": self.pc.localDescription.sdp})
        self._log("-> offer", why)
        if self.mode == "early-ice":
            await self._send_candidates()

    async def _maybe_offer(self) -> None:
        if self.want_offer and self.pc.signalingState == "stable" and not self.left:
            await self._offer("re-offer")

    async def add_screen_share(self, color: str = "yellow") -> None:
        track = ColourVideoTrack(color)
        self._extra_tracks.append(track)
        self.pc.addTrack(track)
        self.want_offer = True
        await self._maybe_offer()

    async def remove_screen_share(self) -> None:
        raise NotImplementedError("aiortc has no removeTrack")

    async def leave(self) -> None:
        await self.send("leave")
        self.left = True
        await self.pc.close()

    async def close_socket(self, code: int = 1000) -> None:
        if self.ws is not None:
            await self.ws.close(code)

    async def report(self) -> PeerReport:
        self.receiver.participants = self.participants
        raw = {
            "ts": time.time() * 1000, "user": self.user, "sessionId": self.session_id,
            "joined": self.joined, "left": self.left,
            "connectionState": self.pc.connectionState,
            "iceConnectionState": self.pc.iceConnectionState,
            "signalingState": self.pc.signalingState,
            "participants": list(self.participants.values()), "messages": dict(self.received),
            "serverErrors": self.server_errors, "states": self.states, "closes": self.closes,
            "errors": self.errors, "trackMap": self.track_map,
            "tracks": await self.receiver.track_reports(),
        }  # fmt: skip
        return PeerReport.parse(raw)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()
        for receiver in [*self._old_receivers, self.receiver]:
            await receiver.close()
        await self.pc.close()


class AiortcLoopback(ReportPeer):
    """Two local aiortc peer connections (self-check): reports the receiving one."""

    def __init__(self, user: str, color: str, audio: bool = True, video: bool = True) -> None:
        self.name = f"aiortc-loopback({user})"
        self.sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        # max-bundle: with aiortc's default "balanced" policy, a transceiver created by a remote
        # offer keeps the pre-BUNDLE transport of the first transceiver of its kind and never
        # connects (an aiortc bug); a real client bundles everything on one transport anyway.
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.pc = RTCPeerConnection(config)
        self.receiver = Receiver(self.pc)
        self.user, self.color = user, color
        if audio:
            self.sender.addTrack(ToneTrack(color))
        if video:
            self.sender.addTrack(ColourVideoTrack(color))

    async def start(self) -> None:
        await self.sender.setLocalDescription(await self.sender.createOffer())
        await self.pc.setRemoteDescription(self.sender.localDescription)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.sender.setRemoteDescription(self.pc.localDescription)
        owner = {"sessionId": f"loop-{self.user}", "userId": self.user}
        self.receiver.track_map[:] = [{"mid": t.mid, **owner} for t in self.pc.getTransceivers()]

    def console(self) -> list[str]:
        return []

    async def report(self) -> PeerReport:
        raw = {"ts": time.time() * 1000, "connectionState": self.pc.connectionState,
               "tracks": await self.receiver.track_reports()}  # fmt: skip
        return PeerReport.parse(raw)

    async def close(self) -> None:
        await self.receiver.close()
        await self.pc.close()
        await self.sender.close()


class DecodeFailures(logging.Handler):
    """The ``failed to decode`` warnings of aiortc's receivers (logger ``aiortc.rtcrtpreceiver``,
    one per frame its decoder refused), from every peer of the process; attached by the
    ``aiortc_peers`` fixture for one test. A VP8 decoder refuses the frames before its first
    keyframe, so a subscriber started mid-stream shows here (see docs/testing.md)."""

    LOGGER = "aiortc.rtcrtpreceiver"

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "failed to decode" in message and len(self.messages) < LOG_LINES:
            self.messages.append(f"{time.strftime('%H:%M:%S')} {message}")


class AiortcPeers:
    """Opens aiortc participants and closes them all."""

    def __init__(self, allowed: errors.Allowed | None = None) -> None:
        self.allowed = allowed or errors.Allowed()
        self.peers: list[AiortcPeer | AiortcLoopback] = []
        self.recorded: dict[str, list[str]] = {}
        #: aiortc decode failures during the test (not an error by itself yet: see docs/testing.md)
        self.decode_failures = DecodeFailures()

    async def open(
        self,
        server: CallServer,
        user: str,
        room: str,
        color: str,
        kind: str = "chat",
        audio: bool = True,
        video: bool = True,
        mode: str = "answer",
        session_id: str | None = None,
        token: str | None = None,
        auth: str = "header",
    ) -> AiortcPeer:
        """Join ``kind:room`` as ``user`` sending ``color`` video and a tone."""
        peer_id = f"aiortc{next(_peer_ids)}"
        if token is None:
            token = await asyncio.to_thread(server.token, user)
        peer = AiortcPeer(
            f"{peer_id}({user})", url=server.ws_url(kind, room), token=token, room=room,
            session_id=session_id or f"{peer_id}-{user}", user=user, color=color, audio=audio,
            video=video, mode=mode, auth=auth,
        )  # fmt: skip
        self.peers.append(peer)
        await peer.start()
        return peer

    async def open_loopback(self, user: str = "self", color: str = "red") -> AiortcLoopback:
        peer = AiortcLoopback(user, color)
        self.peers.append(peer)
        await peer.start()
        return peer

    def check_errors(self) -> None:
        """Fail on any error a peer recorded that the allow-list does not cover."""
        for peer in self.peers:
            self.recorded[peer.name] = list(getattr(peer, "errors", []))
        for name, recorded in self.recorded.items():
            errors.check(name, recorded, self.allowed.client)

    async def close(self) -> None:
        for peer in self.peers:
            self.recorded[peer.name] = list(getattr(peer, "errors", []))
            await peer.close()
        self.peers.clear()


@pytest.fixture
async def aiortc_peers(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[AiortcPeers]:
    """aiortc participants for one test, gathering 127.0.0.1 candidates; at its end every
    peer's recorded ``errors`` must be empty or allowed (errors.py)."""
    use_loopback_addresses(monkeypatch)
    peers = AiortcPeers(errors.Allowed.of(request))
    logger = logging.getLogger(DecodeFailures.LOGGER)
    logger.addHandler(peers.decode_failures)
    try:
        yield peers
    finally:
        await peers.close()
        logger.removeHandler(peers.decode_failures)
    peers.check_errors()
