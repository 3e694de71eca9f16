"""The cluster's SignalBus (``zvonok.cluster.bus``) on a real ``redis-server`` (shared design
``cluster.md`` §3 "SignalBus frames", §4; issue 14), timing ×0.25: requests and notes both ways
between two and three nodes; a restarted peer (new boot_id) closes the old link; a killed
subscriber connection, a stopped (SIGSTOP) Redis and a stopped-then-restarted Redis lose
nothing (everything sent meanwhile arrives once, in order, and sends never raise); publishes
are pipelined (several batches in flight on one connection, in order), a request, an answer and
a flushed note are published at once, and a killed publish connection loses nothing; a vanished
peer key breaks the link within two checks (and, after an outage, only once this node has been
healthy for a node TTL), a silent one within the ack-progress bound. At the default timing (1.0),
with the peer in its own process (``bus_peer.py``): a ``kill -9`` breaks the link within 3.5 s
(the old rule, the node key's expiry, took 6-8 s), a process stopped 4 s (a stalled loop, its
heartbeat late) does not; nor does a live peer without a subscription (it still heartbeats).
Each in-process "node" is one bus and its real node registry, with its own Redis client."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from zvonok.cluster.base import ClusterUnavailable
from zvonok.cluster.bus import PROBE_TIMEOUT, RedisSignalBus
from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.health import RedisClusterHealth
from zvonok.cluster.keys import Keys
from zvonok.cluster.peers import PEER_CHECK_INTERVAL, PEER_LOST_CHECKS, STALE_AFTER
from zvonok.cluster.redis_nodes import (
    HEARTBEAT_INTERVAL,
    NODE_TTL,
    RedisNodeRegistry,
    new_boot_id,
)
from zvonok.errors import SignalError
from zvonok.relay.frames import Frame
from zvonok.relay.link import PROGRESS_TIMEOUT, Link, LinkClosed

from ..harness.redis import RedisServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(20)]

KEYS = Keys()
TIMING = 0.25
#: The default cluster timing (node key 6 s, heartbeat every 2 s), for the tests of a killed or
#: stalled peer process.
PRODUCTION = 1.0
#: Issue 14: relayed clients get ``node-lost`` within 6 s of their owner's death; the bus now
#: breaks the link to a killed peer within this at ``PRODUCTION`` timing (the heartbeat's stale
#: age, 3 s, plus the check's margin and two round trips).
LOST_FAST = 3.5


class Node:
    """One node's bus, its real node registry (heartbeat script, peer sightings) and what it
    received: notes by peer, requests served, links closed. ``peer_settle`` is the node TTL, as
    in production, unless told."""

    def __init__(
        self,
        url: str,
        node_id: str,
        *,
        boot_id: str | None = None,
        peer_settle: float | None = None,
        timing: float = TIMING,
    ) -> None:
        self.node_id = node_id
        self.timing = timing
        self.client: Redis = connect(RedisTarget(url=url))
        self.health = RedisClusterHealth()
        self.registry = RedisNodeRegistry(
            self.client,
            self.health,
            node_id=node_id,
            boot_id=boot_id or new_boot_id(),
            keys=KEYS,
            ttl=NODE_TTL * timing,
        )
        self.notes: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        self.served: collections.Counter[tuple[str, int]] = collections.Counter()
        self.closed: list[tuple[str, str]] = []
        #: Open a new link to the peer from ``on_link_closed`` itself (and keep it here).
        self.reopen = False
        self.reopened: list[Link] = []
        self.bus = RedisSignalBus(
            self.client,
            node_id,
            self.registry.boot_id,
            self.health,
            keys=KEYS,
            on_request=self.on_request,
            on_note=self.on_note,
            on_link_closed=self.on_link_closed,
            peers=self.registry,
            peer_settle=NODE_TTL * timing if peer_settle is None else peer_settle,
            timing=timing,
        )

    async def on_request(self, peer: str, frame: Frame) -> Any:
        n = int(frame.params["n"])
        self.served[(peer, n)] += 1
        if frame.method == "refuse":
            raise SignalError("room-full", f"no {n}", fatal=True, close_code=4008)
        return {"from": self.node_id, "to": peer, "n": n, "relay": frame.relay}

    def on_note(self, peer: str, frame: Frame) -> None:
        self.notes[peer].append((frame.relay, int(frame.params["n"])))

    def on_link_closed(self, peer: str, link: Link) -> None:
        self.closed.append((peer, link.close_reason))
        if self.reopen:
            self.reopened.append(self.bus.link(peer))

    async def start(self) -> Node:
        await self.registry.register()
        self._heartbeats = asyncio.create_task(self._heartbeat())
        await self.bus.start()
        assert self.bus.subscribed.is_set()
        return self

    async def _heartbeat(self) -> None:
        """What ``RedisCluster`` does for the bus: heartbeat (a key lost with Redis's data comes
        back) and end ``reconciling`` once it reached Redis again."""
        while True:
            with contextlib.suppress(ClusterUnavailable):
                await self.registry.heartbeat()
                if self.health.reconcile_needed.is_set():
                    self.health.reconciled()
            await asyncio.sleep(HEARTBEAT_INTERVAL * self.timing)

    def stop_heartbeat(self) -> None:
        self._heartbeats.cancel()

    def crash(self) -> None:
        """Stop dead: no goodbye to the peers, no more heartbeats (the node key stays until it
        expires; a real ``kill -9`` is ``BusPeer.kill``)."""
        self.stop_heartbeat()
        self.wedge()

    def wedge(self) -> None:
        """The bus stops (its subscription goes) while the node still heartbeats."""
        for task in self.bus._tasks:
            task.cancel()

    async def close(self) -> None:
        self.stop_heartbeat()
        await self.bus.close()
        await self.client.aclose()


MakeNode = Callable[..., Awaitable["Node"]]


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[MakeNode]:
    made: list[Node] = []

    async def make(
        node_id: str,
        *,
        boot_id: str | None = None,
        peer_settle: float | None = None,
        timing: float = TIMING,
    ) -> Node:
        node = Node(
            redis_server.url, node_id, boot_id=boot_id, peer_settle=peer_settle, timing=timing
        )
        await node.start()
        made.append(node)
        return node

    yield make
    for node in made:
        await node.close()


class BusPeer:
    """A peer node in its own process (``bus_peer.py``): kill it, stop it, continue it."""

    def __init__(self, process: asyncio.subprocess.Process, boot_id: str) -> None:
        self.process = process
        self.boot_id = boot_id

    async def kill(self) -> None:
        """``kill -9``: the kernel closes its sockets, Redis drops its subscription."""
        self.process.kill()
        await asyncio.wait_for(self.process.wait(), 5.0)

    def stop(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


MakePeer = Callable[[str, float], Awaitable[BusPeer]]


@pytest.fixture
async def bus_peers(redis_server: RedisServer) -> AsyncIterator[MakePeer]:
    started: list[asyncio.subprocess.Process] = []

    async def start(node_id: str, timing: float) -> BusPeer:
        script = Path(__file__).with_name("bus_peer.py")
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), redis_server.url, node_id, str(timing),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        started.append(process)
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 15.0)).decode().split()
        assert line[:1] == ["ready"], line
        return BusPeer(process, line[1])

    yield start
    for process in started:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            await process.wait()


async def next_heartbeat(client: Redis, node_id: str, within: float) -> None:
    """Return right after ``node_id``'s next heartbeat reached Redis."""
    key = KEYS.node(node_id)
    before = await client.hget(key, "updated_ms")
    deadline = asyncio.get_running_loop().time() + within
    while await client.hget(key, "updated_ms") == before:
        assert asyncio.get_running_loop().time() < deadline, f"no heartbeat of {node_id}"
        await asyncio.sleep(0.005)


