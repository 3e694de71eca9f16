"""Webhooks delivered once cluster-wide: ``RedisEventBus`` on a real ``redis-server`` with a real
HTTP receiver on 127.0.0.1 (shared design ``cluster.md`` §2 ``EventBus``, §3 ``zv:events``, §4
"events: bounded local outbox"; issue 14).

Several "nodes" are several buses in this process, each with its own connection pool, breaker,
webhook sender and consumer name, on one server, at timing ×0.25 (claim age 15 s). Checked: 200
events published from 2 and 3 nodes reach the receiver exactly once (signed, with the id in the
header and the body, the room's epoch when known); a consumer killed between a POST and its ack
leaves its entries pending, another node claims them after the claim age and delivers them, the
interrupted one again under the same id (at least once); a Redis frozen (``SIGSTOP``) for 3 s
while nodes publish loses nothing and duplicates nothing; a Redis stopped outright keeps the
events in each node's outbox, whose bound drops the oldest, and the rest go out once it is back;
a node's bus built on its ``RedisCluster`` stamps the epoch of the rooms the node holds; two
``zvonok serve`` nodes post a real call's webhooks once each.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.asyncio import Redis

from zvonok.admin.webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookEvent,
    Webhooks,
    verify,
)
from zvonok.cluster.base import Claimed
from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.health import RedisClusterHealth
from zvonok.cluster.keys import Keys
from zvonok.cluster.node import RedisCluster
from zvonok.cluster.redis_events import CLAIM_IDLE, GROUP, RedisEventBus, redis_event_bus
from zvonok.ids import RoomKey

from ..harness.aiortc_peer import AiortcPeers
from ..harness.redis import RedisServer
from ..harness.server import ServerFactory
from ..harness.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

TIMING = 0.25
SECRET = "s3cret"
EVENTS = Keys().events


@dataclass
class Node:
    name: str
    client: Redis
    health: RedisClusterHealth
    webhooks: Webhooks
    bus: RedisEventBus
    #: Event ids this node's sender finished delivering.
    delivered: list[str] = field(default_factory=list)


Wrap = Callable[[Node, Mapping[str, Any]], Awaitable[None]]


class Cluster:
    """Nodes built on one Redis and one receiver; ``close`` stops them all."""

    def __init__(self, redis: RedisServer, receiver: WebhookReceiver) -> None:
        self.redis = redis
        self.receiver = receiver
        self.nodes: list[Node] = []

    def node(
        self,
        name: str,
        *,
        consume: bool = True,
        outbox_size: int = 10_000,
        wrap: Wrap | None = None,
        epoch_of: Callable[[str], int | None] | None = None,
    ) -> Node:
        client = connect(RedisTarget(url=self.redis.url))
        health = RedisClusterHealth()
        webhooks = Webhooks(
            [self.receiver.url], secret=SECRET, timeout=2.0, backoff=0.05, backoff_max=0.2
        )
        holder: list[Node] = []

        async def deliver(body: Mapping[str, Any]) -> None:
            if wrap is not None:
                await wrap(holder[0], body)
            else:
                await send(holder[0], body)

        bus = RedisEventBus(
            client,
            health,
            node_id=name,
            deliver=deliver if consume else None,
            timing=TIMING,
            outbox_size=outbox_size,
            epoch_of=epoch_of,
        )
        node = Node(name, client, health, webhooks, bus)
        holder.append(node)
        bus.start()
        self.nodes.append(node)
        return node

    async def close(self) -> None:
        for node in self.nodes:
            await node.bus.close(flush_timeout=0.5)
            await node.webhooks.close()
            await node.client.aclose()


async def send(node: Node, body: Mapping[str, Any]) -> None:
    """The real delivery: the node's webhook sender, signing and retrying."""
    await node.webhooks.deliver(WebhookEvent.from_json(body))
    node.delivered.append(str(body["id"]))


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def cluster(redis_server: RedisServer, receiver: WebhookReceiver) -> AsyncIterator[Cluster]:
    nodes = Cluster(redis_server, receiver)
    try:
        yield nodes
    finally:
        if redis_server._proc is not None:
            os.kill(redis_server.pid, signal.SIGCONT)
        else:
            redis_server.start()
        await nodes.close()


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def event(i: int, room: str = "group:r1") -> WebhookEvent:
    return WebhookEvent("participant_joined", room, {"userId": f"u{i}", "seq": i})


def received_ids(receiver: WebhookReceiver) -> Counter[str]:
    return Counter(str(body["id"]) for body in receiver.accepted())


async def pending(client: Redis) -> dict[str, int]:
    """Pending entries per consumer of the group."""
    info: Any = await client.xpending(EVENTS, GROUP)
    return {str(c["name"]): int(c["pending"]) for c in info["consumers"]}


