"""A room: its participants, its media ``Router``, and which tracks each session should receive.

Owns the room's published-track registry (the spec's ``Room.published``: track id → remote track,
codec, and the per-subscriber local tracks) and the fan-out decision: every session receives every
track published by the *other* sessions. When the set changes, each affected participant is asked
to renegotiate (``Participant.request_sync``). Imports ``media``; from ``signaling`` only the
wire vocabulary (``signaling.messages``).

The bottom of ``rooms``: it sees its members only through ``Member`` and reports through
``TrackEvents`` (both narrow Protocols), so ``participant`` and ``events`` import this module and
not the other way round. ``Room`` and ``PublishedEntry`` are generic in the member type; the
server's rooms are ``Room[Participant]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ..ids import RoomKey, SessionId, UserId
from ..media.forwarding.producer import Producer
from ..media.forwarding.router import Router
from ..media.sdp.negotiation import PublishedTrack
from ..signaling.messages import ServerMessage


class Member(Protocol):
    """What a room needs of a member (``Participant`` satisfies it)."""

    @property
    def session_id(self) -> SessionId: ...

    @property
    def user_id(self) -> UserId: ...

    def send(self, message: ServerMessage) -> None: ...

    def request_sync(self) -> None:
        """Renegotiate: the set of tracks this member should receive changed."""
        ...


M = TypeVar("M", bound=Member)


@dataclass(slots=True)
class PublishedEntry(Generic[M]):
    """One published track of the room."""

    track_id: str
    producer: Producer
    publisher: M
    track: PublishedTrack


class TrackEvents(Protocol[M]):
    """The events a room and its members report (``events.RoomEvents`` satisfies it)."""

    def track_published(self, entry: PublishedEntry[M]) -> None: ...

    def track_unpublished(self, entry: PublishedEntry[M]) -> None: ...

    def connection_state(self, participant: M, previous: str, state: str) -> None: ...


class _NoEvents:
    """The events of a room built without observers (unit tests, tools): dropped."""

    def track_published(self, entry: object) -> None:
        return None

    def track_unpublished(self, entry: object) -> None:
        return None

    def connection_state(self, participant: object, previous: str, state: str) -> None:
        return None


class Room(Generic[M]):
    """Participants keyed by session id, plus the room's router and published tracks."""

    def __init__(
        self,
        key: RoomKey,
        *,
        router: Router,
        unsubscribe_tick: Callable[[], None],
        events: TrackEvents[M] | None = None,
    ):
        self.key = key
        self.events: TrackEvents[M] = events if events is not None else _NoEvents()
        #: Track ids an operator muted: their consumers stay paused (admin API).
        self.muted: set[str] = set()
        self.router = router
        self.participants: dict[SessionId, M] = {}
        self.published: dict[str, PublishedEntry[M]] = {}
        self._unsubscribe_tick = unsubscribe_tick
        self.closed = False
        #: Track ids a codec-steering pass must look at (``participant.schedule_steering``): a
        #: pass runs once per loop turn while this is not empty.
        self.steering_due: set[str] = set()
        #: The room's adaptive media (``rooms.adaptive.RoomAdaptation``), set by its creator.
        self.adaptation: object | None = None

    def __len__(self) -> int:
        return len(self.participants)

    def others(self, participant: M) -> list[M]:
        return [p for p in self.participants.values() if p is not participant]

    def broadcast(self, message: ServerMessage, exclude: M) -> None:
        for other in self.others(exclude):
            other.send(message)

    def tracks_for(self, participant: M) -> list[PublishedEntry[M]]:
        """What ``participant`` should receive: every live track of the other sessions."""
        return [
            entry
            for entry in self.published.values()
            if entry.publisher is not participant and not entry.producer.closed
        ]

    def publish(self, entry: PublishedEntry[M]) -> None:
        self.published[entry.track_id] = entry
        self.events.track_published(entry)
        self._resync(entry.publisher)

    def unpublish(self, track_id: str) -> None:
        entry = self.published.pop(track_id, None)
        if entry is None:
            return
        self.muted.discard(track_id)
        self.events.track_unpublished(entry)
        entry.producer.close()
        self._resync(entry.publisher)

    def _resync(self, changed: M) -> None:
        for other in self.others(changed):
            other.request_sync()

    def close(self) -> None:
        """Free everything; the room must be empty of live participants by now."""
        if self.closed:
            return
        self.closed = True
        self.published.clear()
        self._unsubscribe_tick()
        self.router.close()