async def until(predicate: Callable[[], bool], within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def numbered(count: int, relays: int = 3) -> list[tuple[int, int]]:
    return [(n % relays + 1, n) for n in range(count)]


def send_notes(link: Link, start: int, stop: int, relays: int = 3) -> None:
    for n in range(start, stop):
        link.notify("note", {"n": n}, relay=n % relays + 1)


async def test_two_nodes_exchange_requests_and_notes_both_ways(
    nodes: MakeNode,
) -> None:
    n1, n2 = await nodes("n1"), await nodes("n2")
    to_n2, to_n1 = n1.bus.link("n2"), n2.bus.link("n1")
    assert n1.bus.link("n2") is to_n2  # THE link
    answers = await asyncio.gather(
        *(to_n2.request("echo", {"n": n}, relay=7) for n in range(20)),
        *(to_n1.request("echo", {"n": n}, relay=8) for n in range(20)),
    )
    assert answers[:20] == [{"from": "n2", "to": "n1", "n": n, "relay": 7} for n in range(20)]
    assert answers[20:] == [{"from": "n1", "to": "n2", "n": n, "relay": 8} for n in range(20)]
    with pytest.raises(SignalError) as refused:
        await to_n2.request("refuse", {"n": 100})
    assert (refused.value.code, refused.value.close_code) == ("room-full", 4008)
    send_notes(to_n2, 0, 100)
    send_notes(to_n1, 0, 100)
    await until(lambda: len(n2.notes["n1"]) == 100 and len(n1.notes["n2"]) == 100, 3.0)
    assert n2.notes["n1"] == numbered(100) and n1.notes["n2"] == numbered(100)
    assert set(n1.served.values()) == {1} and set(n2.served.values()) == {1}
    await until(lambda: to_n2.unacked == 0 and to_n1.unacked == 0, 2.0)
    assert n1.bus.links() == {"n2": to_n2} and n2.bus.links() == {"n1": to_n1}
    assert n1.closed == n2.closed == []
    with pytest.raises(ValueError):
        n1.bus.link("n1")
    # every published batch was timed: its wait on the send queue and its PUBLISH round trip
    for bus in (n1.bus, n2.bus):
        published = bus.timings.count("publish")
        assert published > 0 and bus.timings.count("send_wait") in (published, published + 1)


async def test_three_nodes_all_pairs(nodes: MakeNode) -> None:
    ns = [await nodes(f"n{i}") for i in range(1, 4)]
    asks = []
    for a in ns:
        for b in ns:
            if a is not b:
                send_notes(a.bus.link(b.node_id), 0, 50)
                asks += [a.bus.link(b.node_id).request("echo", {"n": n}) for n in range(10)]
    answers = await asyncio.gather(*asks)
    assert len(answers) == 60 and all(answer["from"] != answer["to"] for answer in answers)
    for a in ns:
        await until(lambda a=a: all(len(a.notes[b.node_id]) == 50 for b in ns if b is not a), 3.0)  # type: ignore[misc]
        for b in ns:
            if a is not b:
                assert a.notes[b.node_id] == numbered(50)
                assert [a.served[(b.node_id, n)] for n in range(10)] == [1] * 10
        assert sorted(a.bus.links()) == sorted(b.node_id for b in ns if b is not a)


async def test_a_restarted_peer_closes_the_old_link(nodes: MakeNode) -> None:
    n1, n2 = await nodes("n1"), await nodes("n2")
    old = n1.bus.link("n2")
    assert (await old.request("echo", {"n": 1}))["from"] == "n2"
    n2.crash()
    reborn = await nodes("n2")  # same node id, new boot_id
    assert reborn.bus.boot_id != n2.bus.boot_id
    answer = await reborn.bus.link("n1").request("echo", {"n": 2})
    assert answer == {"from": "n1", "to": "n2", "n": 2, "relay": 0}
    assert n1.closed == [("n2", "peer restarted")] and old.closed.is_set()
    fresh = n1.bus.link("n2")
    assert fresh is not old and (await fresh.request("echo", {"n": 3}))["from"] == "n2"

    # the other way round: the survivor speaks first, to the old incarnation's link
    n3 = await nodes("n3")
    to_n3 = n1.bus.link("n3")
    assert (await to_n3.request("echo", {"n": 1}))["from"] == "n3"
    n3.crash()
    await nodes("n3")
    with pytest.raises(LinkClosed, match="peer closed its link"):
        await to_n3.request("echo", {"n": 2}, wait=3.0)
    assert n1.closed[-1] == ("n3", "peer closed its link")
    assert (await n1.bus.link("n3").request("echo", {"n": 3}))["from"] == "n3"


async def test_a_link_opened_again_from_on_link_closed_is_the_link(nodes: MakeNode) -> None:
    n1, n2 = await nodes("n1"), await nodes("n2")
    n1.reopen = True
    assert (await n1.bus.link("n2").request("echo", {"n": 1}))["from"] == "n2"
    n2.crash()
    reborn = await nodes("n2")
    assert (await reborn.bus.link("n1").request("echo", {"n": 2}))["from"] == "n1"
    assert n1.closed == [("n2", "peer restarted")] and len(n1.reopened) == 1
    assert n1.bus.links() == {"n2": n1.reopened[0]} and n1.bus.link("n2") is n1.reopened[0]
    assert (await n1.reopened[0].request("echo", {"n": 3}))["from"] == "n2"
    assert n1.bus.links_opened == 2


async def test_a_killed_subscriber_connection_loses_nothing(
    nodes: MakeNode, redis_server: RedisServer
) -> None:
    n1, n2 = await nodes("n1", peer_settle=0.0), await nodes("n2", peer_settle=0.0)
    link = n1.bus.link("n2")
    admin = connect(RedisTarget(url=redis_server.url))
    try:
        for round_ in range(3):
            send_notes(link, round_ * 100, round_ * 100 + 50)
            await admin.client_kill_filter(_type="pubsub")
            send_notes(link, round_ * 100 + 50, round_ * 100 + 100)
            await asyncio.sleep(0.2)
        asked = await link.request("echo", {"n": 1000}, wait=5.0)
        assert asked["n"] == 1000
        await until(lambda: len(n2.notes["n1"]) == 300, 5.0)
        assert n2.notes["n1"] == numbered(300)
        assert n1.closed == n2.closed == []
    finally:
        await admin.aclose()


async def test_a_burst_goes_out_pipelined_and_in_order(
    nodes: MakeNode, redis_server: RedisServer
) -> None:
    """Batches are written while earlier ones' replies are on their way (one connection, so in
    order): with Redis paused for a moment (less than the 1 s call timeout) several are in
    flight at once, and everything arrives once, in order, with no failure."""
    n1, n2 = await nodes("n1"), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 0}))["n"] == 0
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        for n in range(100):
            link.notify("note", {"n": n}, relay=n % 3 + 1)
            if n % 10 == 9:
                await asyncio.sleep(0.01)  # the send task writes the batch queued so far
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    await until(lambda: len(n2.notes["n1"]) == 100, 3.0)
    assert n2.notes["n1"] == numbered(100)
    publisher = n1.bus._publisher
    assert publisher.peak_in_flight >= 5  # the old loop had one batch out at a time
    assert publisher.connections == 1 and n1.bus.publish_failures == 0
    assert n1.health.status == "ok" and n1.bus.timings.count("publish") >= 10


