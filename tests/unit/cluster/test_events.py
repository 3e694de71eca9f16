"""The event bus's parts that need no Redis: the bounded outbox (drop oldest, counted, logged
once per interval; commits by sequence stay right across drops), the bounded recent-id set,
and ``LocalEventBus`` handing each event straight to the sender (shared design ``cluster.md``
§2 ``EventBus``, §4 "bounded local outbox")."""

from __future__ import annotations

import asyncio
import logging

import pytest

from zvonok.admin.webhook_events import WebhookEvent, WebhookObserver
from zvonok.cluster.events import EventBus, LocalEventBus, Outbox, RecentIds
from zvonok.cluster.redis_events import _stop


def test_outbox_keeps_order_and_commits_up_to_a_sequence() -> None:
    box: Outbox[str] = Outbox(10)
    for item in "abcde":
        box.put(item)
    batch = box.peek(3)
    assert [item for _, item in batch] == ["a", "b", "c"]
    assert len(box) == 5  # peek leaves them in place
    box.commit(batch[-1][0])
    assert [item for _, item in box.peek(10)] == ["d", "e"]
    box.commit(10**9)
    assert len(box) == 0


def test_a_full_outbox_drops_the_oldest_counts_and_warns_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    drops: list[int] = []
    box: Outbox[int] = Outbox(3, on_drop=lambda: drops.append(1), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="zvonok.cluster.events"):
        for i in range(10):
            box.put(i)
        now[0] = 60.0
        box.put(10)
    assert [item for _, item in box.peek(10)] == [8, 9, 10]
    assert box.dropped == 8 and len(drops) == 8
    warnings = [r for r in caplog.records if "full" in r.getMessage()]
    assert len(warnings) == 2  # the first drop, then the one after the interval
    assert "8 dropped so far" in warnings[-1].getMessage()


def test_commit_after_drops_removes_only_what_was_written() -> None:
    """The writer peeked 0..2 and wrote them; meanwhile the full outbox dropped 0..3 and took
    4..6. Committing sequence 2 must keep 4..6."""
    box: Outbox[int] = Outbox(3)
    for i in range(3):
        box.put(i)
    written = box.peek(3)
    for i in range(3, 7):
        box.put(i)
    box.commit(written[-1][0])
    assert [item for _, item in box.peek(10)] == [4, 5, 6]


async def test_outbox_wait_and_drained() -> None:
    box: Outbox[str] = Outbox(2)
    waiter = asyncio.create_task(box.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.put("x")
    await asyncio.wait_for(waiter, 1)
    drained = asyncio.create_task(box.drained())
    await asyncio.sleep(0)
    assert not drained.done()
    box.commit(box.peek(1)[0][0])
    await asyncio.wait_for(drained, 1)


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Outbox(0)
    with pytest.raises(ValueError):
        RecentIds(0)


def test_recent_ids_forget_the_oldest_first() -> None:
    recent = RecentIds(3)
    for event_id in ("a", "b", "c"):
        recent.add(event_id)
    recent.add("a")  # seen again: now the newest
    recent.add("d")
    assert "b" not in recent
    assert {"a", "c", "d"} == {i for i in "abcd" if i in recent}
    assert len(recent) == 3


def test_local_bus_hands_every_event_straight_to_the_sender() -> None:
    sent: list[WebhookEvent] = []
    bus: EventBus[WebhookEvent] = LocalEventBus(sent.append)
    first = WebhookEvent("room_started", "chat:1")
    bus.publish(first)
    WebhookObserver(bus)  # a bus is a webhook sink
    bus.emit(WebhookEvent("room_finished", "chat:1"))
    assert [e.type for e in sent] == ["room_started", "room_finished"]
    assert sent[0] is first and bus.depth() == 0


async def test_stopping_a_loop_survives_a_swallowed_cancellation() -> None:
    """Python 3.11's ``asyncio.wait_for`` can swallow a cancellation that lands as its operation
    completes; the bus cancels its loops again until they have ended."""
    swallowed = 0

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what the race in wait_for looks like from outside

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(_stop([task]), 2)
    assert task.cancelled() and swallowed == 1
