"""A media worker process: the rooms placed on it and their media, behind one worker link.

Run by the front as ``python -m zvonok.relay.worker --index I --fd N``: settings arrive as JSON
on stdin, the link is the inherited Unix stream socket ``N``. Owns the ``MediaWorker`` (UDP port
``media_port + I``), the ``RoomService``, the worker's metrics and quality monitor, and
``WorkerServer``, which serves the front's requests:

- per relayed session (frame ``relay`` id): ``join``, ``offer``, ``answer``, ``ice``,
  ``track-settings``, ``leave`` and the note ``detach``; server messages go back as notes
  ``send`` / ``close`` (``RelaySink``),
  and ``ended`` once the session is over;
- per worker: ``shutdown`` (tell every session to reconnect: ``error`` ``shutdown``, or
  ``node-draining`` at the end of a drain), ``drain`` (the node drains until ``until``, or serves
  again: the worker's ``zvonok_draining`` and its own refusal of new rooms), ``stop``,
  ``metrics`` (its exposition), ``admin.*`` (``admin.backend``: the admin API's operations on its
  rooms), ``state`` (``/debug/state``);
  its rooms' webhook events go to the front as notes ``webhook``.

The cluster directories are the front's (``LinkSessionDirectory``, ``LinkRoomDirectory``): a
session id is bound node-wide, and a room is claimed through the front, which pinned it here.
Every second the worker measures its load (``load``: CPU fraction, forwarded packets/s,
sessions, rooms) on its housekeeping tick and reports it for placement when it changed, at least
every ``LOAD_HEARTBEAT``. A worker with no media (no transport, no room) lets its tick sleep: its
process's callbacks (metrics, quality, load) do not keep it running, it sends one last report
as it goes idle and then wakes up for nothing until the front relays a join to it. The front
binds a joining session's id and claims a new room before it forwards the ``join`` (``bound``,
``claimed`` in its frame), so the join does not ask it back. The worker ignores SIGINT/SIGTERM
(the front drains it) and exits when its link closes. A worker cannot tell a relayed session
from a local one: it runs the same ``LocalRooms`` the one-process node runs. Implements no RFC.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from ..admin.backend import ADMIN_PREFIX, LocalAdminBackend, serve_admin
from ..admin.webhook_events import RelayWebhookSink, WebhookObserver
from ..cluster.base import SessionBinding
from ..cluster.placement import PPS_CAPACITY
from ..compose import build_media, build_room_service, state_snapshot
from ..config import Settings
from ..errors import SignalError
from ..heap import settle_heap, type_counts
from ..ids import RoomKey, SessionId, UserId
from ..logs import configure_logging
from ..media.worker import TICK_INTERVAL, MediaWorker
from ..metrics import METRICS_METHOD, Metrics, serve_metrics
from ..rooms.events import BaseRoomObserver, RoomEvents
from ..rooms.moderation import send_away
from ..rooms.participant import Participant
from ..rooms.port import LocalRooms, LocalSession
from ..rooms.quality import QualityMonitor
from ..rooms.service import SESSION_LINGER, RoomService
from ..signaling.messages import IcePayload, parse_track_settings
from .frames import Frame
from .link import Link, LinkClosed
from .sink import RelaySink

log = logging.getLogger("zvonok.relay.worker")
#: How often a worker measures its load (on its housekeeping tick, no timer of its own); it
#: reports it to the front when it changed (``changed``)...
LOAD_INTERVAL: Final = 1.0
#: ...by this much of the placement score (1 % of a core, or 1 500 packets/s), or a session or
#: room more or less...
LOAD_STEP: Final = 0.01
#: ...and at least this often (a ramp the front added for a room that came and went unseen
#: between two measurements ends then).
LOAD_HEARTBEAT: Final = 10.0


class LinkSessionDirectory:
    """The front's ``SessionDirectory``, asked over the link.

    The front binds a joining session's id before it forwards the ``join`` (``bound`` in the
    frame): ``expect`` records that answer and the join's ``bind`` takes it instead of asking
    again. A ``release`` of the id drops it (a leave of the id's earlier session released the
    binding after the front made it: the next ``bind`` asks the front, in order after the
    release)."""

    def __init__(self, link: Link) -> None:
        self._link = link
        #: Bindings the front made for joins on their way here: session id -> binding.
        self._bound: dict[SessionId, SessionBinding] = {}

    def expect(self, session_id: SessionId, binding: SessionBinding) -> None:
        """The front bound ``session_id`` to ``binding`` for a join it forwarded here."""
        self._bound[session_id] = binding

    def unused(self, session_id: SessionId, binding: SessionBinding) -> bool:
        """Forget the front's binding for a finished join; True if no ``bind`` took it."""
        if self._bound.get(session_id) == binding:
            del self._bound[session_id]
            return True
        return False

    async def bind(self, session_id: SessionId, binding: SessionBinding) -> SessionBinding:
        if self._bound.get(session_id) == binding:
            del self._bound[session_id]
            return binding  # the front bound it before it forwarded the join
        held = await self._link.request(
            "bind", {"session": session_id, "user": binding.user_id, "room": str(binding.room)}
        )
        return SessionBinding(UserId(held["user"]), RoomKey.parse(held["room"]))

    async def release(
        self, session_id: SessionId, binding: SessionBinding, *, linger: float = 0.0
    ) -> None:
        self._bound.pop(session_id, None)
        with contextlib.suppress(LinkClosed):
            self._link.notify(
                "release",
                {
                    "session": session_id,
                    "user": binding.user_id,
                    "room": str(binding.room),
                    "linger": linger,
                },
            )

    async def lookup(self, session_id: SessionId) -> SessionBinding | None:
        held = await self._link.request("lookup", {"session": session_id})
        if held is None:
            return None
        return SessionBinding(UserId(held["user"]), RoomKey.parse(held["room"]))