async def test_requests_answers_and_flushed_notes_are_published_at_once(nodes: MakeNode) -> None:
    """A request, its answer and a note sent with ``flush`` (a relayed ``joined``) are written to
    Redis in the call that sent them, with the notes queued before them, instead of waiting for
    the sender task's turn of the event loop; plain notes wait for it. Order holds."""
    n1, n2 = await nodes("n1"), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 0}))["n"] == 0  # the publish connection is open
    await until(lambda: n1.bus._publisher.in_flight == 0 and n1.bus.queued == 0, 2.0)
    flushed, answered = n1.bus.flushed, n2.bus.flushed
    assert answered >= 1  # n2 answered the echo at once
    send_notes(link, 1, 3)
    assert n1.bus.queued == 2  # plain notes wait for the sender task
    link.notify("note", {"n": 3}, relay=1, flush=True)
    assert n1.bus.queued == 0 and n1.bus.flushed == flushed + 1
    assert n1.bus._publisher.in_flight == 1  # one batch: the three notes, in order
    asking = asyncio.ensure_future(link.request("echo", {"n": 4}))
    await asyncio.sleep(0)  # the request's first step sends it
    assert n1.bus.flushed == flushed + 2 and n1.bus.queued == 0
    assert (await asking)["n"] == 4
    await until(lambda: len(n2.notes["n1"]) == 3, 2.0)
    assert n2.notes["n1"] == [(2, 1), (3, 2), (1, 3)]
    assert n2.bus.flushed > answered


