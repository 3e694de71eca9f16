"""The call WebSocket endpoint: ``/api/v1/chat/{id}/call`` and ``/api/v1/group/{id}/call``.

Authenticates before accepting (401 bad token, 403 not a member, 503 store down), tells the rooms
layer which room an accepted connection is for (``look_ahead``: a cluster node looks the room's
owner up while the client sends ``join``), then runs one connection: a reader loop that parses
envelopes and dispatches them to the rooms layer, and one writer task that drains a bounded queue
into the socket (the only place that writes). Bad input gets an ``error`` reply and the connection
lives on; a run of bad messages or a flood closes only this connection. Imports ``rooms.port`` (the
rooms layer as a ``CallRooms``: this process's rooms or a media worker's behind the worker link),
``auth``, ``store``; never ``media``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import metrics
from ..auth.tokens import Grants, TokenVerifier
from ..edge import TrustedProxies, loggable
from ..errors import AuthError, SignalError, StoreUnavailable
from ..ids import ROOM_ID_RE, RoomKey, RoomKind
from ..rooms.port import CallRooms, CallSession
from ..store.base import MembershipStore
from .messages import (
    ClientMessage,
    Error,
    MessageError,
    ServerMessage,
    TrackSettings,
    encode_server_message,
    parse_client_message,
)

log = logging.getLogger("zvonok.signaling")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_message_bytes: int
    message_rate: float
    message_burst: int
    bad_message_limit: int
    send_queue_size: int
    connect_rate: float = 20.0
    connect_burst: int = 200
    #: Seconds an accepted connection has to ``join`` before it is closed (1008).
    join_timeout: float = 10.0
    #: Proxies whose ``X-Forwarded-For`` names the client (IPs/CIDRs); empty = the socket peer.
    forwarded_allow_ips: tuple[str, ...] = ()


class WebSocketSink:
    """A bounded outgoing queue drained by one writer task; overflow closes the connection."""

    def __init__(self, websocket: WebSocket, size: int) -> None:
        self._ws = websocket
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=size)
        self.room_id: int | str | None = None
        self.session_id: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()

    def send(self, message: ServerMessage) -> None:
        if self.close_code is not None:
            return
        metrics.record_signaling_message("out", message.type)
        if isinstance(message, Error):
            metrics.record_signaling_error(message.code)
        room_id = "" if self.room_id is None else self.room_id  # 0 is a room id
        frame = encode_server_message(message, room_id, self.session_id)
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(1008, "send queue overflow")

    def close(self, code: int, reason: str) -> None:
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def run(self) -> None:
        """The writer: sends queued frames in order; closes the socket when asked."""
        try:
            while True:
                frame = await self._queue.get()
                if frame is None:
                    break
                await self._ws.send_text(frame)
            await self._ws.close(self.close_code or 1000, self.close_reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.closed.set()


class TokenBucket:
    """Per-connection message rate limit."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class IpRateLimiter:
    """WebSocket connection attempts per client IP: a token bucket each, LRU-bounded."""

    def __init__(self, rate: float, burst: int, size: int = 10_000) -> None:
        self._rate = rate
        self._burst = burst
        self._size = size
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, ip: str) -> bool:
        bucket = self._buckets.pop(ip, None)
        if bucket is None:
            bucket = TokenBucket(self._rate, self._burst)
            if len(self._buckets) >= self._size:
                self._buckets.popitem(last=False)
        self._buckets[ip] = bucket
        return bucket.take()


