"""Observability and operations against a real server and real aiortc clients.

One call exercises everything a call moves: Prometheus counters (checked against what the
clients themselves received), RTT/loss histograms once RTCP flows, the periodic ``stats``
message, the admin API (mute, kick, close) taking effect on the media, signed webhooks arriving
in order at a real local receiver that fails at first, and no token ever in the server's log.
A second server checks that webhook receivers that hang or refuse do not slow a join, and that
the admin API does not exist without an admin token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from .harness.aiortc_peer import AiortcPeer, AiortcPeers
from .harness.server import ServerFactory, ZvonokServer, free_port
from .harness.stats import PeerReport
from .harness.webhook_receiver import HangingPort, WebhookReceiver

pytestmark = pytest.mark.timeout(120)

WAIT = 30.0
ADMIN = "admin-secret-for-tests-0123456789"
HOOK_SECRET = "hook-secret-for-tests"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver(fail_first=2)
    try:
        yield hooks
    finally:
        hooks.close()


Samples = list[tuple[str, dict[str, str], float]]


async def scrape(server: ZvonokServer) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(server.http_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        v
        for n, lbls, v in samples
        if n == name and all(lbls.get(k) == x for k, x in labels.items())
    )


async def admin(server: ZvonokServer, method: str, path: str, token: str = ADMIN) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.request(
            method, server.http_url + path, headers={"Authorization": f"Bearer {token}"}
        )


def packets_from(report: PeerReport, user: str, kind: str) -> int:
    return sum(t.packets_received or 0 for t in report.tracks_from(user, kind=kind))


async def packets_growth(peer: AiortcPeer, user: str, kind: str, seconds: float) -> int:
    before = packets_from(await peer.report(), user, kind)
    await asyncio.sleep(seconds)
    return packets_from(await peer.report(), user, kind) - before


async def poll(check: Any, what: str, timeout: float = WAIT) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.25) + 1):
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_real_call_is_observable_and_manageable(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers, receiver: WebhookReceiver
) -> None:
    server = zvonok_server_factory.start(
        env={
            "ZVONOK_ADMIN_TOKEN": ADMIN,
            "ZVONOK_STATS_INTERVAL": "1",
            "ZVONOK_WEBHOOK_URLS": json.dumps([receiver.url]),
            "ZVONOK_WEBHOOK_SECRET": HOOK_SECRET,
            "ZVONOK_WEBHOOK_BACKOFF": "0.1",
            "ZVONOK_LOG_LEVEL": "DEBUG",
        }
    )
    chat = server.create_chat(["alice", "bob"])
    alice_token = await asyncio.to_thread(server.token, "alice")
    bob_token = await asyncio.to_thread(server.token, "bob")
    a = await aiortc_peers.open(
        server, user="alice", room=chat, color="red", token=alice_token, auth="query"
    )
    b = await aiortc_peers.open(server, user="bob", room=chat, color="blue", token=bob_token)
    await a.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
    await b.wait_receiving(from_user="alice", color="red", timeout=WAIT)

    # RTT and loss appear once senders' reports and the clients' receiver reports have flowed.
    async def rtt_observed() -> Samples | None:
        samples = await scrape(server)
        return samples if value(samples, "zvonok_rtt_seconds_count") > 0 else None

    samples = await poll(rtt_observed, "an RTT observation")
    assert value(samples, "zvonok_loss_ratio_count", kind="video") > 0
    assert value(samples, "zvonok_jitter_seconds_count", kind="audio") > 0
    assert value(samples, "zvonok_rtt_seconds_sum") / value(samples, "zvonok_rtt_seconds_count") < 1

    # The counters move by what the clients actually got.
    reports = [await a.report(), await b.report()]
    samples = await scrape(server)
    for kind in ("audio", "video"):
        got = sum(packets_from(r, u, kind) for r, u in zip(reports, ("bob", "alice"), strict=True))
        sent = value(samples, "zvonok_rtp_packets_sent_total", kind=kind)
        received = value(samples, "zvonok_rtp_packets_received_total", kind=kind)
        assert got > 50, f"{kind}: clients got only {got} packets"
        assert abs(sent - got) <= 0.15 * got + 30, f"{kind}: sent {sent}, clients got {got}"
        assert sent <= received + 5 and sent >= 0.8 * received, (kind, sent, received)
        assert value(samples, "zvonok_rtp_bytes_received_total", kind=kind) > 12 * received
        assert value(samples, "zvonok_tracks", kind=kind) == 2
    assert value(samples, "zvonok_sessions", state="connected") == 2
    assert value(samples, "zvonok_rooms") == 1
    assert value(samples, "zvonok_signaling_messages_total", direction="in", type="join") == 2
    assert value(samples, "zvonok_signaling_messages_total", direction="out", type="stats") >= 2
    assert value(samples, "zvonok_connection_state_transitions_total", state="connected") == 2
    assert value(samples, "zvonok_transport_bytes_received_total") > 0
    assert value(samples, "zvonok_event_loop_lag_seconds_count") > 0

    # The periodic stats message, and the same figures in the admin API.
    await a.wait_message("stats", count=2, timeout=10)
    rooms = (await admin(server, "GET", "/admin/rooms")).json()["rooms"]
    assert [r["room"] for r in rooms] == [f"chat:{chat}"]
    people = {p["userId"]: p for p in rooms[0]["participants"]}
    assert set(people) == {"alice", "bob"}
    quality = people["alice"]["quality"]
    assert quality["bitrateIn"] > 10_000 and quality["bitrateOut"] > 10_000, quality
    assert {r["kind"] for r in quality["receiving"]} == {"audio", "video"}
    assert (await admin(server, "GET", "/admin/rooms", token="wrong")).status_code == 401
    listed = await zvonok_cli("rooms", "--url", server.http_url, "--token", ADMIN)
    assert f"chat:{chat}" in listed and "user=alice" in listed and "user=bob" in listed

    # Mute bob's video: alice stops getting it (audio goes on) and everyone is told.
    bob_video = next(t["trackId"] for t in people["bob"]["tracks"] if t["kind"] == "video")
    bob_session = people["bob"]["sessionId"]
    mute_path = f"/admin/sessions/{bob_session}/tracks/{bob_video}/mute"
    assert (await admin(server, "POST", mute_path)).json()["ok"]
    await a.wait_message("track-muted", timeout=5)
    await b.wait_message("track-muted", timeout=5)
    await asyncio.sleep(0.5)
    assert await packets_growth(a, "bob", "video", 1.5) <= 2
    assert await packets_growth(a, "bob", "audio", 1.0) > 10
    await admin(server, "POST", mute_path.replace("/mute", "/unmute"))
    await a.wait_receiving(from_user="bob", color="blue", timeout=WAIT)

    # Kick bob: he is told, his socket closes with 4003, his media stops; alice sees him leave.
    assert (await admin(server, "POST", f"/admin/sessions/{bob_session}/kick")).json()["ok"]
    await b.wait_for(
        lambda r: None if 4003 in b.closes else f"closes {b.closes}", "close 4003", timeout=5
    )
    assert [e["code"] for e in b.server_errors] == ["kicked"]
    await a.wait_participant("bob", present=False, timeout=5)
    await asyncio.sleep(0.5)
    assert await packets_growth(b, "alice", "video", 1.5) <= 2
    samples = await scrape(server)
    assert value(samples, "zvonok_sessions_ended_total", reason="kicked") == 1
    assert value(samples, "zvonok_admin_actions_total", action="kick") == 1

    # Close the room: alice is told (4004), the room is gone.
    closed = await admin(server, "DELETE", f"/admin/rooms/chat:{chat}")
    assert closed.json() == {"ok": True, "changed": True, "sessions": 1}
    await a.wait_for(
        lambda r: None if 4004 in a.closes else f"closes {a.closes}", "close 4004", timeout=5
    )
    assert a.server_errors[-1]["code"] == "room-closed"

    # Webhooks: signed, retried after the receiver's 500s, complete and in order.
    await poll(
        lambda: _async(any(e["type"] == "room_finished" for e in receiver.accepted())),
        "room_finished webhook",
        timeout=10,
    )
    check_webhooks(receiver, chat)

    # No token ever reached the log (alice's was in the query string), even at DEBUG.
    text = "\n".join(str(line) for line in server.logs())
    assert "chat:" in text and "DEBUG" in text
    for secret in (alice_token, bob_token, ADMIN, HOOK_SECRET):
        assert secret not in text
        assert secret.split(".")[-1] not in text


async def zvonok_cli(*args: str) -> str:
    """``python -m zvonok <args>`` (the admin wrappers); its stdout."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "zvonok", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _async(result: bool) -> bool:
    return result


