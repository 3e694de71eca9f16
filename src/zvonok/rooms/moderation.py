"""Operator actions on live calls: kick a session, mute a published track, close a room.

Owns ``kick``, ``set_muted`` and ``close_room`` over a ``RoomService``; the admin API
(``zvonok.admin.api``) is their only caller. A kicked session is told (``error`` code
``kicked``), ended like a leave (the others get ``participant-left`` with reason ``kicked``) and
its socket closed with ``KICKED_CLOSE_CODE``. A muted track keeps arriving from its publisher but
every consumer of it is paused, so nothing is forwarded (new subscribers start paused too); the
whole room, publisher included, is told with a ``track-muted`` message. Closing a room does the
same as a kick to each of its sessions with code ``room-closed``. ``send_away`` is the
cluster's move of a room whose lease another node holds now: each session is told an error
(``room-moved``) and its socket closed, without a leave, so the client re-joins the room where it
lives. Imports ``rooms`` and the wire vocabulary (``signaling.messages``); never the rest of
``signaling``, nor ``admin``. Implements no RFC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ids import RoomKey, SessionId
from ..signaling.messages import Error, TrackMuted

if TYPE_CHECKING:
    from .participant import Participant
    from .service import RoomService

#: WebSocket close code after an operator kicked the session (docs/protocol.md).
KICKED_CLOSE_CODE = 4003
#: WebSocket close code after an operator closed the room.
ROOM_CLOSED_CLOSE_CODE = 4004


async def _end(
    service: RoomService, participant: Participant, code: str, message: str, close_code: int
) -> None:
    sink = participant.sink
    sink.send(Error(code, message))
    participant.log.info("ended by an operator (%s)", code)
    await service.leave(participant, code)
    sink.close(close_code, code)


async def kick(service: RoomService, session_id: str) -> bool:
    """End ``session_id`` now; False if no such live session."""
    participant = service.sessions.get(SessionId(session_id))
    if participant is None or participant.closed:
        return False
    await _end(
        service, participant, "kicked", "removed from the call by an operator", KICKED_CLOSE_CODE
    )
    return True


async def close_room(service: RoomService, key: RoomKey) -> int | None:
    """End every session of the room; how many were ended (None: no such room)."""
    room = service.rooms.get(key)
    if room is None:
        return None
    ended = 0
    for participant in list(room.participants.values()):
        if participant.closed:
            continue
        await _end(
            service,
            participant,
            "room-closed",
            "the call was closed by an operator",
            ROOM_CLOSED_CLOSE_CODE,
        )
        ended += 1
    return ended


def send_away(service: RoomService, key: RoomKey, code: str, message: str, close_code: int) -> int:
    """Tell every session of the room ``code`` and close its socket (the sessions stay for the
    resume grace, as after any drop); how many were told."""
    room = service.rooms.get(key)
    told = 0
    for participant in [] if room is None else list(room.participants.values()):
        if participant.closed:
            continue
        participant.sink.send(Error(code, message, retry_after_ms=0))
        participant.sink.close(close_code, code)
        told += 1
    return told


def set_muted(service: RoomService, session_id: str, track_id: str, muted: bool) -> bool | None:
    """Stop (or resume) forwarding one published track of ``session_id``.

    Returns None when the session or its track does not exist, else whether anything changed.
    """
    participant = service.sessions.get(SessionId(session_id))
    if participant is None or participant.closed or track_id not in participant.published.values():
        return None
    room = participant.room
    entry = room.published.get(track_id)
    if entry is None:
        return None
    if (track_id in room.muted) == muted:
        return False
    if muted:
        room.muted.add(track_id)
    else:
        room.muted.discard(track_id)
    # A subscriber fed from the track's backup stream (codec steering) is muted with it.
    backup = participant.backups.get(track_id)
    backups = list(backup.producer.consumers) if backup is not None else []
    for consumer in [*entry.producer.consumers, *backups]:
        if muted:
            consumer.pause()
        else:
            consumer.resume()
    message = TrackMuted(
        track_id, entry.producer.kind, participant.session_id, participant.user_id, muted
    )
    for member in list(room.participants.values()):
        member.send(message)
    participant.log.info("track %s %s by an operator", track_id, "muted" if muted else "unmuted")
    return True
