"""Calls across nodes of a Redis cluster (issue 14; shared design cluster.md §3, §4): real
``zvonok serve`` nodes on one real ``redis-server``, sharing a membership store, with aiortc
clients that connect to different nodes.

- Three participants of one room, each through another node: the room lives on one node (one
  lease in Redis), the other two relay their signaling there, and everyone receives everyone's
  camera (right colour) and sound.
- Redis stopped (SIGSTOP, 30 s) under a live relayed call: the call goes on (media both ways, at
  least 90 % of its audio packet rate), a join
  to the room goes on through its owner, a join that needs Redis is refused at once with
  ``cluster-unavailable`` (``retryAfterMs``, close 1013), ``/livez`` and ``/readyz`` stay 200;
  Redis back, the owner keeps its room and new rooms are placed again.
- A session whose socket dropped resumes through another node (``resumed: true``), and another
  user cannot take its sessionId through any node (``session-taken``).
- The claim race: 20 clients join one room through 3 nodes at once, again and again: one owner,
  everyone is told of the other 19, nobody gets an error.
- The owner killed with SIGKILL while two clients are connected through the other nodes: both get
  ``error`` ``node-lost`` and close 1012, join again with their sessionId through the same node,
  the room is claimed elsewhere with a higher epoch and media flows again. At the default timing
  one edge's peer check removed the dead owner's key (``zvonok_cluster_nodes_reaped_total``: 1
  over the edges), before it would have expired.

Cluster timings are shortened (``cluster_timing`` 0.25: node key 1.5 s, heartbeat 0.5 s, peer
checks 0.125 s), except for the kill -9 case run again at the default timing (1.0: node key 6 s,
heartbeat every 2 s), killed right after a heartbeat, its worst case.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ..harness.aiortc_peer import AiortcPeer, AiortcPeers
from ..harness.messages import recv_until
from ..harness.redis import RedisServer, command
from ..harness.server import ServerFactory, ZvonokServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

TIMING = "0.25"
#: From the owner's death to the clients' ``node-lost`` (issue 14: within 6 s).
LOST_LIMIT = 6.0
#: From the owner's death to media flowing again (issue 14: within 10 s).
HEAL_LIMIT = 10.0
#: Rounds of the claim race (issue 14: 50).
RACE_ROUNDS = int(os.environ.get("ZVONOK_CLAIM_RACE_ROUNDS", "50"))
RACE_CLIENTS = 20
#: How long Redis stays stopped (issue 14: 30 s).
OUTAGE = float(os.environ.get("ZVONOK_REDIS_OUTAGE", "30"))
#: A join that needs Redis while it is away is refused within this (issue 14: 1 s).
REFUSE_LIMIT = 1.0


def start_nodes(
    factory: ServerFactory,
    redis: RedisServer,
    shared: Path,
    count: int,
    *,
    timing: str = TIMING,
    **env: str,
) -> list[ZvonokServer]:
    """``count`` nodes on ``redis``, one data dir (membership store and JWT secret) for all."""
    nodes = []
    for n in range(count):
        node = factory.start(
            extra_args=["--data-dir", str(shared)],
            env={
                "ZVONOK_CLUSTER_BACKEND": "redis",
                "ZVONOK_REDIS_URL": redis.url,
                "ZVONOK_NODE_ID": f"node{n}",
                "ZVONOK_CLUSTER_TIMING": timing,
                "ZVONOK_RESUME_GRACE": "5",
                **env,
            },
        )
        node.data_dir = shared  # the CLI (tokens, groups) works on the shared store
        nodes.append(node)
    return nodes


def lease(redis: RedisServer, kind: str, room: str) -> dict[str, str]:
    """The room's record in Redis: owner, boot, epoch."""
    reply = command(redis.port, "HGETALL", f"zv:room:{kind}:{room}").decode()
    parts = [line for line in reply.split("\r\n")[1:] if line and not line.startswith("$")]
    return dict(zip(parts[::2], parts[1::2], strict=True))


