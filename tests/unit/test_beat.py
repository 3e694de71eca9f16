"""The shared keepalive beat (``beat.Beat``) on a real event loop, and the WebSocket keepalive on
it: uvicorn serving real sockets in-process with ``httpserver``'s protocol classes (the beat
scaled down to 50 ms): every connection's pings run on shared beats, each still within
``ping_interval`` of the one before (at most one beat early), and a client that stops answering
is cut exactly ``silence_timeout`` after its last sign of life."""

from __future__ import annotations

import asyncio
import base64
import functools
import os
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect

from zvonok.beat import Beat, BeatHandle
from zvonok.httpserver import EdgeLimits, protocol_classes

Q = 0.05


async def test_callbacks_of_one_beat_share_one_timer_and_run_at_most_one_beat_early() -> None:
    loop = asyncio.get_running_loop()
    beat = Beat(Q)
    ran: dict[int, float] = {}
    start = loop.time()
    wanted = {i: start + 0.2 + i * Q / 5 for i in range(5)}  # all within one beat or two

    def note(i: int) -> None:
        ran[i] = loop.time()

    for i, when in wanted.items():
        handle = beat.call_at(loop, when, functools.partial(note, i))
        assert isinstance(handle, BeatHandle)
    cancelled = beat.call_at(loop, start + 0.2, functools.partial(note, 99))
    cancelled.cancel()
    assert beat.pending() == 5
    await asyncio.sleep(0.35)
    assert sorted(ran) == [0, 1, 2, 3, 4]
    assert beat.timers <= 2
    assert len({round(at / Q) for at in ran.values()}) == beat.timers
    for i, at in ran.items():
        assert wanted[i] - Q - 0.005 <= at <= wanted[i] + 0.02
    assert beat.pending() == 0


async def test_a_cancelled_callback_leaves_nothing_filed() -> None:
    """A connection's timers are cancelled when it closes; the beat must not keep their handles
    (and what they reference) until their multiple comes, up to ``silence_timeout`` later: with
    connections coming and going, that was two objects per closed connection
    (test_resilience's 300 join/leave cycles found them)."""
    loop = asyncio.get_running_loop()
    beat = Beat(Q)
    start = loop.time()
    handles = [beat.call_at(loop, start + 10 * Q + i * Q / 3, lambda: None) for i in range(30)]
    for handle in handles:
        handle.cancel()
        handle.cancel()  # twice is harmless
    assert all(h.cancelled() for h in handles)
    assert beat.pending() == 0
    assert sum(len(waiting) for waiting in beat._slots.values()) == 0


async def test_a_near_deadline_gets_a_timer_of_its_own_and_a_failure_stays_contained() -> None:
    loop = asyncio.get_running_loop()
    beat = Beat(Q)
    ran: list[str] = []
    start = loop.time()
    near = beat.call_at(loop, start + 1.5 * Q, lambda: ran.append(f"{loop.time() - start:.3f}"))
    assert isinstance(near, asyncio.TimerHandle)
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:

        def fail() -> None:
            raise ZeroDivisionError

        beat.call_at(loop, start + 3 * Q, fail)
        beat.call_at(loop, start + 3 * Q, lambda: ran.append("after"))
        await asyncio.sleep(4 * Q)
    finally:
        loop.set_exception_handler(None)
    assert float(ran[0]) >= 1.5 * Q - 0.002  # exact: never early
    assert ran[1] == "after"
    assert len(errors) == 1 and isinstance(errors[0]["exception"], ZeroDivisionError)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts a WebSocket and reads it until it closes."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


PING = 0.3
SILENCE = 0.8


@pytest.fixture
async def edge_server() -> Any:
    """uvicorn on 127.0.0.1 with the edge's protocols, its beat at 50 ms; yields (port, pings,
    WebSocket class): ``pings`` records each connection's ping times."""
    http, ws = protocol_classes(EdgeLimits(silence_timeout=SILENCE))
    ws.edge.beat = Beat(Q)
    pings: dict[int, list[float]] = {}

    class Recording(ws):  # type: ignore[valid-type,misc]
        def send_keepalive_ping(self) -> None:
            pings.setdefault(id(self), []).append(self.loop.time())
            super().send_keepalive_ping()

    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=0,
        http=http,
        ws=Recording,
        ws_ping_interval=PING,
        ws_ping_timeout=None,
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield port, pings, ws
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def test_websocket_pings_share_beats_and_keep_their_interval(edge_server: Any) -> None:
    port, pings, ws = edge_server
    clients = list(await asyncio.gather(*(connect(f"ws://127.0.0.1:{port}/") for _ in range(6))))
    await asyncio.sleep(1.5)
    try:
        times = [t for series in pings.values() for t in series]
        assert len(pings) == 6 and all(len(series) >= 3 for series in pings.values())
        for series in pings.values():
            for before, after in zip(series, series[1:], strict=False):
                assert PING - Q - 0.01 <= after - before <= PING + 0.03
        # every ping went out on a beat (a multiple of Q), shared with other connections
        assert all(abs(t / Q - round(t / Q)) * Q < 0.01 for t in times)
        assert len({round(t / Q) for t in times}) <= len(times) // 2  # (one each before)
        assert all(client.state.name == "OPEN" for client in clients)  # the pongs count
    finally:
        for client in clients:
            await client.close()


async def test_a_client_that_stops_answering_is_cut_exactly_at_the_silence_timeout(
    edge_server: Any,
) -> None:
    port, _pings, _ws = edge_server
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    accepted = loop.time()
    while await reader.read(4096):  # pings (never answered), then the close frame
        pass
    closed = loop.time() - accepted
    writer.close()
    assert SILENCE - 0.01 <= closed <= SILENCE + 0.06, closed