def check_webhooks(receiver: WebhookReceiver, chat: str) -> None:
    deliveries = receiver.deliveries
    assert [d.status for d in deliveries[:3]] == [500, 500, 200]
    assert len({d.event["id"] for d in deliveries[:3]}) == 1, "the retry carries the same id"
    for d in deliveries:
        stamp = d.headers["x-zvonok-timestamp"]
        mac = hmac.new(HOOK_SECRET.encode(), stamp.encode() + b"." + d.body, hashlib.sha256)
        assert d.headers["x-zvonok-signature"] == "v1=" + mac.hexdigest()
        assert d.headers["x-zvonok-event-id"] == d.event["id"]
    events = receiver.accepted()
    assert len({e["id"] for e in events}) == len(events)
    assert all(e["room"] == f"chat:{chat}" and e["roomId"] == chat for e in events)
    types = [e["type"] for e in events]
    assert types[0] == "room_started" and types[-1] == "room_finished", types
    joined = [e["userId"] for e in events if e["type"] == "participant_joined"]
    assert joined == ["alice", "bob"]
    left = [(e["userId"], e["reason"]) for e in events if e["type"] == "participant_left"]
    assert left == [("bob", "kicked"), ("alice", "room-closed")]
    assert types.count("track_published") == 4 and types.count("track_unpublished") == 4
    for event in events:
        if event["type"] == "track_published":
            track = event["track"]["trackId"]
            after = types.index("track_unpublished", types.index("track_published"))
            assert any(e.get("track", {}).get("trackId") == track for e in events[after:])
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)


