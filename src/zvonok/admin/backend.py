"""What the admin API reads and acts on, wherever the rooms live: one process or many workers.

Owns the ``AdminBackend`` Protocol (async, JSON-ready values: ``list_rooms``, ``get_room``,
``close_room``, ``get_session``, ``kick``, ``set_muted``) and its four implementations:

- ``LocalAdminBackend``: the rooms of this process (a ``RoomService`` and its ``QualityMonitor``),
  acting through ``rooms.moderation``;
- ``serve_admin``: a worker's side of the link, one RPC (``admin.<operation>``) → its local
  backend;
- ``RelayAdminBackend``: the front's side of the link to one worker, over its ``call``
  (``RelayedWorkers``: one per worker, following restarts);
- ``FanoutAdminBackend``: the front over every worker: the room list is every worker's rooms,
  each tagged ``"worker": "<id>"``; a room goes to the worker that holds it (``locate``, else
  each is asked); a session operation asks every worker. A worker that does not answer (error
  or ``timeout``) is named in ``"unavailableWorkers"`` of the listing, and an operation that
  found nothing while a worker was silent raises ``WorkerUnavailable`` (the API answers 503).

Imports ``rooms`` and ``ids``; never ``signaling``, ``media``, FastAPI or the link itself.
Implements no RFC.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..ids import RoomKey, SessionId
from ..rooms import moderation

if TYPE_CHECKING:
    from ..rooms.participant import Participant
    from ..rooms.quality import QualityMonitor
    from ..rooms.room import Room
    from ..rooms.service import RoomService

log = logging.getLogger("zvonok.admin")

#: The prefix of every admin RPC method on the worker link (``admin.list_rooms``, ...).
ADMIN_PREFIX = "admin."
#: How long ``FanoutAdminBackend`` waits for one worker before counting it unavailable.
WORKER_TIMEOUT = 5.0

#: The front's RPC to one worker: ``call(method, params)``; raises on failure or timeout.
Call = Callable[[str, dict[str, Any]], Awaitable[Any]]
_T = TypeVar("_T")


class WorkerUnavailable(Exception):
    """Nothing was found, and these workers did not answer: the thing may be on one of them."""

    def __init__(self, workers: list[str]) -> None:
        super().__init__(f"workers did not answer: {', '.join(workers)}")
        self.workers = workers


class AdminBackend(Protocol):
    """The live rooms and sessions the admin API shows and acts on. Values are JSON-ready."""

    async def list_rooms(self) -> dict[str, Any]:
        """``{"rooms": [room...], "sessions": int, "draining": bool}`` (+ fanout fields)."""
        ...

    async def get_room(self, key: RoomKey) -> dict[str, Any] | None:
        """One room's dict, or None if no such live room."""
        ...

    async def close_room(self, key: RoomKey) -> int | None:
        """End every session of the room: how many ended (None: no such room)."""
        ...

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        """One session's dict with its ``room``, or None."""
        ...

    async def kick(self, session_id: str) -> bool:
        """End the session; False if no such live session."""
        ...

    async def set_muted(self, session_id: str, track_id: str, muted: bool) -> bool | None:
        """Mute/unmute a published track: whether it changed; None if no such session/track."""
        ...


# --- one process -------------------------------------------------------------------------------


def _participant(participant: Participant, quality: QualityMonitor) -> dict[str, Any]:
    room = participant.room
    stats = quality.latest.get(participant.session_id)
    if stats is None:
        stats = quality.measure(participant, 0.0)
    return {
        "sessionId": participant.session_id,
        "userId": participant.user_id,
        "state": participant.state.value,
        "tracks": [
            {
                "trackId": track_id,
                "mid": mid,
                "kind": entry.producer.kind,
                "muted": track_id in room.muted,
            }
            for mid, track_id in participant.published.items()
            if (entry := room.published.get(track_id)) is not None
        ],
        "receiving": sorted(participant.consumers),
        "quality": stats,
    }


def _room(room: Room[Participant], quality: QualityMonitor) -> dict[str, Any]:
    return {
        "room": str(room.key),
        "kind": room.key.kind.value,
        "id": room.key.id,
        "participants": [_participant(p, quality) for p in room.participants.values()],
        "tracks": len(room.published),
    }


