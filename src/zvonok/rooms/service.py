"""The room service: rooms by key (``chat:1`` ≠ ``group:1``), sessions by id, join/leave/resume.

Rooms are created on the first join and deleted, with everything they own, when the last session
leaves. A session id is bound to the user who first used it (through the cluster's
``SessionDirectory``); only that user can resume it. A dropped socket detaches the session for the
resume grace window; then the session ends as if it had left. An ended session's id stays bound
to its user for ``resume_grace`` + 5 minutes (``SESSION_LINGER``), so nobody else can squat it and
turn that user's rejoin into ``session-taken``. A session whose media failed is ended and its
socket closed with ``error`` ``media-failed`` and close code 4002; the client joins again (a new
session, same ``sessionId``). While the node drains (``set_drain``; shared design ``cluster.md`` §4
"Graceful drain") rooms that exist keep taking joins and resumes, and a join that would create a
room is refused with ``node-draining`` (close 1012: join again, another node takes it). Imports
``media`` and ``cluster``; from ``signaling`` only the wire vocabulary (``signaling.messages``).

Locking (docs/architecture.md "Room service locking"): no service-wide lock. A join holds its
session id's lock (bind, resume) and inside it its room key's lock (claim or create, the caps, the
insert); ``leave`` releases the session binding under the session lock and drops an empty room
under the room lock. The order is always session, then room; joins of different rooms never wait
on each other's directory round trips. A key's lock is forgotten when nobody holds or awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any, Generic, TypeVar

from ..cluster.base import RoomDirectory, SessionBinding, SessionDirectory
from ..errors import SignalError
from ..ids import RoomKey, SessionId, UserId
from ..media.forwarding.router import Router
from ..media.worker import MediaWorker
from ..signaling.messages import Error, Joined, ParticipantJoined, ParticipantLeft, Peer, State
from .adaptive import RoomAdaptation
from .events import RoomEvents
from .participant import Participant
from .room import Room
from .sink import SignalSink

log = logging.getLogger("zvonok.rooms")
#: How long a session whose client closed its peer connection waits for the client's `leave`.
PEER_CLOSE_DELAY = 1.0
#: A detached session whose media still flows is looked at again this often.
MEDIA_RECHECK = 5.0
#: How long an ended session's id stays bound to its user, beyond the resume grace.
SESSION_LINGER = 300.0
#: How long ``close`` waits for joins under way before it cancels them (and for their releases).
JOIN_SETTLE = 2.0
#: WebSocket close code after the session's media connection failed (docs/protocol.md).
MEDIA_FAILED_CLOSE_CODE = 4002
#: The ``error`` of a join that would create a room on a draining node, and of the sessions still
#: there when ``drain_timeout`` ends the drain (docs/protocol.md); both close with 1012.
NODE_DRAINING = "node-draining"
SHUTDOWN = "shutdown"
_GOODBYES = {
    SHUTDOWN: "the server is shutting down; reconnect with the same sessionId",
    NODE_DRAINING: "this node is draining; join again with the same sessionId",
}


_K = TypeVar("_K", bound=Hashable)


class KeyedLocks(Generic[_K]):
    """One ``asyncio.Lock`` per key, kept only while someone holds or awaits it (so a flood of
    joins with random keys leaves nothing behind)."""

    def __init__(self) -> None:
        #: Per key: its lock and how many tasks hold or await it.
        self._locks: dict[_K, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: _K) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0] and self._locks.get(key) is entry:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


def shutdown_refusal() -> SignalError:
    """The answer to a join while the node shuts down (close 1012: join again elsewhere)."""
    return SignalError(SHUTDOWN, "the server is shutting down", fatal=True, close_code=1012)


def draining_refusal() -> SignalError:
    """The answer to a join that would create a room on a draining node."""
    return SignalError(
        NODE_DRAINING,
        "this node is draining and takes no new rooms; join again",
        fatal=True,
        close_code=1012,
    )


class RoomService:
    """All rooms and sessions of this node."""

    def __init__(
        self,
        *,
        worker: MediaWorker,
        sessions: SessionDirectory,
        rooms: RoomDirectory,
        ice_servers: list[dict[str, Any]] | Callable[[UserId], list[dict[str, Any]]],
        max_participants: int = 0,
        resume_grace: float = 30.0,
        max_pending_ice: int = 200,
        max_tracks: int = 16,
        max_sessions_per_user: int = 0,
        glare_yield: float = 1.0,
        ice_stall: float = 5.0,
        events: RoomEvents | None = None,
    ) -> None:
        self.worker = worker
        #: Lifecycle events for webhooks and metrics (``rooms.events``).
        self.events = events if events is not None else RoomEvents()
        self.rooms: dict[RoomKey, Room[Participant]] = {}
        self.sessions: dict[SessionId, Participant] = {}
        self._session_dir = sessions
        self._room_dir = rooms
        self._ice_servers = ice_servers
        self._max_participants = max_participants
        self._resume_grace = resume_grace
        self._max_pending_ice = max_pending_ice
        self._max_tracks = max_tracks
        self._max_sessions_per_user = max_sessions_per_user
        self._glare_yield = glare_yield
        self._ice_stall = ice_stall
        self._grace: dict[SessionId, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Tasks inside ``join`` now (``close`` waits for them), and releases of the bindings of
        #: cancelled joins (``close`` waits for them too).
        self._joining: set[asyncio.Task[Any]] = set()
        self._joins_done = asyncio.Event()
        self._joins_done.set()
        self._releases: set[asyncio.Task[None]] = set()
        #: Lock order: a session id's lock, then a room key's (never the other way round).
        self.session_locks: KeyedLocks[SessionId] = KeyedLocks()
        self.room_locks: KeyedLocks[RoomKey] = KeyedLocks()
        self.closing = False
        #: While draining: when ``drain_timeout`` ends the drain (wall clock, s since the epoch).
        self.drain_until: float | None = None

    @property
    def draining(self) -> bool:
        """No new rooms here: the node drains (its existing rooms still take joins)."""
        return self.drain_until is not None

    def set_drain(self, until: float | None) -> None:
        """Drain until ``until`` (s since the epoch), or serve again (None)."""
        self.drain_until = until

    def drain_seconds_left(self) -> float:
        """Seconds until ``drain_timeout`` ends the drain (0 when not draining)."""
        until = self.drain_until
        return 0.0 if until is None else max(0.0, until - time.time())

    async def join(
        self,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
    ) -> tuple[Participant, bool]:
        """Enter (or resume) a session; raises ``SignalError`` when refused.

        Whatever ends a join before it made a session (a refusal, an error, a cancellation: its
        client went, or a close cancelled it) releases the session id's binding it made, unless
        a session with that id exists (a resume, or a newer join of the id that got there
        first). A join under way when ``begin_shutdown`` or ``close`` starts is refused with
        ``shutdown`` at its next step; ``close`` waits for it (module docstring)."""
        if self.closing:
            raise shutdown_refusal()
        task = asyncio.current_task()
        assert task is not None
        self._joining.add(task)
        self._joins_done.clear()
        binding = SessionBinding(user_id, key)
        #: The binding may be in force and no session holds it: an exit now releases it.
        unowned = False
        try:
            async with self.session_locks.hold(session_id):
                unowned = True  # a cancelled bind may have been made all the same
                held = await self._session_dir.bind(session_id, binding)
                unowned = held == binding
                if not unowned:
                    raise SignalError("session-taken", "this sessionId belongs to another session")
                existing = self.sessions.get(session_id)
                if existing is not None and not existing.closed:
                    unowned = False  # the existing session's binding
                    if self.closing:
                        raise shutdown_refusal()
                    return self._resume(existing, sink), True
                try:
                    async with self.room_locks.hold(key):
                        participant = await self._enter(key, user_id, session_id, raw_room_id, sink)
                except Exception:
                    # refused (or failed) under the session lock: free the id before the next
                    # join of it looks
                    await self._session_dir.release(session_id, binding)
                    unowned = False
                    raise
                unowned = False
        except asyncio.CancelledError:
            if unowned:
                self._release_abandoned(session_id, binding)
            raise
        finally:
            self._joining.discard(task)
            if not self._joining:
                self._joins_done.set()
        room = participant.room
        participant.send(self._joined(participant, resumed=False))
        room.broadcast(ParticipantJoined(session_id, user_id), participant)
        participant.log.info("joined")
        self.events.participant_joined(participant)
        participant.start()
        return participant, False

    def _release_abandoned(self, session_id: SessionId, binding: SessionBinding) -> None:
        """A cancelled join may have bound ``session_id``: release it (lingering for the user,
        who may join again with it), unless a session with the id exists by the time the
        session lock is free (a newer join of the id waited for the lock and now owns the
        binding, which has the same value). The release is a task of the service (``close``
        waits for it), so the cancellation itself waits for nothing."""

        async def release() -> None:
            async with self.session_locks.hold(session_id):
                if session_id not in self.sessions:
                    await self._session_dir.release(
                        session_id, binding, linger=self._resume_grace + SESSION_LINGER
                    )

        task = asyncio.get_running_loop().create_task(release())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _enter(
        self,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
    ) -> Participant:
        """The new session's part of ``join``, under its session lock and the room's lock: find
        or create the room, check the caps, insert the participant (``join`` releases the
        session's binding when this raises). The last check of ``closing`` is in ``_refusal``,
        with no wait between it and the insert: a join either is in the sessions ``close``
        ends or sees ``closing``."""
        room = self.rooms.get(key)
        if self.closing:  # begin_shutdown or close started while this join waited
            raise shutdown_refusal()
        if room is None and self.draining:
            raise draining_refusal()
        if room is None:
            await self._room_dir.claim(key)
            router = Router(hurry=self.worker.hurry)
            unticks = [self.worker.add_tick(router.tick)]
            room = Room(key, router=router, unsubscribe_tick=_all(unticks), events=self.events)
            adaptation = RoomAdaptation(room)
            room.adaptation = adaptation
            unticks.append(self.worker.add_tick(adaptation.tick))
            self.rooms[key] = room
            log.info("room created", extra={"room": str(key)})
            self.events.room_started(room)
        refusal = self._refusal(room, user_id)
        if refusal is not None:
            await self._release_if_empty(room)
            raise refusal
        participant = Participant(
            room=room,
            session_id=session_id,
            user_id=user_id,
            raw_room_id=raw_room_id,
            sink=sink,
            worker=self.worker,
            max_pending_ice=self._max_pending_ice,
            max_tracks=self._max_tracks,
            on_failed=self._failed,
            glare_yield=self._glare_yield,
            ice_stall=self._ice_stall,
        )
        room.participants[session_id] = participant
        self.sessions[session_id] = participant
        return participant

    def _refusal(self, room: Room[Participant], user_id: UserId) -> SignalError | None:
        """Why a new session may not enter ``room`` (None: it may)."""
        if self.closing:
            return shutdown_refusal()
        if self._max_participants and len(room) >= self._max_participants:
            return SignalError("room-full", "the room has reached its participant limit")
        cap = self._max_sessions_per_user
        if cap and sum(1 for p in room.participants.values() if p.user_id == user_id) >= cap:
            return SignalError(
                "too-many-sessions", f"this user already has {cap} sessions in this room"
            )
        return None

    def _resume(self, participant: Participant, sink: SignalSink) -> Participant:
        handle = self._grace.pop(participant.session_id, None)
        if handle is not None:
            handle.cancel()
        old = participant.sink
        old.send(Error("replaced", "session resumed on another connection"))
        old.close(4001, "replaced")
        participant.attach(sink)
        participant.send(self._joined(participant, resumed=True))
        participant.send(State(participant.state.value))
        participant.resend_pending()
        participant.log.info("resumed")
        return participant

    def _joined(self, participant: Participant, *, resumed: bool) -> Joined:
        # a callable mints per-user entries (time-limited TURN credentials, auth/turn.py)
        ice_servers = (
            self._ice_servers(participant.user_id)
            if callable(self._ice_servers)
            else self._ice_servers
        )
        return Joined(
            session_id=participant.session_id,
            user_id=participant.user_id,
            room=str(participant.room.key),
            participants=tuple(
                Peer(p.session_id, p.user_id) for p in participant.room.others(participant)
            ),
            ice_servers=tuple(ice_servers),
            resumed=resumed,
        )

    def detach(self, participant: Participant, sink: SignalSink) -> None:
        """The socket of ``participant`` dropped: keep the session for the grace window."""
        if participant.closed or participant.sink is not sink:
            return
        participant.detach()
        if self._resume_grace <= 0:
            self._spawn(self.leave(participant, "disconnect"))
            return
        self._arm_grace(participant, self._resume_grace, participant.transport.rx_packets)
        participant.log.info("detached; resumable for %.0f s", self._resume_grace)

    def _arm_grace(self, participant: Participant, delay: float, rx_seen: int) -> None:
        loop = asyncio.get_running_loop()
        self._grace[participant.session_id] = loop.call_later(
            delay, self._grace_expired, participant, rx_seen
        )

    def _grace_expired(self, participant: Participant, rx_seen: int) -> None:
        """End a detached session, unless its media is still arriving (then it is not inactive:
        look again a little later; it ends once both socket and media are gone)."""
        self._grace.pop(participant.session_id, None)
        if participant.closed:
            return
        rx_now = participant.transport.rx_packets
        if rx_now != rx_seen:
            self._arm_grace(participant, MEDIA_RECHECK, rx_now)
            return
        self._spawn(self.leave(participant, "disconnect"))

    async def leave(self, participant: Participant, reason: str) -> None:
        """End a session now: free its media, tell the others, drop an empty room."""
        if participant.closed:
            return
        handle = self._grace.pop(participant.session_id, None)
        if handle is not None:
            handle.cancel()
        room = participant.room
        room.participants.pop(participant.session_id, None)
        if self.sessions.get(participant.session_id) is participant:
            del self.sessions[participant.session_id]
        self.events.session_closing(participant)
        participant.close()
        session_id = participant.session_id
        async with self.session_locks.hold(session_id):
            # a join with this id since (same user and room: the same binding) now owns it
            if session_id not in self.sessions:
                await self._session_dir.release(
                    session_id,
                    SessionBinding(participant.user_id, room.key),
                    linger=self._resume_grace + SESSION_LINGER,
                )
        room.broadcast(
            ParticipantLeft(participant.session_id, participant.user_id, reason), participant
        )
        participant.log.info("left (%s)", reason)
        self.events.participant_left(participant, reason)
        async with self.room_locks.hold(room.key):
            await self._release_if_empty(room)

    async def _release_if_empty(self, room: Room[Participant]) -> None:
        """Drop ``room`` if it is empty and still this key's room (the caller holds its lock, so
        no join claims the key while its lease is being released)."""
        if len(room) == 0 and self.rooms.get(room.key) is room:
            del self.rooms[room.key]
            room.close()
            await self._room_dir.release(room.key)
            log.info("room deleted", extra={"room": str(room.key)})
            self.events.room_finished(room)

    def _failed(self, participant: Participant, reason: str) -> None:
        """The session's connection failed (end it now) or the peer closed it (end it shortly,
        unless its ``leave`` arrives first)."""
        if reason == "failed":
            self._spawn(self._end_failed(participant))
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(
            PEER_CLOSE_DELAY, lambda: self._spawn(self.leave(participant, reason))
        )
        self._grace[participant.session_id] = handle

    async def _end_failed(self, participant: Participant) -> None:
        """Media failed: end the session, then tell the client and close its socket (4002)."""
        sink = participant.sink
        await self.leave(participant, "failed")
        sink.send(
            Error(
                "media-failed",
                "the media connection failed; join again on a new connection",
                retry_after_ms=0,
            )
        )
        sink.close(MEDIA_FAILED_CLOSE_CODE, "media failed")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def begin_shutdown(self, code: str = SHUTDOWN) -> None:
        """Refuse new joins and tell every session to reconnect (elsewhere or later): ``error``
        ``code`` (``shutdown``, or ``node-draining`` when ``drain_timeout`` ended a drain) and
        close 1012."""
        if self.closing:
            return
        self.closing = True
        log.info("shutting down (%s): telling %d sessions to reconnect", code, len(self.sessions))
        message = _GOODBYES.get(code, _GOODBYES[SHUTDOWN])
        reason = "server shutting down" if code == SHUTDOWN else code
        for participant in list(self.sessions.values()):
            participant.send(Error(code, message, retry_after_ms=1000))
            participant.sink.close(1012, reason)

    async def _joins_settled(self) -> bool:
        """Wait ``JOIN_SETTLE`` at most for the joins under way to end; whether they did."""
        try:
            await asyncio.wait_for(self._joins_done.wait(), JOIN_SETTLE)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Shutdown: end every session (clients were told by the signaling layer). Joins under
        way finish first (each is refused with ``shutdown`` at its next step, or made its session
        before ``closing`` was set and is ended here); those still waiting after
        ``JOIN_SETTLE`` (a directory that does not answer) are cancelled."""
        self.closing = True
        if not await self._joins_settled():
            for task in list(self._joining):
                task.cancel()
            await self._joins_settled()
        for participant in list(self.sessions.values()):
            await self.leave(participant, "shutdown")
        if self._releases:
            await asyncio.wait(list(self._releases), timeout=JOIN_SETTLE)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _all(callbacks: list[Callable[[], None]]) -> Callable[[], None]:
    """One callback that calls each of ``callbacks`` (as the list stands when it is called)."""

    def each() -> None:
        for callback in callbacks:
            callback()

    return each