class CallEndpoint:
    """The ASGI WebSocket handler for both URL kinds."""

    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        store: MembershipStore,
        rooms: CallRooms,
        limits: ConnectionLimits,
        look_ahead: Callable[[RoomKey], None] | None = None,
    ) -> None:
        self._verifier = verifier
        self._store = store
        self._rooms = rooms
        #: Called with the room of each accepted connection, before its ``join`` arrives
        #: (``ClusteredRooms.look_ahead``); only for a caller whose token and membership passed.
        self._look_ahead = look_ahead
        self._limits = limits
        self._ip_buckets = IpRateLimiter(limits.connect_rate, limits.connect_burst)
        self._proxies = TrustedProxies(limits.forwarded_allow_ips)
        self.connections = 0
        #: Set while no call WebSocket is open (shutdown waits on it).
        self.idle = asyncio.Event()
        self.idle.set()

    async def __call__(self, websocket: WebSocket) -> None:
        kind = RoomKind(websocket.path_params["kind"])
        room_id = str(websocket.path_params["room_id"])
        peer = websocket.client.host if websocket.client else "?"
        peer = self._proxies.client_ip(peer, websocket.headers.getlist("x-forwarded-for"))
        if not self._ip_buckets.take(peer):
            log.info("refused: connection rate from %s", peer)
            metrics.record_auth_refusal("rate-limited")
            await _deny(websocket, 429, "rate-limited", "too many connections; retry later")
            return
        grants = await self._authorize(websocket, kind, room_id)
        if grants is None:
            return
        key = RoomKey(kind, room_id)
        if self._look_ahead is not None:
            self._look_ahead(key)
        await websocket.accept()
        self.connections += 1
        self.idle.clear()
        try:
            await Connection(websocket, key, grants, self).run()
        finally:
            self.connections -= 1
            if not self.connections:
                self.idle.set()

    async def _authorize(self, websocket: WebSocket, kind: RoomKind, room_id: str) -> Grants | None:
        token = _token_of(websocket)
        try:
            grants = await self._verifier.verify(token)
        except AuthError as exc:
            log.info("refused: %s", exc.reason, extra={"room": f"{kind.value}:?"})
            metrics.record_auth_refusal(exc.reason)
            await _deny(websocket, 401, "unauthorized", "invalid or missing token")
            return None
        if not ROOM_ID_RE.match(room_id):
            metrics.record_auth_refusal("bad-room-id")
            await _deny(websocket, 403, "forbidden", "no access to this call")
            return None
        key = RoomKey(kind, room_id)
        try:
            member = await self._store.is_member(grants, key)
        except StoreUnavailable:
            log.warning("membership backend unavailable", extra={"room": str(key)})
            metrics.record_auth_refusal("store-unavailable")
            await _deny(websocket, 503, "unavailable", "membership check unavailable, retry")
            return None
        if not member:
            log.info("refused: not a member", extra={"room": str(key), "user": grants.user_id})
            metrics.record_auth_refusal("not-member")
            await _deny(websocket, 403, "forbidden", "no access to this call")
            return None
        return grants