@pytest.mark.parametrize("count", [2, 3])
async def test_events_from_several_nodes_reach_the_receiver_exactly_once(
    cluster: Cluster, receiver: WebhookReceiver, count: int
) -> None:
    nodes = [
        cluster.node(f"n{i + 1}", epoch_of=(lambda room: 7 if room == "group:r1" else None))
        for i in range(count)
    ]
    published = []
    for i in range(200):
        sent = event(i, "group:r1" if i % 2 else "chat:c1")
        nodes[i % count].bus.publish(sent)
        published.append(sent.id)
        if i % 20 == 0:
            await asyncio.sleep(0.01)
    await until(lambda: len(receiver.accepted()) >= 200, 30, "200 deliveries")
    await asyncio.sleep(1.0)  # time for a duplicate to show up
    ids = received_ids(receiver)
    assert set(ids) == set(published)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    assert sum(len(n.delivered) for n in nodes) == 200
    assert sum(n.bus.written for n in nodes) == 200
    assert await nodes[0].client.xlen(EVENTS) == 200
    assert sum((await pending(nodes[0].client)).values()) == 0  # everything acknowledged
    for delivery in receiver.deliveries:
        body = delivery.event
        assert delivery.headers[ID_HEADER.lower()] == body["id"]
        stamp = delivery.headers[TIMESTAMP_HEADER.lower()]
        assert verify(SECRET, stamp, delivery.body, delivery.headers[SIGNATURE_HEADER.lower()])
        assert body.get("epoch") == (7 if body["room"] == "group:r1" else None)


async def test_a_killed_consumer_s_entries_are_claimed_and_delivered_by_another(
    cluster: Cluster, receiver: WebhookReceiver
) -> None:
    """n1 POSTs its 20th event, then hangs before the ack and is killed (its tasks cancelled):
    n2 claims n1's pending entries once idle for the claim age and delivers them; the 20th goes
    out a second time under the same id, nothing else twice."""
    stuck = asyncio.Event()
    never = asyncio.Event()

    async def hang_after_20(node: Node, body: Mapping[str, Any]) -> None:
        await send(node, body)
        if len(node.delivered) == 20:
            stuck.set()
            await never.wait()

    first = cluster.node("n1", wrap=hang_after_20)
    published = []
    for i in range(100):
        sent = event(i)
        first.bus.publish(sent)
        published.append(sent.id)
    await asyncio.wait_for(stuck.wait(), 10)
    interrupted = first.delivered[-1]
    await first.bus.close()
    held = (await pending(first.client)).get("n1", 0)
    assert held > 1  # the interrupted entry and the rest of its batch
    started = time.monotonic()
    second = cluster.node("n2")
    await until(lambda: set(received_ids(receiver)) == set(published), 60, "every event")
    waited = time.monotonic() - started
    await asyncio.sleep(0.5)
    ids = received_ids(receiver)
    assert ids[interrupted] == 2  # at least once: sent by n1, then again by n2, same id
    assert max(n for i, n in ids.items() if i != interrupted) == 1
    assert second.bus.claimed >= held
    assert waited >= CLAIM_IDLE * TIMING * 0.9  # not before the claim age
    assert sum((await pending(second.client)).values()) == 0


async def test_a_frozen_redis_loses_and_duplicates_nothing(
    cluster: Cluster, receiver: WebhookReceiver, redis_server: RedisServer
) -> None:
    """Two nodes publish 200 events over ~4 s; Redis is frozen (SIGSTOP) for 3 s meanwhile: the
    outboxes hold the events, the breakers open, and after SIGCONT every event arrives once."""
    nodes = [cluster.node("n1"), cluster.node("n2")]
    published: list[str] = []
    deepest = 0

    async def publish() -> None:
        nonlocal deepest
        for i in range(200):
            sent = event(i)
            nodes[i % 2].bus.publish(sent)
            published.append(sent.id)
            deepest = max(deepest, sum(n.bus.depth() for n in nodes))
            await asyncio.sleep(0.02)

    publisher = asyncio.create_task(publish())
    await asyncio.sleep(1.0)
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(3.0)
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    await publisher
    await until(lambda: len(received_ids(receiver)) >= 200, 30, "200 events")
    await asyncio.sleep(1.0)
    ids = received_ids(receiver)
    assert set(ids) == set(published)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    assert all(n.health.failures > 0 for n in nodes)  # both saw the outage
    assert deepest > 20  # events waited in the outboxes
    assert sum(n.bus.dropped for n in nodes) == 0