async def test_a_killed_publish_connection_loses_nothing(
    nodes: MakeNode, redis_server: RedisServer
) -> None:
    n1, n2 = await nodes("n1"), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 0}))["n"] == 0
    admin = connect(RedisTarget(url=redis_server.url))
    try:
        for round_ in range(3):
            send_notes(link, round_ * 100, round_ * 100 + 50)
            await asyncio.sleep(0.05)
            await admin.client_kill_filter(_type="normal", skipme=True)  # the pipe's too
            send_notes(link, round_ * 100 + 50, round_ * 100 + 100)
            await asyncio.sleep(0.3)
        await until(lambda: len(n2.notes["n1"]) == 300, 8.0)
        assert n2.notes["n1"] == numbered(300)
        assert n1.closed == n2.closed == []
        assert n1.bus._publisher.connections >= 2  # a broken pipe opens a new connection
    finally:
        await admin.aclose()


async def test_a_starved_subscription_is_renewed_by_the_probe(
    nodes: MakeNode,
) -> None:
    """A subscription that silently receives nothing (what a failover can leave behind): no
    probe comes back, the node resubscribes, and what was sent meanwhile is resent; the peer
    heartbeats all along, so it is not taken for dead meanwhile."""
    n1, n2 = await nodes("n1", peer_settle=0.0), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 1}))["from"] == "n2"
    assert n2.bus._pubsub is not None
    await n2.bus._pubsub.unsubscribe()  # no error, no message: starved
    send_notes(link, 0, 30)
    await until(lambda: n2.bus.resubscribes == 1, PROBE_TIMEOUT * TIMING + 1.5)
    await until(lambda: len(n2.notes["n1"]) == 30, 3.0)
    assert n2.notes["n1"] == numbered(30) and n1.closed == n2.closed == []


