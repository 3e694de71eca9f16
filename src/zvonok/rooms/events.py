"""Room lifecycle events: what the rooms layer tells observers (webhooks, metrics).

Owns ``RoomObserver`` (the Protocol an observer implements; every method optional through
``BaseRoomObserver``) and ``RoomEvents``, the dispatcher the rooms layer calls: ``room_started``,
``room_finished``, ``participant_joined``, ``participant_left``, ``track_published``,
``track_unpublished``, plus two internal hooks that are not webhooks — ``session_closing`` (a
session's media is about to be freed: read its final counters now) and ``connection_state``.
Observers run synchronously on the event loop and must not block: an observer that raises is
logged and skipped (mediasoup's ``safeEmit``), so a broken observer never breaks a call.
Imports ``room`` and ``participant`` for their types (they never import this module: a room
reports through ``room.TrackEvents``); never ``signaling``, ``media`` or ``admin``.
Implements no RFC.
"""

from __future__ import annotations

import logging
from typing import Protocol

from .participant import Participant
from .room import PublishedEntry, Room

log = logging.getLogger("zvonok.rooms.events")


class RoomObserver(Protocol):
    """What an observer of rooms receives. Called on the event loop; must return quickly."""

    def room_started(self, room: Room[Participant]) -> None: ...
    def room_finished(self, room: Room[Participant]) -> None: ...
    def participant_joined(self, participant: Participant) -> None: ...
    def participant_left(self, participant: Participant, reason: str) -> None: ...
    def track_published(self, entry: PublishedEntry[Participant]) -> None: ...
    def track_unpublished(self, entry: PublishedEntry[Participant]) -> None: ...
    def session_closing(self, participant: Participant) -> None: ...
    def connection_state(self, participant: Participant, previous: str, state: str) -> None: ...


class BaseRoomObserver:
    """An observer that ignores everything; subclasses override what they need."""

    def room_started(self, room: Room[Participant]) -> None:
        return None

    def room_finished(self, room: Room[Participant]) -> None:
        return None

    def participant_joined(self, participant: Participant) -> None:
        return None

    def participant_left(self, participant: Participant, reason: str) -> None:
        return None

    def track_published(self, entry: PublishedEntry[Participant]) -> None:
        return None

    def track_unpublished(self, entry: PublishedEntry[Participant]) -> None:
        return None

    def session_closing(self, participant: Participant) -> None:
        return None

    def connection_state(self, participant: Participant, previous: str, state: str) -> None:
        return None


class RoomEvents(BaseRoomObserver):
    """Fans every event out to its observers; an observer that raises is logged and skipped."""

    def __init__(self, observers: list[RoomObserver] | None = None) -> None:
        self.observers: list[RoomObserver] = list(observers or [])

    def add(self, observer: RoomObserver) -> None:
        self.observers.append(observer)

    def _each(self, name: str, *args: object) -> None:
        for observer in self.observers:
            try:
                getattr(observer, name)(*args)
            except Exception:
                log.exception("room observer %r failed on %s", observer, name)

    def room_started(self, room: Room[Participant]) -> None:
        self._each("room_started", room)

    def room_finished(self, room: Room[Participant]) -> None:
        self._each("room_finished", room)

    def participant_joined(self, participant: Participant) -> None:
        self._each("participant_joined", participant)

    def participant_left(self, participant: Participant, reason: str) -> None:
        self._each("participant_left", participant, reason)

    def track_published(self, entry: PublishedEntry[Participant]) -> None:
        self._each("track_published", entry)

    def track_unpublished(self, entry: PublishedEntry[Participant]) -> None:
        self._each("track_unpublished", entry)

    def session_closing(self, participant: Participant) -> None:
        self._each("session_closing", participant)

    def connection_state(self, participant: Participant, previous: str, state: str) -> None:
        self._each("connection_state", participant, previous, state)