async def claimed(redis: RedisServer, kind: str, room: str, within: float = 10) -> dict[str, str]:
    """The room's record once some node has claimed it."""
    deadline = time.monotonic() + within
    while not (record := lease(redis, kind, room)):
        assert time.monotonic() < deadline, f"nobody claimed {kind}:{room}"
        await asyncio.sleep(0.05)
    return record


async def after_heartbeat(redis: RedisServer, node: str, within: float = 5.0) -> None:
    """Return right after ``node``'s next heartbeat reached Redis."""
    key = f"zv:node:{node}"
    before = command(redis.port, "HGET", key, "updated_ms")
    deadline = time.monotonic() + within
    while command(redis.port, "HGET", key, "updated_ms") == before:
        assert time.monotonic() < deadline, f"no heartbeat of {node}"
        await asyncio.sleep(0.005)


async def sees(peer: AiortcPeer, user: str, color: str, within: float = 30) -> None:
    await peer.wait_receiving(from_user=user, color=color, timeout=within)
    await peer.wait_receiving(from_user=user, color=color, kind="audio", timeout=within)


async def test_three_clients_through_three_nodes_share_one_room(
    zvonok_server_factory: ServerFactory,
    redis_server: RedisServer,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
) -> None:
    nodes = start_nodes(zvonok_server_factory, redis_server, tmp_path / "shared", 3)
    group = nodes[0].create_group(["alice", "bob", "carol"])
    people = (("alice", "red"), ("bob", "blue"), ("carol", "green"))
    peers = [
        await aiortc_peers.open(node, user, group, color, kind="group")
        for node, (user, color) in zip(nodes, people, strict=True)
    ]
    record = await claimed(redis_server, "group", group)
    assert record["owner"] in {"node0", "node1", "node2"}, record
    for peer, (user, _) in zip(peers, people, strict=True):
        for other, color in people:
            if other != user:
                await sees(peer, other, color)
    assert lease(redis_server, "group", group) == record  # one owner all along
    for peer in peers:
        assert peer.server_errors == [] and peer.closes == []
        await peer.leave()


@pytest.mark.allow_errors(
    client=[r"node-lost"], reason="the test kills the node that owns the room"
)
@pytest.mark.parametrize("timing", [TIMING, "1.0"], ids=["timing-0.25", "timing-1.0"])
async def test_the_owner_killed_its_relayed_clients_heal_on_another_node(
    zvonok_server_factory: ServerFactory,
    redis_server: RedisServer,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
    timing: str,
) -> None:
    """At the default timing (1.0) the owner is killed right after its heartbeat: the worst
    case, its node key would live 6 s more (``node-lost`` only 6-8 s after the kill while that
    expiry was the evidence)."""
    nodes = start_nodes(zvonok_server_factory, redis_server, tmp_path / "shared", 3, timing=timing)
    group = nodes[0].create_group(["alice", "bob", "carol"])
    # carol through node0 first: node0 (as loaded as the others) places the room on itself
    carol = await aiortc_peers.open(nodes[0], "carol", group, "green", kind="group")
    first = await claimed(redis_server, "group", group)
    owner = int(first["owner"].removeprefix("node"))
    edges = [n for n in range(3) if n != owner]
    alice = await aiortc_peers.open(
        nodes[edges[0]], "alice", group, "red", kind="group", session_id="alice-1"
    )
    bob = await aiortc_peers.open(
        nodes[edges[1]], "bob", group, "blue", kind="group", session_id="bob-1"
    )
    await sees(alice, "bob", "blue")
    await sees(bob, "alice", "red")
    await sees(carol, "alice", "red")

    if timing == "1.0":
        await after_heartbeat(redis_server, first["owner"])
    killed = time.monotonic()
    nodes[owner].process.kill()
    nodes[owner].process.wait(5)

    async def lost(peer: AiortcPeer) -> float:
        while not peer.closes:
            assert time.monotonic() - killed < LOST_LIMIT + 5, f"{peer.name}: no close"
            await asyncio.sleep(0.05)
        return time.monotonic() - killed

    delays = await asyncio.gather(lost(alice), lost(bob))
    for peer in (alice, bob):
        assert peer.closes == [1012], peer.closes
        assert [e["code"] for e in peer.server_errors] == ["node-lost"], peer.server_errors
    assert max(delays) <= LOST_LIMIT, f"node-lost only after {max(delays):.1f} s"
    removed = [await reaped(nodes[n]) for n in edges]
    # at 1.0 the key would expire only 6 s after the kill: one edge's check removed it (the other
    # found it gone); at 0.25 the key (1.5 s) may expire first, and then nobody counts it
    assert sum(removed) in ((1,) if timing == "1.0" else (0, 1)), removed

    # Both join again with their sessionId through the node they were on.
    alice2 = await aiortc_peers.open(
        nodes[edges[0]], "alice", group, "red", kind="group", session_id="alice-1"
    )
    bob2 = await aiortc_peers.open(
        nodes[edges[1]], "bob", group, "blue", kind="group", session_id="bob-1"
    )
    await sees(alice2, "bob", "blue", HEAL_LIMIT + 10)
    await sees(bob2, "alice", "red", HEAL_LIMIT + 10)
    healed = time.monotonic() - killed
    second = lease(redis_server, "group", group)
    print(
        f"timing {timing}: node-lost after {delays[0]:.2f} / {delays[1]:.2f} s, "
        f"media back after {healed:.2f} s; {second}; reaped on the edges {removed}"
    )
    assert second["owner"] != first["owner"] and int(second["epoch"]) > int(first["epoch"])
    assert healed <= HEAL_LIMIT, f"media back only after {healed:.1f} s"
    for peer in (alice2, bob2):
        await peer.leave()


