"""A room: its participants, its media ``Router``, and which tracks each session should receive.

Owns the room's published-track registry (the spec's ``Room.published``: track id → remote track,
codec, and the per-subscriber local tracks) and the fan-out decision: every session receives every
track published by the *other* sessions. When the set changes, each affected participant is asked
to renegotiate (``Participant.request_sync``). Imports ``media``; never ``signaling``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..ids import RoomKey, SessionId
from ..media.forwarding.producer import Producer
from ..media.forwarding.router import Router
from ..media.sdp.negotiation import PublishedTrack
from .events import NO_EVENTS, RoomEvents

if TYPE_CHECKING:
    from .participant import Participant


@dataclass(slots=True)
class PublishedEntry:
    """One published track of the room."""

    track_id: str
    producer: Producer
    publisher: Participant
    track: PublishedTrack


class Room:
    """Participants keyed by session id, plus the room's router and published tracks."""

    def __init__(
        self,
        key: RoomKey,
        *,
        router: Router,
        unsubscribe_tick: Callable[[], None],
        events: RoomEvents = NO_EVENTS,
    ):
        self.key = key
        self.events = events
        #: Track ids an operator muted: their consumers stay paused (admin API).
        self.muted: set[str] = set()
        self.router = router
        self.participants: dict[SessionId, Participant] = {}
        self.published: dict[str, PublishedEntry] = {}
        self._unsubscribe_tick = unsubscribe_tick
        self.closed = False

    def __len__(self) -> int:
        return len(self.participants)

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not participant]

    def roster(self, exclude: Participant | None = None) -> list[dict[str, Any]]:
        return [
            {"sessionId": p.session_id, "userId": p.user_id}
            for p in self.participants.values()
            if p is not exclude
        ]

    def broadcast(self, msg_type: str, payload: dict[str, Any], exclude: Participant) -> None:
        for other in self.others(exclude):
            other.send(msg_type, payload)

    def tracks_for(self, participant: Participant) -> list[PublishedEntry]:
        """What ``participant`` should receive: every live track of the other sessions."""
        return [
            entry
            for entry in self.published.values()
            if entry.publisher is not participant and not entry.producer.closed
        ]

    def publish(self, entry: PublishedEntry) -> None:
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

    def _resync(self, changed: Participant) -> None:
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