async def test_a_stopped_redis_loses_nothing(nodes: MakeNode, redis_server: RedisServer) -> None:
    n1, n2 = await nodes("n1"), await nodes("n2")
    to_n2, to_n1 = n1.bus.link("n2"), n2.bus.link("n1")
    send_notes(to_n2, 0, 50)
    await until(lambda: len(n2.notes["n1"]) == 50, 2.0)
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        send_notes(to_n2, 50, 100)  # sends never raise, whatever Redis does
        asked = asyncio.ensure_future(to_n2.request("echo", {"n": 1}, wait=15.0))
        back = asyncio.ensure_future(to_n1.request("echo", {"n": 2}, wait=15.0))
        await asyncio.sleep(1.5)
        send_notes(to_n2, 100, 150)
        send_notes(to_n1, 0, 50)
        await asyncio.sleep(1.5)
        assert n1.health.status == "degraded"
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    assert (await asyncio.wait_for(asked, 8.0))["from"] == "n2"
    assert (await asyncio.wait_for(back, 8.0))["from"] == "n1"
    await until(lambda: len(n2.notes["n1"]) == 150 and len(n1.notes["n2"]) == 50, 6.0)
    assert n2.notes["n1"] == numbered(150) and n1.notes["n2"] == numbered(50)
    assert n1.closed == n2.closed == []  # 3 s without acks: the progress clock stood still


