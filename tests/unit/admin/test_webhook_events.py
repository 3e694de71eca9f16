"""Webhook events across the worker link: JSON round-trip, and a worker's room events reaching
the front's HTTP senders with their ids (so receivers still de-duplicate)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from zvonok.admin.webhook_events import (
    WEBHOOK_NOTIFICATION,
    RelayWebhookSink,
    WebhookEvent,
    WebhookObserver,
    deliver_notification,
)
from zvonok.admin.webhooks import Webhooks
from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.events import RoomEvents
from zvonok.rooms.service import RoomService

from ..fakes import RecordingSink


def test_an_event_survives_json_with_its_id_and_timestamp() -> None:
    event = WebhookEvent(
        "track_published",
        "group:9",
        {"userId": "7", "sessionId": "s-7", "track": {"trackId": "t1", "kind": "video"}},
        timestamp=1_700_000_000.1234,
    )
    wire = json.loads(json.dumps(event.to_json()))
    back = WebhookEvent.from_json(wire)
    assert back.id == event.id and back.type == "track_published" and back.room == "group:9"
    assert back.data == event.data and back.timestamp == pytest.approx(1_700_000_000.123)
    assert back.to_json() == event.to_json()
    assert back.body() == event.body()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"type": "room_started", "room": "chat:1", "timestamp": 1.0}, "'id'"),
        ({"id": "evt_1", "type": "", "room": "chat:1", "timestamp": 1.0}, "'type'"),
        ({"id": "evt_1", "type": "room_started", "room": "chat:1", "timestamp": True}, "number"),
        ({"id": "evt_1", "type": "room_started", "room": 5, "timestamp": 1.0}, "'room'"),
    ],
)
def test_a_malformed_event_is_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebhookEvent.from_json(body)
    delivered: list[WebhookEvent] = []

    class Sink:
        def emit(self, event: WebhookEvent) -> None:
            delivered.append(event)

    assert deliver_notification(Sink(), body) is False and delivered == []


async def test_a_workers_room_events_reach_the_fronts_senders_with_their_ids() -> None:
    posted: list[dict[str, Any]] = []
    statuses = [500]  # the first POST fails: its retry must carry the same id

    def receiver(request: httpx.Request) -> httpx.Response:
        posted.append(json.loads(request.content))
        return httpx.Response(statuses.pop() if statuses else 200)

    front = Webhooks(
        ["http://127.0.0.1:9/h"], secret="k", backoff=0.01, transport=httpx.MockTransport(receiver)
    )
    front.start()
    sent: list[dict[str, Any]] = []

    def notify(method: str, params: dict[str, Any]) -> None:
        """The link: one-way, JSON on the wire, the front hands it to its senders."""
        assert method == WEBHOOK_NOTIFICATION
        sent.append(params)
        deliver_notification(front, json.loads(json.dumps(params)))

    media = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await media.start()
    rooms = RoomService(
        worker=media,
        sessions=LocalSessionDirectory(),
        rooms=LocalRoomDirectory(),
        ice_servers=[],
        events=RoomEvents([WebhookObserver(RelayWebhookSink(notify))]),
    )
    try:
        participant, _ = await rooms.join(
            RoomKey(RoomKind.CHAT, "1"), UserId("alice"), SessionId("s-a"), "1", RecordingSink()
        )
        await rooms.leave(participant, "leave")
    finally:
        await rooms.close()
        await media.close()
        await front.close()
    types = [p["type"] for p in sent]
    assert types == ["room_started", "participant_joined", "participant_left", "room_finished"]
    assert sent[2]["reason"] == "leave" and sent[1]["sessionId"] == "s-a"
    ids = [p["id"] for p in sent]
    assert [p["id"] for p in posted] == [ids[0], *ids]  # the retry: same id
    assert [p["type"] for p in posted[1:]] == types and posted[1:] == sent