class Connection:
    """One accepted call WebSocket: its reader loop, its writer task, its session."""

    def __init__(self, ws: WebSocket, key: RoomKey, grants: Grants, owner: CallEndpoint) -> None:
        self._ws = ws
        self._key = key
        self._grants = grants
        self._rooms = owner._rooms
        self._limits = owner._limits
        self._sink = WebSocketSink(ws, owner._limits.send_queue_size)
        self._bucket = TokenBucket(owner._limits.message_rate, owner._limits.message_burst)
        self._bad = 0
        self.participant: CallSession | None = None
        self._left = False
        self._join_timer: asyncio.TimerHandle | None = None
        self._extra = {"room": str(key), "user": grants.user_id}

    async def run(self) -> None:
        writer = asyncio.create_task(self._sink.run())
        loop = asyncio.get_running_loop()
        self._join_timer = loop.call_later(self._limits.join_timeout, self._join_late)
        try:
            await self._read_loop()
        finally:
            self._cancel_join_timer()
            if self.participant is not None and not self._left:
                self.participant.detach(self._sink)
            if self._sink.close_code is None:
                self._sink.close(1000, "")
            try:
                await asyncio.wait_for(self._sink.closed.wait(), timeout=5)
            except TimeoutError:
                pass
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _read_loop(self) -> None:
        while self._sink.close_code is None:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            await self._on_frame(data)

    async def _on_frame(self, data: str | bytes) -> None:
        if not self._bucket.take():
            self._error("rate-limited", "too many messages; slow down", None)
            self._count_bad()
            return
        if _frame_bytes(data, self._limits.max_message_bytes) > self._limits.max_message_bytes:
            self._error("too-large", f"frame above {self._limits.max_message_bytes} bytes", None)
            self._count_bad()
            return
        try:
            msg = parse_client_message(data)
        except MessageError as exc:
            metrics.record_signaling_message("in", "other")
            # The message may quote the input: INFO carries the code only (docs/security.md).
            log.info("bad message (%s)", exc.code, extra=self._extra)
            log.debug("bad message: %s", loggable(exc.message), extra=self._extra)
            self._error(exc.code, exc.message, exc.ref)
            self._count_bad()
            return
        metrics.record_signaling_message("in", msg.type)
        try:
            await self._dispatch(msg)
            self._bad = 0
        except SignalError as exc:
            log.info("refused %s (%s)", msg.type, exc.code, extra=self._extra)
            log.debug("refused %s: %s", msg.type, loggable(exc.message), extra=self._extra)
            self._sink.send(Error(exc.code, exc.message, msg.type, exc.retry_after_ms))
            if exc.fatal:
                self._sink.close(exc.close_code, exc.code)
            else:
                self._count_bad()
        except Exception:
            log.exception("internal error handling %s", msg.type, extra=self._extra)
            self._error("internal", "internal error", msg.type)

    def _join_late(self) -> None:
        """No valid ``join`` within ``join_timeout`` of the accept: ``join-timeout``, close 1008."""
        self._join_timer = None
        if self.participant is not None or self._sink.close_code is not None:
            return
        timeout = self._limits.join_timeout
        log.info("no join within %g s; closing", timeout, extra=self._extra)
        self._error("join-timeout", f"no valid join within {timeout:g} s", None)
        self._sink.close(1008, "join-timeout")

    def _cancel_join_timer(self) -> None:
        if self._join_timer is not None:
            self._join_timer.cancel()
            self._join_timer = None

    def _count_bad(self) -> None:
        self._bad += 1
        if self._bad >= self._limits.bad_message_limit and self._sink.close_code is None:
            self._error("too-many-errors", "too many bad messages", None)
            self._sink.close(1008, "too many bad messages")

    def _error(self, code: str, message: str, ref: str | None) -> None:
        self._sink.send(Error(code, message, ref))

    async def _dispatch(self, msg: ClientMessage) -> None:
        if msg.room_id != self._key.id:
            raise SignalError("room-mismatch", "roomId does not match the URL")
        participant = self.participant
        if participant is None:
            if msg.type != "join":
                raise SignalError("not-joined", "send 'join' first")
            await self._join(msg)
            return
        if msg.session_id != participant.session_id:
            raise SignalError("session-mismatch", "sessionId differs from the joined session")
        if participant.closed:
            raise SignalError("not-joined", "the session has ended; join again")
        if msg.type == "join":
            raise SignalError("already-joined", "this connection has already joined")
        if msg.type == "offer" and msg.description is not None:
            await participant.offer(msg.description.sdp)
        elif msg.type == "answer" and msg.description is not None:
            await participant.answer(msg.description.sdp)
        elif msg.type == "ice" and msg.ice is not None:
            await participant.ice(msg.ice)
        elif isinstance(msg, TrackSettings):
            await participant.track_settings(msg.tracks)
        elif msg.type == "leave":
            self._left = True
            await participant.leave()
            self._sink.close(1000, "left")

    async def _join(self, msg: ClientMessage) -> None:
        self._sink.room_id = msg.raw_room_id
        self._sink.session_id = msg.session_id
        try:
            participant = await self._rooms.join(
                self._key, self._grants.user_id, msg.session_id, msg.raw_room_id, self._sink
            )
        except SignalError:
            self._sink.session_id = None
            raise
        self.participant = participant
        self._cancel_join_timer()
        self._extra["session"] = msg.session_id


def _frame_bytes(data: str | bytes, limit: int) -> int:
    """The size of a frame in bytes (UTF-8 for text); exact only when it matters for ``limit``."""
    if isinstance(data, bytes) or len(data) > limit or 4 * len(data) <= limit:
        return len(data)  # bytes; or a text that is too long (or short enough) whatever it holds
    return len(data.encode("utf-8", "surrogatepass"))


def _token_of(websocket: WebSocket) -> str:
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return websocket.query_params.get("access_token", "")


async def _deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    response = JSONResponse({"error": code, "message": message}, status_code=status)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(1008)