async def test_a_redis_down_and_restarted_empty_loses_nothing(
    nodes: MakeNode, redis_server: RedisServer
) -> None:
    n1, n2 = await nodes("n1"), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 0}))["n"] == 0
    redis_server.stop()
    send_notes(link, 0, 60)
    asked = asyncio.ensure_future(link.request("echo", {"n": 1}, wait=15.0))
    await asyncio.sleep(2.0)
    assert not link.closed.is_set()
    redis_server.start()  # empty: the subscriptions are gone too
    assert (await asyncio.wait_for(asked, 8.0))["n"] == 1
    await until(lambda: len(n2.notes["n1"]) == 60, 6.0)
    assert n2.notes["n1"] == numbered(60) and n1.closed == []
    assert n1.bus.subscribed.is_set() and n2.bus.subscribed.is_set()


async def test_a_vanished_peer_key_breaks_the_link_within_two_checks(
    nodes: MakeNode,
) -> None:
    n1, n2 = await nodes("n1", peer_settle=0.0), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 1}))["from"] == "n2"
    n2.stop_heartbeat()
    await n1.client.delete(KEYS.node("n2"))  # its heartbeat key expired (it is still subscribed)
    started = asyncio.get_running_loop().time()
    bound = PEER_CHECK_INTERVAL * TIMING * (PEER_LOST_CHECKS + 1) + 0.25
    await asyncio.wait_for(link.closed.wait(), bound + 1.0)
    took = asyncio.get_running_loop().time() - started
    assert link.close_reason == "peer lost" and n1.closed == [("n2", "peer lost")]
    assert took <= bound


@pytest.mark.parametrize("peer_returns", [True, False], ids=["peer-returns", "peer-gone"])
async def test_after_an_outage_a_missing_peer_key_counts_only_after_the_node_ttl(
    nodes: MakeNode, peer_returns: bool
) -> None:
    """Redis stopped longer than the node TTL: every node key expired. This node's breaker let
    its heartbeat through first; the peer's comes later (its own breaker, its heartbeat
    interval). Its key missing meanwhile is no lost peer (CI: an edge broke the link to a live
    owner 0.5 s after Redis returned, and its clients got ``node-lost``); a key still missing a
    whole TTL after this node got through is."""
    settle = 1.5  # the node TTL at timing 0.25
    n1, n2 = await nodes("n1", peer_settle=settle), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 1}))["from"] == "n2"
    n2.stop_heartbeat()
    n1.health.failed(ConnectionError("test: redis stopped"))
    await n1.client.delete(KEYS.node("n2"))  # expired during the outage
    await until(lambda: n1.health.status == "ok", 3.0)  # n1's heartbeat got through
    loop = asyncio.get_running_loop()
    recovered = loop.time()
    await asyncio.sleep(0.6 * settle)  # > PEER_LOST_CHECKS checks
    assert not link.closed.is_set(), "the link broke before the peer could re-register"
    if peer_returns:
        n2._heartbeats = asyncio.create_task(n2._heartbeat())
        await asyncio.sleep(settle + PEER_CHECK_INTERVAL * TIMING * (PEER_LOST_CHECKS + 1))
        assert not link.closed.is_set() and n1.closed == []
        assert (await link.request("echo", {"n": 2}))["from"] == "n2"
    else:
        bound = settle + PEER_CHECK_INTERVAL * TIMING * (PEER_LOST_CHECKS + 1) + 0.25
        await asyncio.wait_for(link.closed.wait(), bound + 1.0)
        took = loop.time() - recovered
        assert link.close_reason == "peer lost" and settle <= took <= bound


