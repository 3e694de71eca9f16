"""Webhook events as values, and the room observer that makes them, wherever they are sent from.

Owns ``WebhookEvent`` (the JSON body: ``to_json`` / ``from_json``, so an event crosses the worker
link with its ``id`` and ``timestamp`` intact and receivers still de-duplicate by ``id``),
``WebhookSink`` (anything with ``emit(event)``: the front's HTTP ``Webhooks``, or a worker's
``RelayWebhookSink``), ``WebhookObserver`` (room events → ``WebhookEvent`` s handed to a sink),
and both ends of the link: ``RelayWebhookSink`` (a worker: each event becomes the one-way
notification ``webhook`` to the front) and ``deliver_notification`` (the front: that
notification → its sink). Stdlib only, so a worker process never loads httpx.
Imports ``rooms`` (types); never ``signaling``. Implements no RFC.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..rooms.events import BaseRoomObserver

if TYPE_CHECKING:
    from ..rooms.participant import Participant
    from ..rooms.room import PublishedEntry, Room

log = logging.getLogger("zvonok.admin.webhooks")
#: The worker → front notification that carries one webhook event (params: ``to_json()``).
WEBHOOK_NOTIFICATION = "webhook"
#: Keys of ``to_json`` that are the event's own fields, not its ``data``.
_OWN_KEYS = frozenset({"id", "type", "timestamp", "room", "roomKind", "roomId"})


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event: ``{"id", "type", "timestamp", "room", "roomKind", "roomId", ...}``."""

    type: str
    room: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: "evt_" + secrets.token_hex(12))
    timestamp: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        kind, _, room_id = self.room.partition(":")
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "timestamp": round(self.timestamp, 3),
            "room": self.room,
            "roomKind": kind,
            "roomId": room_id,
        }
        body.update(self.data)
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WebhookEvent:
        """The event ``to_json`` wrote (same ``id``, ``timestamp`` to the millisecond); raises
        ``ValueError`` on a body that is not one."""
        for name in ("id", "type", "room"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise ValueError(f"webhook event {name!r} must be a non-empty string")
        timestamp = body.get("timestamp")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            raise ValueError("webhook event 'timestamp' must be a number")
        data = {key: value for key, value in body.items() if key not in _OWN_KEYS}
        return cls(body["type"], body["room"], data, body["id"], float(timestamp))

    def body(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


class WebhookSink(Protocol):
    """Where events go; ``emit`` is called on the event loop and must never block."""

    def emit(self, event: WebhookEvent) -> None: ...


def _participant_data(participant: Participant) -> dict[str, Any]:
    return {"userId": participant.user_id, "sessionId": participant.session_id}


class WebhookObserver(BaseRoomObserver):
    """Room events → ``WebhookEvent`` s handed to ``sink.emit``."""

    def __init__(self, sink: WebhookSink) -> None:
        self._sink = sink

    def room_started(self, room: Room[Participant]) -> None:
        self._sink.emit(WebhookEvent("room_started", str(room.key)))

    def room_finished(self, room: Room[Participant]) -> None:
        self._sink.emit(WebhookEvent("room_finished", str(room.key)))

    def participant_joined(self, participant: Participant) -> None:
        data = _participant_data(participant)
        self._sink.emit(WebhookEvent("participant_joined", str(participant.room.key), data))

    def participant_left(self, participant: Participant, reason: str) -> None:
        data = {**_participant_data(participant), "reason": reason}
        self._sink.emit(WebhookEvent("participant_left", str(participant.room.key), data))

    def track_published(self, entry: PublishedEntry[Participant]) -> None:
        self._track("track_published", entry)

    def track_unpublished(self, entry: PublishedEntry[Participant]) -> None:
        self._track("track_unpublished", entry)

    def _track(self, kind: str, entry: PublishedEntry[Participant]) -> None:
        data = {
            **_participant_data(entry.publisher),
            "track": {"trackId": entry.track_id, "kind": entry.producer.kind},
        }
        self._sink.emit(WebhookEvent(kind, str(entry.publisher.room.key), data))


#: A worker's one-way message to the front: ``notify(method, params)``; must not block.
Notify = Callable[[str, dict[str, Any]], None]


class RelayWebhookSink:
    """A worker's sink: every event goes to the front as ``notify("webhook", event.to_json())``."""

    def __init__(self, notify: Notify) -> None:
        self._notify = notify

    def emit(self, event: WebhookEvent) -> None:
        self._notify(WEBHOOK_NOTIFICATION, event.to_json())


def deliver_notification(sink: WebhookSink, params: Mapping[str, Any]) -> bool:
    """The front: a worker's ``webhook`` notification → ``sink.emit``. A malformed one is
    logged and dropped (False)."""
    try:
        event = WebhookEvent.from_json(params)
    except ValueError as exc:
        log.warning("webhook notification from a worker dropped: %s", exc)
        return False
    sink.emit(event)
    return True
