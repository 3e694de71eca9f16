"""The front side of the worker split: the pool of media worker processes and relayed sessions.

Owns ``WorkerPool`` (spawns ``workers`` processes of ``relay.worker``, one socketpair link each;
watches them; restarts one that dies; places each new room on the least-loaded live worker and
pins it there while the room lives; answers the workers' ``bind``/``lookup``/``claim`` from the
node's cluster directories), ``RelayedRooms`` (the ``CallRooms`` the WebSocket endpoint drives
when rooms live in workers) and ``RelayedSession`` (one session relayed by ``relay`` id).

Load: each worker reports CPU fraction, packets/s and sessions every second; a worker's score is
the largest of ``cpu``, ``pps / PPS_CAPACITY`` and ``sessions / SESSION_CAPACITY``, plus
``RAMP_UP`` per room placed on it since its last report, so a burst of joins does not all land
on one worker between two reports. A crashed worker (link EOF or process exit): each of its
sessions gets ``error`` ``worker-lost`` and close 1012 (the client joins again and lands on a live
worker), its rooms are unpinned and released, its session bindings released (reserved for their
users), and it is restarted after ``RESTART_DELAY`` (doubling while it keeps crashing). While the
node drains, the front places no new room (``node-draining``) and tells every worker (a restarted
one too) so its metrics show it; joins to pinned rooms go on. Implements no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ..cluster.base import ClusterUnavailable, RoomDirectory, SessionBinding, SessionDirectory
from ..cluster.placement import PPS_CAPACITY as PPS_CAPACITY
from ..cluster.placement import SESSION_CAPACITY as SESSION_CAPACITY
from ..config import Settings
from ..errors import SignalError
from ..ids import RoomKey, SessionId, UserId
from ..rooms.service import SESSION_LINGER, draining_refusal, shutdown_refusal
from ..rooms.sink import SignalSink
from .frames import Frame
from .link import Link, LinkClosed
from .session import LinkedSession

log = logging.getLogger("zvonok.relay")

#: Score added per room placed on a worker since its last load report.
RAMP_UP: Final = 0.02
#: How long a starting worker has to report ``ready``.
START_TIMEOUT: Final = 30.0
#: First delay before restarting a crashed worker; doubles while it keeps crashing, up to ``MAX``.
RESTART_DELAY: Final = 0.2
MAX_RESTART_DELAY: Final = 10.0
#: A worker that ran this long before dying restarts after ``RESTART_DELAY`` again.
STABLE_AFTER: Final = 30.0
#: How long a stopping worker gets to close its rooms before it is killed.
STOP_TIMEOUT: Final = 5.0
#: The ``error`` a session gets when its worker dies (docs/protocol.md).
WORKER_LOST: Final = "worker-lost"
#: WebSocket close code after a worker died: "service restart" (RFC 6455 §7.4.1 registry).
WORKER_LOST_CLOSE_CODE: Final = 1012


def _lost_error() -> SignalError:
    return SignalError(
        WORKER_LOST,
        "the media worker of this call stopped; join again",
        fatal=True,
        close_code=WORKER_LOST_CLOSE_CODE,
    )


@dataclass(eq=False)
class WorkerHandle:
    """One worker process as the front sees it."""

    index: int
    process: asyncio.subprocess.Process
    link: Link
    started: float
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    info: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    placed_since_report: int = 0
    relays: dict[int, RelayedSession] = field(default_factory=dict)
    rooms: set[RoomKey] = field(default_factory=set)
    #: Rooms the worker has created (claimed) and not released yet: the pins that are real.
    claimed: set[RoomKey] = field(default_factory=set)
    joining: dict[RoomKey, int] = field(default_factory=dict)
    bindings: dict[SessionId, SessionBinding] = field(default_factory=dict)
    #: Session ids the front bound for joins on their way to the worker: the highest such
    #: join frame's sequence number and the binding (see ``WorkerPool.release``).
    prebound: dict[SessionId, tuple[int, SessionBinding]] = field(default_factory=dict)
    lost: bool = False

    @property
    def name(self) -> str:
        return str(self.index)

    @property
    def live(self) -> bool:
        return self.ready.is_set() and not self.lost

    def score(self) -> float:
        load = self.load
        base = max(
            float(load.get("cpu", 0.0)),
            float(load.get("pps", 0.0)) / PPS_CAPACITY,
            float(load.get("sessions", 0)) / SESSION_CAPACITY,
        )
        return base + RAMP_UP * self.placed_since_report


class WorkerPool:
    """``count`` media worker processes, their links, room placement and crash recovery."""

    def __init__(
        self,
        settings: Settings,
        count: int,
        *,
        sessions: SessionDirectory,
        rooms: RoomDirectory,
        on_note: Callable[[WorkerHandle, Frame], None] | None = None,
    ) -> None:
        self.settings = settings
        self.count = count
        self._sessions = sessions
        self._rooms = rooms
        self._on_note = on_note
        self.workers: dict[int, WorkerHandle] = {}
        self.pins: dict[RoomKey, WorkerHandle] = {}
        self._relay_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restart_delay: dict[int, float] = {}
        self.closing = False
        #: Workers restarted after a crash, for metrics.
        self.restarts = 0
        #: While the node drains: when ``drain_timeout`` ends it (s since the epoch).
        self.drain_until: float | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Spawn every worker and wait until each reports ready."""
        handles = await asyncio.gather(*(self._spawn(i) for i in range(self.count)))
        try:
            await asyncio.wait_for(
                asyncio.gather(*(h.ready.wait() for h in handles)), START_TIMEOUT
            )
        except TimeoutError:
            await self.close()
            raise RuntimeError(f"media workers did not start within {START_TIMEOUT:g} s") from None
        for handle in handles:
            if handle.lost:
                await self.close()
                raise RuntimeError(f"media worker {handle.index} exited while starting")

    async def _spawn(self, index: int) -> WorkerHandle:
        front_sock, worker_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "zvonok.relay.worker",
                "--index",
                str(index),
                "--fd",
                str(worker_sock.fileno()),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(worker_sock.fileno(),),
            )
        except BaseException:
            front_sock.close()
            raise
        finally:
            worker_sock.close()
        assert process.stdin is not None
        process.stdin.write(self.settings.to_json().encode())
        await process.stdin.drain()
        process.stdin.close()
        reader, writer = await asyncio.open_unix_connection(sock=front_sock)
        holder: list[WorkerHandle] = []
        link = Link(
            reader,
            writer,
            name=f"worker-{index}",
            on_request=lambda frame: self._serve(holder[0], frame),
            on_note=lambda frame: self._note(holder[0], frame),
        )
        handle = WorkerHandle(index, process, link, time.monotonic())
        holder.append(handle)
        self.workers[index] = handle
        link.start()
        self._spawn_task(self._watch(handle))
        log.info("media worker %d started (pid %d)", index, process.pid)
        return handle

    async def _watch(self, handle: WorkerHandle) -> None:
        """Wait for the worker's link or process to end, then heal."""
        exited = asyncio.create_task(handle.process.wait())
        closed = asyncio.create_task(handle.link.closed.wait())
        try:
            await asyncio.wait({exited, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            closed.cancel()
        if self.closing:
            return
        self._lose(handle)
        with contextlib.suppress(ProcessLookupError):
            handle.process.kill()
        await handle.process.wait()
        await handle.link.close()
        log.error(
            "media worker %d (pid %d) died (exit %s, link %s); restarting",
            handle.index,
            handle.process.pid,
            handle.process.returncode,
            handle.link.close_reason,
        )
        delay = self._restart_delay.get(handle.index, RESTART_DELAY)
        if time.monotonic() - handle.started > STABLE_AFTER:
            delay = RESTART_DELAY
        self._restart_delay[handle.index] = min(delay * 2, MAX_RESTART_DELAY)
        await asyncio.sleep(delay)
        if self.closing:
            return
        self.restarts += 1
        try:
            await self._spawn(handle.index)
        except Exception:
            log.exception("media worker %d could not be restarted", handle.index)

    def _lose(self, handle: WorkerHandle) -> None:
        """The worker is gone: tell its sessions, unpin its rooms, free its bindings."""
        if handle.lost:
            return
        handle.lost = True
        for session in list(handle.relays.values()):
            session.lost()
        handle.relays.clear()
        for key in list(handle.rooms):
            self.unpin(handle, key)
        for key in handle.claimed:
            self._spawn_task(self._rooms.release(key))
        handle.claimed.clear()
        for session_id, binding in list(handle.bindings.items()):
            self._spawn_task(
                self._sessions.release(
                    session_id, binding, linger=self.settings.resume_grace + 300.0
                )
            )
        handle.bindings.clear()

    def begin_shutdown(self, code: str = "shutdown") -> None:
        """Every worker tells its sessions to reconnect (``error`` ``code``, 1012)."""
        for handle in self.workers.values():
            if handle.live:
                with contextlib.suppress(LinkClosed):
                    handle.link.notify("shutdown", {"code": code})

    def set_drain(self, until: float | None) -> None:
        """Tell every worker the node drains until ``until`` (or serves again: None)."""
        self.drain_until = until
        for handle in self.workers.values():
            if handle.live:
                self._tell_drain(handle)

    def _tell_drain(self, handle: WorkerHandle) -> None:
        with contextlib.suppress(LinkClosed):
            handle.link.notify("drain", {"until": self.drain_until})

    async def close(self) -> None:
        """Stop every worker (their sessions end), then the watchers."""
        self.closing = True
        handles = list(self.workers.values())
        await asyncio.gather(*(self._stop(h) for h in handles), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop(self, handle: WorkerHandle) -> None:
        if handle.process.returncode is None and not handle.link.closed.is_set():
            with contextlib.suppress(Exception):
                await handle.link.request("stop", {}, wait=STOP_TIMEOUT)
        try:
            await asyncio.wait_for(handle.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("media worker %d did not stop; killing it", handle.index)
            with contextlib.suppress(ProcessLookupError):
                handle.process.kill()
            await handle.process.wait()
        self._lose(handle)
        await handle.link.close()

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ placement
    def live_workers(self) -> list[WorkerHandle]:
        return [h for h in self.workers.values() if h.live]

    def place(self, key: RoomKey) -> WorkerHandle:
        """The worker that holds (or will hold) room ``key``; pins a new room."""
        handle = self.pins.get(key)
        if handle is not None and handle.live:
            return handle
        live = self.live_workers()
        if not live:
            raise _lost_error()
        handle = min(live, key=lambda h: (h.score(), len(h.rooms), h.index))
        handle.placed_since_report += 1
        self.pins[key] = handle
        handle.rooms.add(key)
        return handle

    def locate(self, key: RoomKey) -> str | None:
        """The worker room ``key`` is pinned to (None: not on any)."""
        handle = self.pins.get(key)
        return None if handle is None else handle.name

    def calls(self) -> dict[str, Callable[[str, dict[str, Any]], Awaitable[Any]]]:
        """``{worker id: request}`` of the live workers (admin API and metrics fan-out)."""
        return {h.name: h.link.request for h in self.live_workers()}

    def unpin(self, handle: WorkerHandle, key: RoomKey) -> None:
        """Forget that room ``key`` lives on ``handle`` (it was released, or never created)."""
        handle.rooms.discard(key)
        if self.pins.get(key) is handle:
            del self.pins[key]

    def next_relay(self) -> int:
        return next(self._relay_ids)

    # ------------------------------------------------------------------ the workers' side
    async def _serve(self, handle: WorkerHandle, frame: Frame) -> Any:
        try:
            return await self._serve_directories(handle, frame)
        except ClusterUnavailable as exc:  # a binding or claim needed Redis: the join is refused
            raise exc.refusal() from None

    async def _serve_directories(self, handle: WorkerHandle, frame: Frame) -> Any:
        params = frame.params
        if frame.method == "bind":
            session_id = SessionId(str(params["session"]))
            binding = SessionBinding(UserId(str(params["user"])), RoomKey.parse(params["room"]))
            held = await self._sessions.bind(session_id, binding)
            if held == binding:
                handle.bindings[session_id] = binding
            return {"user": held.user_id, "room": str(held.room)}
        if frame.method == "lookup":
            found = await self._sessions.lookup(SessionId(str(params["session"])))
            return None if found is None else {"user": found.user_id, "room": str(found.room)}
        if frame.method == "claim":
            return await self.claim(handle, RoomKey.parse(str(params["room"])))
        raise SignalError("internal", f"unknown front request {frame.method!r}")

    def release_binding(
        self,
        handle: WorkerHandle,
        session_id: SessionId,
        binding: SessionBinding,
        *,
        cancelled: bool,
    ) -> None:
        """Give back a binding a join made and never forwarded (refused at the front: free at
        once, as the room service frees a refused join's; cancelled: lingering for its user)."""
        if handle.bindings.get(session_id) == binding:
            del handle.bindings[session_id]
        linger = self.settings.resume_grace + SESSION_LINGER if cancelled else 0.0
        self._spawn_task(self._sessions.release(session_id, binding, linger=linger))

    @property
    def sessions(self) -> SessionDirectory:
        """The node's session directory (the front binds a joining id in it)."""
        return self._sessions

    async def claim(self, handle: WorkerHandle, key: RoomKey) -> str:
        """Claim room ``key`` for the worker ``handle`` and pin it there (the worker is about to
        create it: the front does this before it forwards the join, or the worker asks)."""
        previous = self.pins.get(key)
        if previous is not handle:
            log.warning("worker %d claims room %s pinned elsewhere", handle.index, key)
            if previous is not None:
                previous.rooms.discard(key)
                previous.claimed.discard(key)
        self.pins[key] = handle
        handle.rooms.add(key)
        handle.claimed.add(key)
        try:
            return await self._rooms.claim(key)
        except BaseException:
            handle.claimed.discard(key)  # not claimed: the join's end unpins it
            raise

    def _note(self, handle: WorkerHandle, frame: Frame) -> None:
        method = frame.method
        params = frame.params
        if frame.relay:
            session = handle.relays.get(frame.relay)
            if session is not None:
                session.on_note(method, params)
            return
        if method == "load":
            handle.load = params
            handle.placed_since_report = 0
        elif method == "ready":
            handle.info = params
            handle.ready.set()
            if self.drain_until is not None:
                self._tell_drain(handle)
            log.info(
                "media worker %d ready: udp port %s, %s forwarding",
                handle.index,
                params.get("mediaPort"),
                params.get("forwarding"),
            )
        elif method == "release":
            session_id = SessionId(str(params["session"]))
            binding = SessionBinding(UserId(str(params["user"])), RoomKey.parse(params["room"]))
            pending = handle.prebound.get(session_id)
            if pending is not None and pending[1] == binding and frame.ack < pending[0]:
                # the worker let the id go (an earlier session of it ended) before it saw a join
                # the front bound it for since: that join holds the binding now
                return
            if handle.bindings.get(session_id) == binding:
                del handle.bindings[session_id]
            self._spawn_task(
                self._sessions.release(session_id, binding, linger=float(params["linger"]))
            )
        elif method == "room-released":
            key = RoomKey.parse(str(params["room"]))
            handle.claimed.discard(key)
            self._spawn_task(self._rooms.release(key))
            if handle.joining.get(key, 0) == 0:
                self.unpin(handle, key)
        elif self._on_note is not None:
            self._on_note(handle, frame)

    # ------------------------------------------------------------------ fan-out
    async def move_room(self, key: RoomKey, error: SignalError) -> None:
        """The room's lease went to another node: its worker tells each session ``error``."""
        handle = self.pins.get(key)
        if handle is None or not handle.live:
            return
        params = {
            "room": str(key),
            "code": error.code,
            "message": error.message,
            "closeCode": error.close_code,
        }
        with contextlib.suppress(LinkClosed):
            await handle.link.request("move", params)

    async def ask_all(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask every live worker; a worker that fails is left out (its name maps to None)."""
        handles = self.live_workers()
        answers = await asyncio.gather(
            *(h.link.request(method, params) for h in handles), return_exceptions=True
        )
        out: dict[str, Any] = {}
        for handle, answer in zip(handles, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("worker %d did not answer %s: %s", handle.index, method, answer)
                out[handle.name] = None
            else:
                out[handle.name] = answer
        return out


class RelayedSession(LinkedSession):
    """A ``CallSession`` whose room lives in a worker process."""

    def __init__(
        self, handle: WorkerHandle, relay: int, session_id: SessionId, sink: SignalSink
    ) -> None:
        super().__init__(handle.link, relay, session_id, sink)
        self._handle = handle

    def lost_error(self) -> SignalError:
        return _lost_error()

    def check(self) -> None:
        if self._handle.lost:
            raise _lost_error()

    def forget(self) -> bool:
        return self._handle.relays.pop(self.relay, None) is not None


class RelayedRooms:
    """``CallRooms`` over a ``WorkerPool``: every session is relayed to its room's worker."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    async def join(
        self,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
    ) -> RelayedSession:
        if self._closing:
            raise shutdown_refusal()
        if self.pool.drain_until is not None:
            pinned = self.pool.pins.get(key)
            if pinned is None or not pinned.live:
                raise draining_refusal()
        pool = self.pool
        handle = pool.place(key)
        relay = pool.next_relay()
        session = RelayedSession(handle, relay, session_id, sink)
        handle.relays[relay] = session
        handle.joining[key] = handle.joining.get(key, 0) + 1
        seq = 0
        binding = SessionBinding(user_id, key)
        # no session or join of the id here: a binding the bind makes is this join's alone
        fresh = session_id not in handle.bindings and session_id not in handle.prebound
        made = False
        try:
            # The front binds the id (and claims a room its worker has not created) before it
            # forwards the join and sends the answers along: the worker's room service takes
            # them instead of asking back over the link (a round trip each, behind whatever
            # else the worker's loop is busy with). An id bound elsewhere is refused here.
            held = await pool.sessions.bind(session_id, binding)
            if held != binding:
                raise SignalError("session-taken", "this sessionId belongs to another session")
            made = fresh
            handle.bindings[session_id] = binding
            params: dict[str, Any] = {
                "room": str(key),
                "user": user_id,
                "session": session_id,
                "rawRoomId": raw_room_id,
                "bound": True,
            }
            if key not in handle.claimed:
                params["claimed"] = await pool.claim(handle, key)
            if handle.lost:
                raise LinkClosed(handle.link.name)
            # ``request`` sends the frame before it first waits: this is its sequence number
            seq = handle.link.sent_seq + 1
            pending = handle.prebound.get(session_id)
            handle.prebound[session_id] = (max(seq, pending[0] if pending else 0), binding)
            await handle.link.request("join", params, relay=relay)
        except BaseException as exc:
            handle.relays.pop(relay, None)
            if made and not seq:  # ended before the join went out: the binding goes back
                pool.release_binding(
                    handle, session_id, binding, cancelled=not isinstance(exc, Exception)
                )
            if isinstance(exc, ClusterUnavailable):  # the binding or the claim needed Redis
                raise exc.refusal() from None
            if isinstance(exc, LinkClosed):
                raise _lost_error() from None
            raise
        finally:
            pending = handle.prebound.get(session_id)
            if pending is not None and pending[0] == seq:
                del handle.prebound[session_id]
            left = handle.joining.get(key, 1) - 1
            if left:
                handle.joining[key] = left
            else:
                handle.joining.pop(key, None)
                if key not in handle.claimed:  # refused before the worker created the room
                    if pool.pins.get(key) is handle and handle.placed_since_report:
                        handle.placed_since_report -= 1  # its ramp goes with it
                    pool.unpin(handle, key)
        return session

    @property
    def empty(self) -> bool:
        return not self.pool.pins

    def set_drain(self, until: float | None) -> None:
        self.pool.set_drain(until)

    def begin_shutdown(self, code: str = "shutdown") -> None:
        self._closing = True
        self.pool.begin_shutdown(code)

    async def close(self) -> None:
        self._closing = True
        await self.pool.close()