@pytest.mark.timeout(40)
async def test_a_killed_peer_process_is_lost_within_3_5_s_at_production_timing(
    nodes: MakeNode, bus_peers: MakePeer
) -> None:
    """``kill -9`` right after the peer's heartbeat (the worst case: its key looks fresh the
    longest, and expires only 6 s later): its subscription vanishes at once, so the link
    breaks when that heartbeat turns 3 s old, and its key is removed then (its leases stop
    counting). The old rule (the key gone, two checks) took 6-8 s here."""
    peer = await bus_peers("n2", PRODUCTION)
    n1 = await nodes("n1", peer_settle=0.0, timing=PRODUCTION)
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 1}))["from"] == "n2"
    assert link.unacked == 0
    await next_heartbeat(n1.client, "n2", 3.0)
    loop = asyncio.get_running_loop()
    killed = loop.time()
    await peer.kill()
    await asyncio.wait_for(link.closed.wait(), 10.0)
    took = loop.time() - killed
    print(f"kill -9 -> peer lost: {took:.2f} s")
    assert link.close_reason == "peer lost" and n1.closed == [("n2", "peer lost")]
    assert STALE_AFTER - 0.5 <= took <= LOST_FAST, took
    assert not await n1.client.exists(KEYS.node("n2")) and n1.registry.reaped == 1


@pytest.mark.timeout(40)
async def test_a_stalled_peer_process_is_not_lost_at_production_timing(
    nodes: MakeNode, bus_peers: MakePeer
) -> None:
    """The peer's whole process stopped 4 s right after a heartbeat (a stalled event loop: its
    heartbeat late by two intervals, older than the 3 s stale age): its sockets stay open, its
    subscription with them, so it is not dead; a request sent meanwhile is answered after."""
    peer = await bus_peers("n2", PRODUCTION)
    n1 = await nodes("n1", peer_settle=0.0, timing=PRODUCTION)
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 1}))["from"] == "n2"
    await next_heartbeat(n1.client, "n2", 3.0)
    peer.stop()
    try:
        asked = asyncio.ensure_future(link.request("echo", {"n": 2}, wait=10.0))
        await asyncio.sleep(4.0)
        assert not link.closed.is_set()
    finally:
        peer.resume()
    assert (await asyncio.wait_for(asked, 5.0))["n"] == 2
    await asyncio.sleep(2 * PEER_CHECK_INTERVAL * PRODUCTION)
    assert n1.closed == [] and n1.registry.reaped == 0


async def test_a_live_peer_without_a_subscription_is_not_lost(nodes: MakeNode) -> None:
    """A peer whose subscription is gone (resubscribing, or starved after a failover) but that
    still heartbeats, for longer than the stale age: not dead."""
    n1, n2 = await nodes("n1", peer_settle=0.0), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 1}))["from"] == "n2"
    n2.wedge()  # its bus stopped: no subscriber on zv:sig:n2, heartbeats go on
    await asyncio.sleep(3 * STALE_AFTER * TIMING)
    assert not link.closed.is_set() and n1.closed == [] and n1.registry.reaped == 0
    assert await n1.client.pubsub_numsub(KEYS.signal("n2")) == [(KEYS.signal("n2"), 0)]


async def test_a_silent_peer_breaks_the_link_after_the_ack_progress_bound(
    nodes: MakeNode,
) -> None:
    n1, n2 = await nodes("n1", peer_settle=0.0), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 1}))["from"] == "n2"
    n2.wedge()  # it still heartbeats, so it is not dead: only acks tell
    started = asyncio.get_running_loop().time()
    link.notify("note", {"n": 1})
    bound = PROGRESS_TIMEOUT * TIMING
    await asyncio.wait_for(link.closed.wait(), bound + 2.0)
    took = asyncio.get_running_loop().time() - started
    assert link.close_reason == "no ack progress" and bound <= took <= bound + 1.0
    assert n1.closed == [("n2", "no ack progress")]


async def test_close_tells_the_peer_and_ends_every_task(nodes: MakeNode) -> None:
    n1, n2 = await nodes("n1"), await nodes("n2")
    link = n1.bus.link("n2")
    assert (await link.request("echo", {"n": 1}))["from"] == "n2"
    tasks = list(n2.bus._tasks)
    await n2.bus.close()
    assert all(task.done() for task in tasks) and n2.closed == [("n1", "closed")]
    await asyncio.wait_for(link.closed.wait(), 2.0)
    assert link.close_reason == "peer closed its link"
    with pytest.raises(LinkClosed):
        n2.bus.link("n1")