async def join_once(node: ZvonokServer, user: str, room: str, session: str) -> dict[str, Any]:
    """A signaling-only join: the first ``joined`` or ``error`` message (and the close code when
    the server closed the socket), then the socket is closed."""
    token = await asyncio.to_thread(node.token, user)
    async with connect(node.ws_url("group", room) + "?access_token=" + token) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": room, "sessionId": session}))
        while True:
            msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["type"] in ("joined", "error"):
                break
        if msg["type"] == "joined":
            await ws.send(json.dumps({"type": "leave", "roomId": room, "sessionId": session}))
            return msg
        msg["closeCode"] = None  # a refusal that is not fatal leaves the socket open
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 2)
        except TimeoutError:
            pass
        except ConnectionClosed as closed:
            msg["closeCode"] = closed.rcvd.code if closed.rcvd else None
        return msg


async def audio_packets(peer: AiortcPeer, user: str) -> int:
    """Audio packets ``peer`` received from ``user`` so far."""
    report = await peer.report()
    tracks = [t for t in report.tracks if t.kind == "audio" and t.user_id == user]
    return sum(t.packets_received or 0 for t in tracks)


async def degraded(node: ZvonokServer) -> bool:
    """The node's ``zvonok_cluster_health{state="degraded"}`` is 1."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(node.http_url + "/metrics", timeout=2)).text
    return 'zvonok_cluster_health{state="degraded"} 1.0' in text


async def reaped(node: ZvonokServer) -> float:
    """The node's ``zvonok_cluster_nodes_reaped_total``: dead nodes' keys its peer check removed."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(node.http_url + "/metrics", timeout=2)).text
    found = re.search(r"^zvonok_cluster_nodes_reaped_total (\S+)$", text, re.MULTILINE)
    assert found is not None, "no zvonok_cluster_nodes_reaped_total on /metrics"
    return float(found[1])


async def status(node: ZvonokServer, path: str) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(node.http_url + path, timeout=2)).status_code


