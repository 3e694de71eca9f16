"""Webhook signing, retries, ordering and the bounded queue, against httpx's MockTransport."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import httpx

from zvonok.admin.webhooks import WebhookEvent, Webhooks, sign, verify


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", body) == "v1=" + expected


def test_verify_refuses_tampering_wrong_secret_and_stale_or_bad_timestamps() -> None:
    body = b'{"id":"evt_1"}'
    good = sign("s3cret", "1000", body)
    assert verify("s3cret", "1000", body, good, now=1010)
    assert not verify("s3cret", "1000", body + b" ", good, now=1010)
    assert not verify("other", "1000", body, good, now=1010)
    assert not verify("s3cret", "1000", body, good, now=2000)
    assert not verify("s3cret", "soon", body, good, now=1010)


def test_event_json_names_the_room_and_carries_the_data() -> None:
    event = WebhookEvent("participant_left", "chat:42", {"userId": "7", "reason": "leave"})
    body = json.loads(event.body())
    assert body["id"].startswith("evt_") and body["type"] == "participant_left"
    assert (body["room"], body["roomKind"], body["roomId"]) == ("chat:42", "chat", "42")
    assert body["userId"] == "7" and body["reason"] == "leave"
    assert isinstance(body["timestamp"], float)


class Script:
    """Answers requests with the given statuses in turn (then 200), recording them."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status)

    def ids(self) -> list[str]:
        return [json.loads(r.content)["id"] for r in self.requests]


def hooks(script: Script, **kwargs: object) -> Webhooks:
    options: dict[str, object] = {"secret": "k", "backoff": 0.01, "backoff_max": 0.02}
    options.update(kwargs)
    return Webhooks(["http://127.0.0.1:9/h"], transport=httpx.MockTransport(script), **options)  # type: ignore[arg-type]


async def test_retries_with_the_same_id_and_keeps_the_order() -> None:
    script = Script(500, 503)
    sender = hooks(script)
    sender.start()
    first, second = WebhookEvent("room_started", "chat:1"), WebhookEvent("room_finished", "chat:1")
    sender.emit(first)
    sender.emit(second)
    await sender.close()
    assert script.ids() == [first.id, first.id, first.id, second.id]
    request = script.requests[-1]
    stamp = request.headers["X-Zvonok-Timestamp"]
    assert request.headers["X-Zvonok-Signature"] == sign("k", stamp, request.content)
    assert request.headers["X-Zvonok-Event"] == "room_finished"


async def test_gives_up_after_max_attempts_and_on_a_client_error() -> None:
    script = Script(500, 500, 400)
    sender = hooks(script, max_attempts=2)
    sender.start()
    a, b = WebhookEvent("room_started", "chat:1"), WebhookEvent("room_started", "chat:2")
    sender.emit(a)
    sender.emit(b)
    await sender.close()
    assert script.ids() == [a.id, a.id, b.id]


async def test_unsigned_without_a_secret() -> None:
    script = Script()
    sender = hooks(script, secret=None)
    sender.start()
    sender.emit(WebhookEvent("room_started", "chat:1"))
    await sender.close()
    assert "X-Zvonok-Signature" not in script.requests[0].headers


async def test_a_full_queue_drops_new_events_without_blocking() -> None:
    script = Script()
    sender = hooks(script, queue_size=2)
    events = [WebhookEvent("room_started", f"chat:{i}") for i in range(5)]
    for event in events:
        sender.emit(event)  # no sender task yet: nothing is consumed
    assert sender.queue_depth() == 2
    sender.start()
    await sender.close()
    assert script.ids() == [events[0].id, events[1].id]


async def test_close_cancels_a_sender_stuck_on_a_dead_receiver() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    sender = Webhooks(
        ["http://127.0.0.1:9/h"], secret="k", backoff=5.0, transport=httpx.MockTransport(hang)
    )
    sender.start()
    sender.emit(WebhookEvent("room_started", "chat:1"))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(sender.close(), 5)