class LocalAdminBackend:
    """The rooms of this process."""

    def __init__(self, rooms: RoomService, quality: QualityMonitor) -> None:
        self._rooms = rooms
        self._quality = quality

    async def list_rooms(self) -> dict[str, Any]:
        return {
            "rooms": [_room(room, self._quality) for room in list(self._rooms.rooms.values())],
            "sessions": len(self._rooms.sessions),
            "draining": self._rooms.closing or self._rooms.draining,
        }

    async def get_room(self, key: RoomKey) -> dict[str, Any] | None:
        found = self._rooms.rooms.get(key)
        return None if found is None else _room(found, self._quality)

    async def close_room(self, key: RoomKey) -> int | None:
        return await moderation.close_room(self._rooms, key)

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        participant = self._rooms.sessions.get(SessionId(session_id))
        if participant is None:
            return None
        return {"room": str(participant.room.key), **_participant(participant, self._quality)}

    async def kick(self, session_id: str) -> bool:
        return await moderation.kick(self._rooms, session_id)

    async def set_muted(self, session_id: str, track_id: str, muted: bool) -> bool | None:
        return moderation.set_muted(self._rooms, session_id, track_id, muted)


# --- the link: worker side and front side ------------------------------------------------------


def _str(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        raise ValueError(f"admin RPC parameter {name!r} must be a string")
    return value


async def serve_admin(backend: AdminBackend, method: str, params: Mapping[str, Any]) -> Any:
    """A worker answers one admin RPC from the front with its (local) backend.

    ``method`` is ``admin.<operation>``; raises ``ValueError`` for an unknown method or a
    malformed parameter (the link reports it to the caller as a failure).
    """
    match method.removeprefix(ADMIN_PREFIX) if method.startswith(ADMIN_PREFIX) else "":
        case "list_rooms":
            return await backend.list_rooms()
        case "get_room":
            return await backend.get_room(RoomKey.parse(_str(params, "room")))
        case "close_room":
            return await backend.close_room(RoomKey.parse(_str(params, "room")))
        case "get_session":
            return await backend.get_session(_str(params, "sessionId"))
        case "kick":
            return await backend.kick(_str(params, "sessionId"))
        case "set_muted":
            muted = params.get("muted")
            if not isinstance(muted, bool):
                raise ValueError("admin RPC parameter 'muted' must be a boolean")
            return await backend.set_muted(
                _str(params, "sessionId"), _str(params, "trackId"), muted
            )
    raise ValueError(f"unknown admin RPC method {method!r}")


def _expect(value: Any, types: type | tuple[type, ...], method: str) -> Any:
    if value is not None and not isinstance(value, types):
        raise ValueError(f"admin RPC {method}: unexpected reply {type(value).__name__}")
    return value


class RelayAdminBackend:
    """One worker's rooms, seen from the front through the link's ``call``."""

    def __init__(self, call: Call) -> None:
        self._call = call

    async def _ask(self, operation: str, params: dict[str, Any]) -> Any:
        return await self._call(ADMIN_PREFIX + operation, params)

    async def list_rooms(self) -> dict[str, Any]:
        reply = await self._ask("list_rooms", {})
        rooms = reply.get("rooms") if isinstance(reply, dict) else None
        if not isinstance(rooms, list) or not all(isinstance(room, dict) for room in rooms):
            raise ValueError("admin RPC list_rooms: unexpected reply")
        listing: dict[str, Any] = reply
        return listing

    async def get_room(self, key: RoomKey) -> dict[str, Any] | None:
        reply: dict[str, Any] | None = _expect(
            await self._ask("get_room", {"room": str(key)}), dict, "get_room"
        )
        return reply

    async def close_room(self, key: RoomKey) -> int | None:
        reply = _expect(await self._ask("close_room", {"room": str(key)}), int, "close_room")
        return None if reply is None else int(reply)

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        reply: dict[str, Any] | None = _expect(
            await self._ask("get_session", {"sessionId": session_id}), dict, "get_session"
        )
        return reply

    async def kick(self, session_id: str) -> bool:
        return bool(_expect(await self._ask("kick", {"sessionId": session_id}), bool, "kick"))

    async def set_muted(self, session_id: str, track_id: str, muted: bool) -> bool | None:
        params = {"sessionId": session_id, "trackId": track_id, "muted": muted}
        reply: bool | None = _expect(await self._ask("set_muted", params), bool, "set_muted")
        return reply


class RelayedWorkers(Mapping[str, AdminBackend]):
    """A live ``{worker id: RelayAdminBackend}`` over ``calls()``, the current ``{worker id:
    call}``: read again on every access, so a restarted worker's new link is used at once."""

    def __init__(self, calls: Callable[[], Mapping[str, Call]]) -> None:
        self._calls = calls

    def __getitem__(self, worker: str) -> AdminBackend:
        return RelayAdminBackend(self._calls()[worker])

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._calls()))

    def __len__(self) -> int:
        return len(self._calls())