async def test_the_outbox_bound_drops_the_oldest_while_redis_is_down(
    cluster: Cluster, receiver: WebhookReceiver, redis_server: RedisServer
) -> None:
    """Redis stopped: a node with a 20-event outbox publishes 50; it keeps the newest 20 and
    counts 30 dropped. Redis started again (empty): exactly those 20 are delivered."""
    redis_server.stop()
    publisher = cluster.node("n1", consume=False, outbox_size=20)
    cluster.node("n2")
    published = []
    for i in range(10):
        sent = event(i)
        publisher.bus.publish(sent)
        published.append(sent.id)
    await asyncio.sleep(1.0)  # the writer tries and fails
    assert publisher.health.failures > 0
    for i in range(10, 50):
        sent = event(i)
        publisher.bus.publish(sent)
        published.append(sent.id)
    assert publisher.bus.depth() == 20 and publisher.bus.dropped == 30
    redis_server.start()
    await until(lambda: len(received_ids(receiver)) >= 20, 20, "the 20 kept events")
    await asyncio.sleep(1.0)
    ids = received_ids(receiver)
    assert sorted(ids) == sorted(published[30:]) and max(ids.values()) == 1
    assert publisher.bus.depth() == 0


async def test_a_node_s_bus_stamps_the_epoch_of_the_rooms_it_holds(
    redis_server: RedisServer, receiver: WebhookReceiver
) -> None:
    """``redis_event_bus`` on a started ``RedisCluster`` (what ``zvonok serve`` builds): an
    event of a room the node claimed carries the claim's epoch (§4 "Fencing"), an event of a
    room it does not hold carries none."""
    node = RedisCluster(connect(RedisTarget(url=redis_server.url)), node_id="n1", timing=TIMING)
    webhooks = Webhooks([receiver.url], secret=SECRET)

    async def deliver(body: Mapping[str, Any]) -> None:
        await webhooks.deliver(WebhookEvent.from_json(body))

    await node.start()
    bus = redis_event_bus(node, deliver, timing=TIMING)
    bus.start()
    try:
        claim = await node.rooms.claim_lease(RoomKey.parse("group:held"))
        assert isinstance(claim, Claimed)
        bus.publish(event(1, "group:held"))
        bus.publish(event(2, "group:elsewhere"))
        await until(lambda: len(receiver.accepted()) >= 2, 10, "2 events")
        epochs = {body["room"]: body.get("epoch") for body in receiver.accepted()}
        assert epochs == {"group:held": claim.epoch, "group:elsewhere": None}
    finally:
        await bus.close()
        await webhooks.close()
        await node.close()


@pytest.mark.parametrize("workers", [1, 2])
async def test_two_serve_nodes_post_a_call_s_webhooks_once(
    redis_server: RedisServer,
    receiver: WebhookReceiver,
    zvonok_server_factory: ServerFactory,
    aiortc_peers: AiortcPeers,
    workers: int,
) -> None:
    """Two ``zvonok serve`` nodes on one Redis, both with the receiver in ``webhook_urls``: a
    call on the first one yields its events once each (both nodes consume the stream). With 2
    media workers the events cross the worker link to the front's bus first."""
    env = {
        "ZVONOK_CLUSTER_BACKEND": "redis",
        "ZVONOK_REDIS_URL": redis_server.url,
        "ZVONOK_CLUSTER_TIMING": str(TIMING),
        "ZVONOK_WEBHOOK_URLS": json.dumps([receiver.url]),
        "ZVONOK_WEBHOOK_SECRET": SECRET,
    }
    first = zvonok_server_factory.start(
        env={**env, "ZVONOK_NODE_ID": "n1", "ZVONOK_WORKERS": str(workers)}
    )
    zvonok_server_factory.start(env={**env, "ZVONOK_NODE_ID": "n2"})
    chat = first.create_chat(["alice", "bob"])
    alice = await aiortc_peers.open(first, user="alice", room=chat, color="red")
    bob = await aiortc_peers.open(first, user="bob", room=chat, color="blue")
    await alice.wait_receiving(from_user="bob", color="blue", timeout=30)
    await bob.leave()
    await alice.leave()
    await until(
        lambda: any(e["type"] == "room_finished" for e in receiver.accepted()), 20, "room_finished"
    )
    await asyncio.sleep(1.0)
    events = receiver.accepted()
    ids = Counter(str(e["id"]) for e in events)
    assert max(ids.values()) == 1, ids
    types = Counter(str(e["type"]) for e in events)
    assert types["room_started"] == 1 and types["room_finished"] == 1
    assert types["participant_joined"] == 2 and types["participant_left"] == 2
    client = connect(RedisTarget(url=redis_server.url))
    try:
        consumers: Any = await client.xinfo_consumers(EVENTS, GROUP)
        assert {str(c["name"]) for c in consumers} == {"n1", "n2"}
        assert sum((await pending(client)).values()) == 0
    finally:
        await client.aclose()