@pytest.mark.allow_errors(server=[r"redis", r"Redis", r"cluster"], reason="the test stops Redis")
async def test_a_redis_outage_ends_no_call(
    zvonok_server_factory: ServerFactory,
    redis_server: RedisServer,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
) -> None:
    nodes = start_nodes(zvonok_server_factory, redis_server, tmp_path / "shared", 2)
    group = nodes[0].create_group(["alice", "bob", "carol"])
    other = nodes[0].create_group(["dave"])
    alice = await aiortc_peers.open(nodes[0], "alice", group, "red", kind="group")
    first = await claimed(redis_server, "group", group)
    owner = nodes[int(first["owner"].removeprefix("node"))]
    edge = nodes[1] if owner is nodes[0] else nodes[0]
    bob = await aiortc_peers.open(edge, "bob", group, "blue", kind="group")
    await sees(alice, "bob", "blue")
    await sees(bob, "alice", "red")
    pairs = ((alice, "bob"), (bob, "alice"))
    before = [await audio_packets(peer, user) for peer, user in pairs]
    await asyncio.sleep(2)
    normal = [
        (await audio_packets(peer, user) - n) / 2
        for (peer, user), n in zip(pairs, before, strict=True)
    ]

    os.kill(redis_server.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    at_stop = [await audio_packets(peer, user) for peer, user in pairs]
    try:
        # the nodes notice (a heartbeat times out after 1 s)
        deadline = time.monotonic() + 5
        while not all([await degraded(node) for node in nodes]):
            assert time.monotonic() < deadline, "the nodes did not notice that Redis stopped"
            await asyncio.sleep(0.1)
        started = time.monotonic()
        refused = await join_once(edge, "dave", other, "dave-1")
        took = time.monotonic() - started
        assert refused["type"] == "error", refused
        assert refused["payload"]["code"] == "cluster-unavailable", refused
        assert refused["payload"]["retryAfterMs"] > 0 and refused.get("closeCode") == 1013
        assert took <= REFUSE_LIMIT, f"refused only after {took:.2f} s"
        # the owner serves a join to its own room without Redis
        hello = await join_once(owner, "carol", group, "carol-1")
        assert hello["type"] == "joined", hello
        assert {p["userId"] for p in hello["payload"]["participants"]} == {"alice", "bob"}
        for node in nodes:
            assert await status(node, "/livez") == 200 and await status(node, "/readyz") == 200
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped) - 4))
        # the call goes on: media both ways at (nearly) its normal packet rate
        await sees(alice, "bob", "blue", 4)
        await sees(bob, "alice", "red", 4)
        during = time.monotonic() - stopped
        rates = [
            (await audio_packets(peer, user) - n) / during
            for (peer, user), n in zip(pairs, at_stop, strict=True)
        ]
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    print(
        f"redis stopped {time.monotonic() - stopped:.1f} s; dave refused in {took:.2f} s; audio"
        f" packets/s before {normal}, during {rates}"
    )
    for rate, usual in zip(rates, normal, strict=True):
        assert rate >= 0.9 * usual, f"{rate:.1f} packets/s during the outage, {usual:.1f} before"

    # Redis back: the owner keeps its room (re-asserted within 5 s) and new rooms are placed.
    deadline = time.monotonic() + 5
    while (now := lease(redis_server, "group", group)).get("owner") != first["owner"]:
        assert time.monotonic() < deadline, f"the room was not re-asserted: {now}"
        await asyncio.sleep(0.1)
    assert (await join_once(edge, "dave", other, "dave-2"))["type"] == "joined"
    await sees(alice, "bob", "blue", 5)
    closed = f"closes {alice.closes} {bob.closes}; errors {alice.server_errors} {bob.server_errors}"
    assert alice.closes == [] and bob.closes == [], closed
    assert alice.server_errors == [] and bob.server_errors == []
    for peer in (alice, bob):
        await peer.leave()


async def race_client(
    node: ZvonokServer, token: str, room: str, session: str, all_in: asyncio.Barrier
) -> set[str]:
    """Join, and collect who else is in the room until all ``RACE_CLIENTS - 1`` are known (or
    fail naming what arrived); once every client knows everyone, leave. Any ``error`` fails."""
    url = node.ws_url("group", room) + "?access_token=" + token
    others: set[str] = set()
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": room, "sessionId": session}))
        deadline = time.monotonic() + 15
        while len(others) < RACE_CLIENTS - 1:
            left = deadline - time.monotonic()
            assert left > 0, f"{session} knows only {sorted(others)}"
            msg = json.loads(await asyncio.wait_for(ws.recv(), left))
            payload = msg.get("payload") or {}
            assert msg["type"] != "error", f"{session}: {payload}"
            if msg["type"] == "joined":
                others |= {p["sessionId"] for p in payload["participants"]}
            elif msg["type"] == "participant-joined":
                others.add(payload["sessionId"])
        # everyone knows everyone before anyone leaves (a leave would shrink the others' view)
        await asyncio.wait_for(all_in.wait(), 15)
        await ws.send(json.dumps({"type": "leave", "roomId": room, "sessionId": session}))
        return others | {session}