async def test_dead_webhook_receivers_do_not_slow_joins(
    zvonok_server_factory: ServerFactory,
) -> None:
    hanging = HangingPort()
    refused = f"http://127.0.0.1:{free_port()}/hooks"
    try:
        server = zvonok_server_factory.start(
            env={
                "ZVONOK_WEBHOOK_URLS": json.dumps([hanging.url, refused]),
                "ZVONOK_WEBHOOK_TIMEOUT": "20",
            }
        )
        durations = []
        for user in ("u1", "u2", "u3"):
            group = server.create_group([user])
            token = await asyncio.to_thread(server.token, user)
            started = time.monotonic()
            async with connect(
                server.ws_url("group", group),
                additional_headers=[("Authorization", f"Bearer {token}")],
            ) as ws:
                await ws.send(
                    json.dumps({"type": "join", "roomId": group, "sessionId": f"s-{user}"})
                )
                for _ in range(20):
                    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if message["type"] == "joined":
                        break
                durations.append(time.monotonic() - started)
                await ws.send(
                    json.dumps({"type": "leave", "roomId": group, "sessionId": f"s-{user}"})
                )
        assert max(durations) < 1.0, durations
        samples = await scrape(server)
        assert value(samples, "zvonok_webhook_queue_depth") > 0
        assert value(samples, "zvonok_sessions_started_total") == 3
        async with httpx.AsyncClient() as client:
            for path in ("/admin/rooms", "/admin/docs", "/docs", "/openapi.json"):
                response = await client.get(server.http_url + path)
                assert response.status_code == 404, path
            ready = await client.get(server.http_url + "/readyz")
            assert ready.status_code == 200
    finally:
        hanging.close()