class LinkRoomDirectory:
    """The front's ``RoomDirectory``: the front pinned the room here and claims it.

    The front claims a room it has not seen created here before it forwards the ``join``
    (``claimed`` in the frame): ``expect`` records the answer and the ``claim`` of whichever join
    creates the room takes it instead of asking again."""

    def __init__(self, link: Link) -> None:
        self._link = link
        #: Claims the front made for joins on their way here: room -> the claim's answer.
        self._claimed: dict[RoomKey, str] = {}

    def expect(self, room: RoomKey, owner: str) -> None:
        """The front claimed ``room`` (answer ``owner``) for a join it forwarded here."""
        self._claimed[room] = owner

    def unused(self, room: RoomKey) -> bool:
        """Forget the front's claim of ``room`` after a join; True if no ``claim`` took it."""
        return self._claimed.pop(room, None) is not None

    async def claim(self, room: RoomKey) -> str:
        owner = self._claimed.pop(room, None)
        if owner is not None:
            return owner  # the front claimed it before it forwarded the join
        return str(await self._link.request("claim", {"room": str(room)}))

    async def release(self, room: RoomKey) -> None:
        with contextlib.suppress(LinkClosed):
            self._link.notify("room-released", {"room": str(room)})


class _EndedObserver(BaseRoomObserver):
    """Tells the front when a relayed session ends (its socket may stay open a while)."""

    def session_closing(self, participant: Participant) -> None:
        sink = participant.sink
        if isinstance(sink, RelaySink):
            with contextlib.suppress(LinkClosed):
                sink.link.notify("ended", {}, relay=sink.relay)