async def test_the_claim_race_has_one_owner(
    zvonok_server_factory: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    nodes = start_nodes(
        zvonok_server_factory, redis_server, tmp_path / "shared", 3, ZVONOK_CONNECT_BURST="1000"
    )
    users = [f"u{n}" for n in range(RACE_CLIENTS)]
    group = nodes[0].create_group(users)
    tokens = [await asyncio.to_thread(nodes[0].token, user) for user in users]
    owners: list[str] = []
    started = time.monotonic()
    for round_ in range(RACE_ROUNDS):
        sessions = [f"r{round_}-{user}" for user in users]
        owner = asyncio.create_task(claimed(redis_server, "group", group))
        all_in = asyncio.Barrier(RACE_CLIENTS)
        views = await asyncio.gather(
            *(
                race_client(nodes[n % 3], tokens[n], group, sessions[n], all_in)
                for n in range(RACE_CLIENTS)
            )
        )
        assert all(view == set(sessions) for view in views)
        owners.append((await owner)["owner"])
        # everyone left: the room empties and its lease is released for the next round
        deadline = time.monotonic() + 10
        while lease(redis_server, "group", group):
            assert time.monotonic() < deadline, "the room was not released"
            await asyncio.sleep(0.05)
    took = time.monotonic() - started
    won = {node: owners.count(node) for node in sorted(set(owners))}
    print(f"{RACE_ROUNDS} rounds of {RACE_CLIENTS} joins through 3 nodes in {took:.1f} s: {won}")


async def relayed_call(
    nodes: list[ZvonokServer], redis: RedisServer, aiortc_peers: AiortcPeers, group: str
) -> tuple[int, dict[str, str], AiortcPeer, AiortcPeer]:
    """alice on the room's owner (node0 places it on itself), bob relayed through node1: the
    owner's index, the first lease, and both peers once each receives the other."""
    alice = await aiortc_peers.open(nodes[0], "alice", group, "red", kind="group", session_id="a-1")
    first = await claimed(redis, "group", group)
    owner = int(first["owner"].removeprefix("node"))
    edge = 1 if owner == 0 else 0
    if owner != 0:  # alice is relayed; bob joins through the owner's other neighbour
        edge = next(n for n in range(len(nodes)) if n not in (0, owner))
    bob = await aiortc_peers.open(nodes[edge], "bob", group, "blue", kind="group", session_id="b-1")
    await sees(alice, "bob", "blue")
    await sees(bob, "alice", "red")
    return owner, first, alice, bob


@pytest.mark.allow_errors(server=[r"redis", r"Redis"], reason="the test restarts Redis empty")
async def test_redis_restarted_empty_the_owner_re_asserts_its_room(
    zvonok_server_factory: ServerFactory,
    redis_server: RedisServer,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
) -> None:
    nodes = start_nodes(zvonok_server_factory, redis_server, tmp_path / "shared", 2)
    group = nodes[0].create_group(["alice", "bob", "carol"])
    owner, first, alice, bob = await relayed_call(nodes, redis_server, aiortc_peers, group)
    restarted = time.monotonic()
    redis_server.restart()
    deadline = restarted + 5
    while (now := lease(redis_server, "group", group)).get("owner") != first["owner"]:
        assert time.monotonic() < deadline, f"the room was not re-asserted: {now}"
        await asyncio.sleep(0.05)
    print(f"room re-asserted {time.monotonic() - restarted:.2f} s after the empty restart")
    # a join through the other node reaches the same room (nobody claimed it meanwhile)
    other = nodes[1 - owner] if len(nodes) == 2 else nodes[0]
    # as a client does (docs/protocol.md): a node whose Redis breaker opened during the restart
    # refuses with cluster-unavailable until its next probe succeeds; retry after retryAfterMs
    refusals: list[dict[str, Any]] = []
    for _ in range(3):
        hello = await join_once(other, "carol", group, f"carol-{len(refusals) + 1}")
        if hello["type"] != "error" or hello["payload"]["code"] != "cluster-unavailable":
            break
        refusals.append(hello["payload"])
        await asyncio.sleep(hello["payload"]["retryAfterMs"] / 1000)
    print(f"joined through the other node after {len(refusals)} refusals: {refusals}")
    assert hello["type"] == "joined", hello
    assert {p["userId"] for p in hello["payload"]["participants"]} == {"alice", "bob"}
    await sees(alice, "bob", "blue", 5)
    await sees(bob, "alice", "red", 5)
    assert alice.closes == [] and bob.closes == [] and alice.server_errors == []
    for peer in (alice, bob):
        await peer.leave()


@pytest.mark.allow_errors(client=[r"room-moved"], reason="the test moves the room by hand")
async def test_split_brain_the_loser_moves_its_clients_to_the_winner(
    zvonok_server_factory: ServerFactory,
    redis_server: RedisServer,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
) -> None:
    nodes = start_nodes(zvonok_server_factory, redis_server, tmp_path / "shared", 2)
    group = nodes[0].create_group(["alice", "bob"])
    owner, first, alice, bob = await relayed_call(nodes, redis_server, aiortc_peers, group)
    winner = f"node{1 - owner}"
    boot = command(redis_server.port, "HGET", f"zv:node:{winner}", "boot_id").decode()
    boot = boot.split("\r\n")[1]
    epoch = str(int(first["epoch"]) + 1)
    key = f"zv:room:group:{group}"
    command(redis_server.port, "HSET", key, "owner", winner, "boot", boot, "epoch", epoch)
    moved = time.monotonic()
    for peer in (alice, bob):
        while not peer.closes:
            assert time.monotonic() - moved < 5, f"{peer.name}: not moved"
            await asyncio.sleep(0.05)
        assert peer.closes == [1012], peer.closes
        assert [e["code"] for e in peer.server_errors] == ["room-moved"], peer.server_errors
    told = time.monotonic() - moved
    alice2 = await aiortc_peers.open(
        nodes[0], "alice", group, "red", kind="group", session_id="a-1"
    )
    bob2 = await aiortc_peers.open(nodes[1], "bob", group, "blue", kind="group", session_id="b-1")
    await sees(alice2, "bob", "blue")
    await sees(bob2, "alice", "red")
    print(f"room-moved {told:.2f} s after the record changed; media on {winner}")
    assert lease(redis_server, "group", group) == {"owner": winner, "boot": boot, "epoch": epoch}
    for peer in (alice2, bob2):
        await peer.leave()


async def test_a_session_resumes_through_another_node_and_cannot_be_taken(
    zvonok_server_factory: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Session bindings are cluster-wide: alice's socket to node0 drops, she resumes through
    node1 (``resumed: true``, same room); mallory cannot take her sessionId through node1."""
    nodes = start_nodes(zvonok_server_factory, redis_server, tmp_path / "shared", 2)
    group = nodes[0].create_group(["alice", "bob", "mallory"])
    alice_token = await asyncio.to_thread(nodes[0].token, "alice")
    join = {"type": "join", "roomId": group, "sessionId": "alice-1"}
    async with connect(nodes[0].ws_url("group", group) + "?access_token=" + alice_token) as ws:
        await ws.send(json.dumps(join))
        first = await recv_until(ws, "joined")
    assert first["payload"]["resumed"] is False
    # the socket dropped without a leave: the session waits for a resume (resume_grace 5 s)
    taken = await join_once(nodes[1], "mallory", group, "alice-1")
    assert taken["type"] == "error" and taken["payload"]["code"] == "session-taken", taken
    async with connect(nodes[1].ws_url("group", group) + "?access_token=" + alice_token) as ws:
        await ws.send(json.dumps(join))
        again = await recv_until(ws, "joined")
        assert again["payload"]["resumed"] is True, again
        assert again["payload"]["room"] == first["payload"]["room"]
        hello = await join_once(nodes[0], "bob", group, "bob-1")
        assert [p["userId"] for p in hello["payload"]["participants"]] == ["alice"]
        await ws.send(json.dumps({"type": "leave", "roomId": group, "sessionId": "alice-1"}))