# --- the front over every worker ---------------------------------------------------------------


class FanoutAdminBackend:
    """Every worker's rooms as one node. ``workers`` may change between calls (restarts)."""

    def __init__(
        self,
        workers: Mapping[str, AdminBackend],
        locate: Callable[[RoomKey], str | None] | None = None,
        *,
        timeout: float = WORKER_TIMEOUT,
    ) -> None:
        self._workers = workers
        self._locate = locate
        self._timeout = timeout

    async def _each(
        self,
        ask: Callable[[AdminBackend], Awaitable[_T]],
        only: str | None = None,
    ) -> tuple[list[tuple[str, _T]], list[str]]:
        """Ask every worker (or ``only`` that one) at once: (worker, reply) in worker order, and
        the workers that failed or timed out."""
        workers = [(w, b) for w, b in list(self._workers.items()) if only is None or w == only]
        replies = await asyncio.gather(
            *(asyncio.wait_for(ask(backend), self._timeout) for _, backend in workers),
            return_exceptions=True,
        )
        answered: list[tuple[str, _T]] = []
        failed: list[str] = []
        for (worker, _), reply in zip(workers, replies, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, Exception):  # CancelledError & co: not a worker fault
                    raise reply
                log.warning("admin: worker %s did not answer: %r", worker, reply)
                failed.append(worker)
            else:
                answered.append((worker, reply))
        return answered, failed

    def _owner(self, key: RoomKey) -> str | None:
        worker = self._locate(key) if self._locate is not None else None
        return worker if worker is not None and worker in self._workers else None

    async def list_rooms(self) -> dict[str, Any]:
        answered, failed = await self._each(lambda backend: backend.list_rooms())
        rooms: list[dict[str, Any]] = []
        sessions = 0
        draining = False
        for worker, listing in answered:
            rooms.extend({**room, "worker": worker} for room in listing["rooms"])
            sessions += int(listing.get("sessions", 0))
            draining = draining or bool(listing.get("draining", False))
        return {
            "rooms": rooms,
            "sessions": sessions,
            "draining": draining,
            "unavailableWorkers": failed,
        }

    async def get_room(self, key: RoomKey) -> dict[str, Any] | None:
        answered, failed = await self._each(lambda b: b.get_room(key), self._owner(key))
        for worker, room in answered:
            if room is not None:
                return {**room, "worker": worker}
        if failed:
            raise WorkerUnavailable(failed)
        return None

    async def close_room(self, key: RoomKey) -> int | None:
        answered, failed = await self._each(lambda b: b.close_room(key), self._owner(key))
        found = [ended for _, ended in answered if ended is not None]
        if found:
            return sum(found)
        if failed:
            raise WorkerUnavailable(failed)
        return None

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        answered, failed = await self._each(lambda b: b.get_session(session_id))
        for worker, session in answered:
            if session is not None:
                return {**session, "worker": worker}
        if failed:
            raise WorkerUnavailable(failed)
        return None

    async def kick(self, session_id: str) -> bool:
        answered, failed = await self._each(lambda b: b.kick(session_id))
        if any(kicked for _, kicked in answered):
            return True
        if failed:
            raise WorkerUnavailable(failed)
        return False

    async def set_muted(self, session_id: str, track_id: str, muted: bool) -> bool | None:
        answered, failed = await self._each(lambda b: b.set_muted(session_id, track_id, muted))
        found = [changed for _, changed in answered if changed is not None]
        if found:
            return any(found)
        if failed:
            raise WorkerUnavailable(failed)
        return None