class WorkerServer:
    """Serves the front's requests on one link with this process's rooms."""

    def __init__(
        self,
        index: int,
        settings: Settings,
        media: MediaWorker,
        service: RoomService,
        metrics: Metrics,
        quality: QualityMonitor,
        *,
        sessions: LinkSessionDirectory,
        rooms: LinkRoomDirectory,
    ) -> None:
        self.index = index
        self._session_dir = sessions
        self._room_dir = rooms
        self.settings = settings
        self.media = media
        self.service = service
        self.rooms = LocalRooms(service)
        self.metrics = metrics
        self.quality = quality
        self.admin = LocalAdminBackend(service, quality)
        self._sessions: dict[int, LocalSession] = {}
        self._sinks: dict[int, RelaySink] = {}
        self.link: Link | None = None
        self.stopped = asyncio.Event()
        self._cpu = (time.monotonic(), time.process_time())
        self._sent = 0
        #: The last load sent to the front, and when (monotonic s).
        self._reported: dict[str, Any] | None = None
        self._reported_at = 0.0

    # ------------------------------------------------------------------ requests
    async def on_request(self, frame: Frame) -> Any:
        method = frame.method
        params = frame.params
        if method == "join":
            return await self._join(frame.relay, params)
        if method in ("offer", "answer", "ice", "track-settings", "leave"):
            session = self._sessions.get(frame.relay)
            if session is None:
                raise SignalError("not-joined", "the session has ended; join again")
            if method == "offer":
                await session.offer(str(params["sdp"]))
            elif method == "answer":
                await session.answer(str(params["sdp"]))
            elif method == "ice":
                await session.ice(IcePayload.parse(params.get("ice"), "ice"))
            elif method == "track-settings":
                await session.track_settings(parse_track_settings(params))
            else:
                self._drop(frame.relay)
                await session.leave()
            return None
        if method == "stop":
            self.stopped.set()
            return None
        if method == "move":  # the room's lease is another node's now (relay/nodes.py)
            return send_away(
                self.service,
                RoomKey.parse(str(params["room"])),
                str(params["code"]),
                str(params["message"]),
                int(params["closeCode"]),
            )
        if method == METRICS_METHOD:
            return serve_metrics(self.metrics)
        if method.startswith(ADMIN_PREFIX):
            return await serve_admin(self.admin, method, params)
        if method == "state":
            snapshot = state_snapshot(self.service, self.media)
            if params.get("gc"):  # leak checks (dev mode): what is alive after a full collection
                snapshot["gcCollected"] = gc.collect()
                snapshot["gcObjects"] = len(gc.get_objects())
                snapshot["gcFrozen"] = gc.get_freeze_count()
                snapshot["gcTypes"] = type_counts()
            return snapshot
        raise SignalError("internal", f"unknown worker request {method!r}")

    async def _join(self, relay: int, params: dict[str, Any]) -> None:
        link = self.link
        assert link is not None
        key = RoomKey.parse(str(params["room"]))
        user_id = UserId(str(params["user"]))
        session_id = SessionId(str(params["session"]))
        binding = SessionBinding(user_id, key)
        # what the front did before it forwarded the join: the service takes these answers
        # instead of asking the front again (a round trip each, on every join)
        bound = params.get("bound") is True
        claimed = params.get("claimed")
        if bound:
            self._session_dir.expect(session_id, binding)
        if isinstance(claimed, str):
            self._room_dir.expect(key, claimed)
        sink = RelaySink(link, relay)
        self._sinks[relay] = sink
        try:
            session = await self.rooms.join(key, user_id, session_id, params["rawRoomId"], sink)
        except BaseException:
            self._sinks.pop(relay, None)
            raise
        finally:
            self._settle(session_id, binding, bound, key, isinstance(claimed, str))
        self._sessions[relay] = session

    def _settle(
        self,
        session_id: SessionId,
        binding: SessionBinding,
        bound: bool,
        key: RoomKey,
        claimed: bool,
    ) -> None:
        """After a join: give the front back what it made for it and nobody took (the join was
        refused before the service asked: the claim of a room never created here, the binding
        of an id no session here holds, which lingers for its user as after a leave)."""
        if claimed and self._room_dir.unused(key) and key not in self.service.rooms:
            with contextlib.suppress(LinkClosed):
                assert self.link is not None
                self.link.notify("room-released", {"room": str(key)})
        if (
            bound
            and self._session_dir.unused(session_id, binding)
            and session_id not in self.service.sessions
        ):
            with contextlib.suppress(LinkClosed):
                assert self.link is not None
                self.link.notify(
                    "release",
                    {
                        "session": session_id,
                        "user": binding.user_id,
                        "room": str(binding.room),
                        "linger": self.settings.resume_grace + SESSION_LINGER,
                    },
                )

    def on_note(self, frame: Frame) -> None:
        if frame.method == "shutdown":
            self.service.begin_shutdown(str(frame.params.get("code", "shutdown")))
        elif frame.method == "drain":
            until = frame.params.get("until")
            self.service.set_drain(None if until is None else float(until))
        elif frame.method == "detach":
            session = self._sessions.get(frame.relay)
            sink = self._sinks.get(frame.relay)
            self._drop(frame.relay)
            if session is not None and sink is not None:
                session.detach(sink)

    def _drop(self, relay: int) -> None:
        self._sessions.pop(relay, None)
        self._sinks.pop(relay, None)

    # ------------------------------------------------------------------ load
    def load(self) -> dict[str, Any]:
        """CPU fraction of this process since the last report, packets/s sent, sessions, rooms."""
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu
        self._cpu = (now, cpu)
        sent = sum(t.tx_packets for t in self.media.transports.values())
        wall = max(now - then, 1e-3)
        pps = max(sent - self._sent, 0) / wall
        self._sent = sent
        return {
            "cpu": round((cpu - cpu_then) / wall, 4),
            "pps": round(pps, 1),
            "sessions": len(self.service.sessions),
            "rooms": len(self.service.rooms),
        }

    def on_tick(self, now: float) -> None:
        """The media worker's housekeeping tick: measure the load every ``LOAD_INTERVAL`` and
        report it when it changed (``changed``) or ``LOAD_HEARTBEAT`` after the last report, so
        an idle worker neither wakes up on its own for it nor wakes the front. On the tick that
        finds the worker idle (its last before it sleeps) the load is measured at once: the
        front keeps the last report for as long as the worker sleeps."""
        then = self._cpu[0]
        mono = time.monotonic()
        if mono - then < LOAD_INTERVAL * 0.98 and not self.media.idle:
            return
        load = self.load()
        if not changed(self._reported, load) and mono - self._reported_at < LOAD_HEARTBEAT:
            return
        if self.link is None or self.link.closed.is_set():
            return
        with contextlib.suppress(LinkClosed):
            self.link.notify("load", load)
            self._reported = load
            self._reported_at = mono


def changed(before: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """Whether load ``now`` is worth a report after ``before`` (the last one sent): another
    session or room count, or a CPU fraction or packet rate that moves the worker's placement
    score (``relay.front.WorkerHandle.score``) by ``LOAD_STEP`` or more."""
    if before is None:
        return True
    if before.get("sessions") != now["sessions"] or before.get("rooms") != now["rooms"]:
        return True
    if abs(float(before.get("cpu", 0.0)) - float(now["cpu"])) >= LOAD_STEP:
        return True
    return abs(float(before.get("pps", 0.0)) - float(now["pps"])) / PPS_CAPACITY >= LOAD_STEP


def _notifier(link: Link) -> Callable[[str, dict[str, Any]], None]:
    def notify(method: str, params: dict[str, Any]) -> None:
        with contextlib.suppress(LinkClosed):
            link.notify(method, params)

    return notify


async def serve(
    index: int, settings: Settings, sock: socket.socket, *, settle: bool = False
) -> None:
    """Run worker ``index`` on the link ``sock`` until the front says stop or goes away.
    ``settle``: a worker process of its own (``main``), whose start-up objects are then frozen
    before it reports ready (``heap``)."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    media = build_media(settings, index)
    events = RoomEvents()
    holder: dict[str, WorkerServer] = {}

    async def on_request(frame: Frame) -> Any:
        return await holder["server"].on_request(frame)

    def on_note(frame: Frame) -> None:
        holder["server"].on_note(frame)

    link = Link(reader, writer, name=f"worker-{index}", on_request=on_request, on_note=on_note)
    session_dir = LinkSessionDirectory(link)
    room_dir = LinkRoomDirectory(link)
    service = build_room_service(
        settings, media, sessions=session_dir, rooms=room_dir, events=events
    )
    metrics = Metrics(rooms=service, worker=media, tick_interval=TICK_INTERVAL)
    quality = QualityMonitor(
        service, interval=settings.stats_interval, observers=[metrics.observe_quality]
    )
    events.add(metrics.observer)
    events.add(_EndedObserver())
    if settings.webhook_urls:
        events.add(WebhookObserver(RelayWebhookSink(_notifier(link))))
    server = WorkerServer(
        index, settings, media, service, metrics, quality, sessions=session_dir, rooms=room_dir
    )
    server.link = link
    holder["server"] = server
    link.start()
    await media.start()
    if settle:
        settle_heap()

    # none of these keeps the tick running: a worker with no media sleeps
    unsubscribe = [
        *metrics.add_ticks(media, quality),
        media.add_tick(server.on_tick, keep_awake=False),
    ]
    link.notify(
        "ready",
        {
            "pid": os.getpid(),
            "mediaPort": media.port,
            "candidates": media.local_candidates(),
            "forwarding": media.forwarding,
        },
    )
    stop = asyncio.create_task(server.stopped.wait())
    lost = asyncio.create_task(link.closed.wait())
    try:
        await asyncio.wait({stop, lost}, return_when=asyncio.FIRST_COMPLETED)
        if lost.done():
            log.warning("worker %d: link to the front lost (%s); exiting", index, link.close_reason)
    finally:
        for task in (stop, lost):
            task.cancel()
        await service.close()
        for callback in unsubscribe:
            callback()
        await media.close()
        await link.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="zvonok-worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_json(sys.stdin.read())
    configure_logging(settings, worker=str(args.index))
    # The front drains and stops its workers; a terminal's Ctrl-C or a service manager's
    # SIGTERM reaches the whole process group, and must not end calls behind the front's back.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    asyncio.run(serve(args.index, settings, sock, settle=True))


if __name__ == "__main__":
    main()
