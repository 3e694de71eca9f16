"""The front's ``RelayedRooms``/``WorkerPool`` driving a real worker (``relay.worker.serve``: a
``MediaWorker`` on 127.0.0.1 port 0, a ``RoomService`` built by ``zvonok.compose``) in this
process, over a ``socket.socketpair()`` link: what a WebSocket session sees through the relay.

The handle is built the way ``WorkerPool._spawn`` builds one, with the pool's own ``_serve`` and
``_note`` on the front's link; its process is a real ``sleep`` (killed by PID at the end), so the
pool's watcher can see a worker "crash" when it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from zvonok.cluster.base import SessionBinding
from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.config import Settings
from zvonok.errors import SignalError
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.relay.frames import Frame
from zvonok.relay.front import (
    WORKER_LOST,
    WORKER_LOST_CLOSE_CODE,
    RelayedRooms,
    RelayedSession,
    WorkerHandle,
    WorkerPool,
)
from zvonok.relay.link import Link, RemoteError
from zvonok.relay.worker import serve
from zvonok.signaling.messages import IcePayload, TrackSetting

from ..fakes import RecordingSink
from .conftest import Spawn

ROOM = RoomKey(RoomKind.GROUP, "7")


@dataclass
class Node:
    pool: WorkerPool
    rooms: RelayedRooms
    handles: list[WorkerHandle]
    workers: list[asyncio.Task[None]]
    sessions: LocalSessionDirectory

    @property
    def handle(self) -> WorkerHandle:
        return self.handles[0]

    async def join(
        self, user: str, session: str, sink: RecordingSink, key: RoomKey = ROOM
    ) -> RelayedSession:
        return await self.rooms.join(key, UserId(user), SessionId(session), key.id, sink)

    async def ask(self, method: str, index: int = 0) -> Any:
        return await self.handles[index].link.request(method, {})


async def until(predicate: Callable[[], bool], within: float = 1.5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


NodeFactory = Callable[..., Awaitable[Node]]


async def attach(
    pool: WorkerPool, index: int, sock: socket.socket, process: asyncio.subprocess.Process
) -> WorkerHandle:
    """What ``WorkerPool._spawn`` does once the worker process runs: its handle and link."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    holder: list[WorkerHandle] = []
    link = Link(
        reader,
        writer,
        name=f"worker-{index}",
        on_request=lambda frame: pool._serve(holder[0], frame),
        on_note=lambda frame: pool._note(holder[0], frame),
    )
    handle = WorkerHandle(index, process, link, time.monotonic())
    holder.append(handle)
    pool.workers[index] = handle
    link.start()
    return handle


@pytest.fixture
async def node(sleeper: Spawn) -> AsyncIterator[NodeFactory]:
    nodes: list[Node] = []

    async def start(workers: int = 1, **values: Any) -> Node:
        settings = Settings(
            media_host="127.0.0.1",
            media_port=0,
            announce_ips=["127.0.0.1"],
            ice_tcp=False,
            stats_interval=0,
            **values,
        )
        sessions = LocalSessionDirectory()
        pool = WorkerPool(settings, workers, sessions=sessions, rooms=LocalRoomDirectory())
        started = Node(pool, RelayedRooms(pool), [], [], sessions)
        nodes.append(started)
        for index in range(workers):
            front_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            started.workers.append(asyncio.create_task(serve(index, settings, worker_end)))
            handle = await attach(pool, index, front_end, await sleeper())
            started.handles.append(handle)
            await asyncio.wait_for(handle.ready.wait(), 1.5)
        return started

    yield start
    for started in nodes:
        for handle in started.handles:
            if not handle.link.closed.is_set():
                with contextlib.suppress(Exception):
                    await handle.link.request("stop", {}, wait=1.0)
            with contextlib.suppress(ProcessLookupError):
                handle.process.kill()
        await started.rooms.close()
        await asyncio.wait_for(asyncio.gather(*started.workers), 2.0)


async def test_the_worker_reports_ready_with_its_media_port(node: NodeFactory) -> None:
    n = await node()
    info = n.handle.info
    assert info["mediaPort"] > 0 and info["candidates"]
    assert n.handle.live and n.pool.live_workers() == [n.handle]


async def test_join_relays_joined_and_the_others_hear_of_a_second_session(
    node: NodeFactory,
) -> None:
    n = await node()
    a, b = RecordingSink(), RecordingSink()
    first = await n.join("alice", "a", a)
    assert a.types()[:3] == ["joined", "tracks", "offer"]
    assert a.last("joined")["resumed"] is False
    assert n.pool.locate(ROOM) == "0" and first.relay in n.handle.relays
    assert await n.sessions.lookup(SessionId("a")) is not None  # bound node-wide by the front
    await n.join("bob", "b", b)
    await until(lambda: "participant-joined" in a.types())
    assert a.last("participant-joined") == {"sessionId": "b", "userId": "bob"}
    assert b.last("joined")["participants"] == [{"sessionId": "a", "userId": "alice"}]
    state = await n.ask("state")
    assert state["sessions"] == 2
    assert [p["sessionId"] for p in state["rooms"][str(ROOM)]["participants"]] == ["a", "b"]


async def test_leave_ends_the_session_and_frees_the_room(node: NodeFactory) -> None:
    n = await node()
    a, b = RecordingSink(), RecordingSink()
    first = await n.join("alice", "a", a)
    await n.join("bob", "b", b)
    await first.leave()
    await until(lambda: "participant-left" in b.types())
    assert first.relay not in n.handle.relays
    await until(lambda: first.closed)  # the worker's "ended" note
    with pytest.raises(SignalError) as gone:
        await first.offer("v=0\r\n")
    assert gone.value.code == "not-joined"
    assert (await n.ask("state"))["sessions"] == 1


async def test_the_last_leave_unpins_the_room(node: NodeFactory) -> None:
    n = await node()
    only = await n.join("alice", "a", RecordingSink())
    assert n.pool.locate(ROOM) == "0"
    await only.leave()
    await until(lambda: n.pool.locate(ROOM) is None and not n.handle.rooms)
    assert (await n.ask("state"))["rooms"] == {}


async def test_detach_then_resume_on_a_new_sink(node: NodeFactory) -> None:
    n = await node(resume_grace=30)
    first_sink, second_sink = RecordingSink(), RecordingSink()
    first = await n.join("alice", "a", first_sink)
    first.detach(first_sink)
    assert first.relay not in n.handle.relays
    state = await n.ask("state")  # the link is ordered: the detach was served before this
    assert state["sessions"] == 1
    [participant] = state["rooms"][str(ROOM)]["participants"]
    assert participant["sessionId"] == "a"
    again = await n.join("alice", "a", second_sink)
    assert again.relay != first.relay
    assert second_sink.last("joined")["resumed"] is True
    assert "offer" in second_sink.types()  # the unanswered offer is sent again
    assert first_sink.closed is None  # the detached sink hears nothing more


async def test_refusals_come_back_as_signal_errors(node: NodeFactory) -> None:
    n = await node(max_participants=1)
    await n.join("alice", "a", RecordingSink())
    with pytest.raises(SignalError) as full:
        await n.join("bob", "b", RecordingSink())
    assert full.value.code == "room-full"
    with pytest.raises(SignalError) as taken:
        await n.join("mallory", "a", RecordingSink())
    assert taken.value.code == "session-taken"
    assert len(n.handle.relays) == 1 and not n.handle.joining


async def test_offers_and_candidates_are_judged_by_the_worker(node: NodeFactory) -> None:
    n = await node()
    sink = RecordingSink()
    session = await n.join("alice", "a", sink)
    await session.answer("this is no SDP")  # refused as a message, relayed as a note
    await until(lambda: "bad-sdp" in sink.errors())
    assert sink.last("error")["ref"] == "answer"
    with pytest.raises(SignalError) as candidate:
        await session.ice(IcePayload("candidate:garbage", "0", 0))
    assert candidate.value.code == "bad-candidate"
    # a lone surrogate a client escaped in its JSON travels (it used to break the link)
    await session.ice(IcePayload("", "\ud800", None))
    # the worker knows track-settings (an unknown request would come back as ``internal``)
    await session.track_settings((TrackSetting("t-none", max_width=320),))
    assert not n.handle.link.closed.is_set()
    assert (await n.ask("state"))["sessions"] == 1


async def test_the_worker_answers_state_and_metrics(node: NodeFactory) -> None:
    n = await node()
    await n.join("alice", "a", RecordingSink())
    answers = await n.pool.ask_all("state", {})
    assert list(answers) == ["0"] and answers["0"]["sessions"] == 1
    assert answers["0"]["transports"] == 1
    exposition = (await n.pool.ask_all("metrics", {}))["0"]
    assert isinstance(exposition, str) and "zvonok_" in exposition


async def test_admin_calls_reach_the_worker_s_rooms(node: NodeFactory) -> None:
    n = await node()
    a, b = RecordingSink(), RecordingSink()
    first = await n.join("alice", "a", a)
    await n.join("bob", "b", b)
    listing = await n.ask("admin.list_rooms")
    assert listing["sessions"] == 2 and [r["room"] for r in listing["rooms"]] == [str(ROOM)]
    assert await n.handle.link.request("admin.kick", {"sessionId": "a"}) is True
    await until(lambda: first.closed and a.closed is not None)
    assert a.closed == (4003, "kicked")
    await until(lambda: "participant-left" in b.types())
    with pytest.raises(RemoteError, match="ValueError"):
        await n.ask("admin.nothing")


async def test_a_worker_that_dies_loses_its_sessions_with_1012(node: NodeFactory) -> None:
    n = await node()
    a, b = RecordingSink(), RecordingSink()
    first = await n.join("alice", "a", a)
    await n.join("bob", "b", b)
    n.pool._spawn_task(n.pool._watch(n.handle))
    n.handle.process.kill()  # the "worker" process exits
    await until(lambda: a.closed is not None and b.closed is not None)
    for sink in (a, b):
        assert sink.errors()[-1] == WORKER_LOST
        assert sink.closed == (WORKER_LOST_CLOSE_CODE, WORKER_LOST)
    assert first.closed and n.handle.lost and not n.handle.live
    assert n.pool.locate(ROOM) is None and not n.handle.relays
    with pytest.raises(SignalError) as lost:
        await first.offer("v=0\r\n")
    assert (lost.value.code, lost.value.close_code) == (WORKER_LOST, WORKER_LOST_CLOSE_CODE)
    with pytest.raises(SignalError) as nowhere:  # no live worker to place a room on
        await n.join("carol", "c", RecordingSink())
    assert nowhere.value.code == WORKER_LOST
    n.pool.closing = True  # no restart: this test has no worker program to spawn
    await until(lambda: n.handle.link.closed.is_set())
    await asyncio.wait_for(n.workers[0], 1.5)  # the worker saw its link go, and exited


async def test_a_refused_join_leaves_no_pin_for_a_room_that_never_was(node: NodeFactory) -> None:
    n = await node()
    await n.join("alice", "a", RecordingSink())
    other = RoomKey(RoomKind.GROUP, "8")
    with pytest.raises(SignalError) as taken:
        await n.rooms.join(other, UserId("mallory"), SessionId("a"), 8, RecordingSink())
    assert taken.value.code == "session-taken"
    assert str(other) not in (await n.ask("state"))["rooms"]
    await until(lambda: n.pool.locate(other) is None, within=0.3)


async def test_shutdown_tells_every_relayed_session_to_reconnect(node: NodeFactory) -> None:
    n = await node()
    a, b = RecordingSink(), RecordingSink()
    await n.join("alice", "a", a)
    await n.join("bob", "b", b)
    n.rooms.begin_shutdown()
    await until(lambda: a.closed is not None and b.closed is not None)
    for sink in (a, b):
        assert sink.errors()[-1] == "shutdown" and sink.closed is not None
        assert sink.closed[0] == 1012
    with pytest.raises(SignalError) as refused:
        await n.join("carol", "c", RecordingSink())
    assert (refused.value.code, refused.value.close_code) == ("shutdown", 1012)


async def test_the_worker_reports_its_load_every_second(node: NodeFactory) -> None:
    n = await node()
    await n.join("alice", "a", RecordingSink())
    assert n.handle.placed_since_report == 1
    await until(lambda: bool(n.handle.load), within=1.9)
    load = n.handle.load
    assert set(load) == {"cpu", "pps", "sessions", "rooms"}
    assert (load["sessions"], load["rooms"]) == (1, 1) and 0 <= load["cpu"]
    assert n.handle.placed_since_report == 0


async def test_a_worker_without_media_sleeps_after_one_last_load_report(
    node: NodeFactory,
) -> None:
    n = await node()
    await asyncio.sleep(1.3)  # past LOAD_INTERVAL: a worker with no room neither ticks nor reports
    assert n.handle.load == {}
    session = await n.join("alice", "a", RecordingSink())
    await until(lambda: n.handle.load.get("sessions") == 1, within=1.9)
    await session.leave()
    # the tick that finds the worker idle reports at once, then the tick sleeps: no more frames
    await until(lambda: (n.handle.load["sessions"], n.handle.load["rooms"]) == (0, 0), within=1.0)
    frames = n.handle.link.frames_in
    await asyncio.sleep(0.6)
    assert n.handle.link.frames_in == frames


async def test_two_rooms_land_on_two_workers(node: NodeFactory) -> None:
    n = await node(workers=2)
    other = RoomKey(RoomKind.GROUP, "8")
    a, b = RecordingSink(), RecordingSink()
    await n.join("alice", "a", a)
    await n.join("bob", "b", b, other)
    placed = {key: n.pool.locate(key) for key in (ROOM, other)}
    assert sorted(str(name) for name in placed.values()) == ["0", "1"]
    for key, name in placed.items():
        assert name is not None
        assert list((await n.ask("state", int(name)))["rooms"]) == [str(key)]
    assert a.last("joined")["participants"] == [] and "participant-joined" not in a.types()
    expositions = await n.pool.ask_all("metrics", {})
    assert sorted(expositions) == ["0", "1"] and all(expositions.values())


async def test_a_room_whose_worker_died_is_created_again_on_a_live_one(node: NodeFactory) -> None:
    n = await node(workers=2)
    other = RoomKey(RoomKind.GROUP, "8")
    a, b = RecordingSink(), RecordingSink()
    await n.join("alice", "a", a)  # worker 0
    await n.join("bob", "b", b, other)  # worker 1
    dead, live = n.handles[0], n.handles[1]
    assert n.pool.locate(ROOM) == dead.name
    n.pool._spawn_task(n.pool._watch(dead))
    dead.process.kill()
    await until(lambda: a.closed is not None)
    assert a.closed == (WORKER_LOST_CLOSE_CODE, WORKER_LOST)
    n.pool.closing = True  # no restart: this test has no worker program to spawn
    assert b.closed is None and n.pool.locate(other) == live.name
    again = RecordingSink()
    await n.join("alice", "a", again)  # the client joins again with its session id
    assert n.pool.locate(ROOM) == live.name
    assert again.last("joined")["resumed"] is False
    assert sorted((await n.ask("state", 1))["rooms"]) == sorted([str(ROOM), str(other)])


async def test_a_draining_front_keeps_rooms_it_has_and_places_no_new_one(
    node: NodeFactory,
) -> None:
    n = await node()
    a = RecordingSink()
    await n.join("alice", "a", a)
    n.rooms.set_drain(time.time() + 60)
    assert not n.rooms.empty
    await n.join("bob", "b", RecordingSink())  # the live room takes a third party
    other = RoomKey(RoomKind.GROUP, "8")
    with pytest.raises(SignalError) as refused:
        await n.join("carol", "c", RecordingSink(), other)
    assert (refused.value.code, refused.value.close_code) == ("node-draining", 1012)
    assert n.pool.locate(other) is None
    metrics = str(await n.ask("metrics"))
    left = re.search(r"^zvonok_drain_seconds_left (\S+)$", metrics, re.M)
    assert "\nzvonok_draining 1.0\n" in metrics and left and 55 < float(left[1]) <= 60
    n.rooms.begin_shutdown("node-draining")  # drain_timeout: the sessions still here are told
    await until(lambda: a.closed is not None)
    assert a.errors()[-1] == "node-draining" and a.closed == (1012, "node-draining")


async def test_a_cancelled_drain_places_new_rooms_again(node: NodeFactory) -> None:
    n = await node()
    n.rooms.set_drain(time.time() + 60)
    assert n.rooms.empty
    n.rooms.set_drain(None)
    await n.join("carol", "c", RecordingSink(), RoomKey(RoomKind.GROUP, "8"))
    assert not n.rooms.empty
    metrics = str(await n.ask("metrics"))
    assert "\nzvonok_draining 0.0\n" in metrics and "\nzvonok_drain_seconds_left 0.0\n" in metrics


def _asked(n: Node) -> list[str]:
    """Records the methods the worker asks the front (its ``bind``/``lookup``/``claim``)."""
    asked: list[str] = []
    serve = n.pool._serve

    async def recording(handle: WorkerHandle, frame: Any) -> Any:
        asked.append(frame.method)
        return await serve(handle, frame)

    n.pool._serve = recording  # type: ignore[method-assign]
    for handle in n.handles:  # the links call the pool's _serve through this closure
        handle.link._on_request = lambda frame, h=handle: n.pool._serve(h, frame)  # type: ignore[misc]
    return asked


async def test_a_join_does_not_ask_the_front_back(node: NodeFactory) -> None:
    n = await node()
    asked = _asked(n)
    a, b = RecordingSink(), RecordingSink()
    await n.join("alice", "a", a)  # creates the room
    await n.join("bob", "b", b)  # enters it
    # the front bound both ids and claimed the room before it forwarded each join
    assert asked == []
    assert a.types()[:3] == ["joined", "tracks", "offer"]
    assert n.handle.bindings == {
        SessionId("a"): SessionBinding(UserId("alice"), ROOM),
        SessionId("b"): SessionBinding(UserId("bob"), ROOM),
    }
    assert ROOM in n.handle.claimed and n.pool.locate(ROOM) == "0"
    assert not n.handle.prebound  # nothing in flight


async def test_an_id_bound_elsewhere_is_refused_by_the_front(node: NodeFactory) -> None:
    n = await node()
    await n.join("alice", "a", RecordingSink())
    asked = _asked(n)
    with pytest.raises(SignalError) as taken:
        await n.join("mallory", "a", RecordingSink())
    assert taken.value.code == "session-taken"
    assert asked == [] and (await n.ask("state"))["sessions"] == 1
    assert await n.sessions.lookup(SessionId("a")) == SessionBinding(UserId("alice"), ROOM)


async def test_a_join_refused_before_the_service_asks_gives_back_the_binding_and_claim(
    node: NodeFactory,
) -> None:
    n = await node(resume_grace=1)
    n.handle.link.notify("shutdown", {})  # the worker refuses joins from now on (front does not)
    assert (await n.ask("state"))["sessions"] == 0  # the link is ordered: shutdown was served
    with pytest.raises(SignalError) as refused:
        await n.join("alice", "a", RecordingSink())
    assert refused.value.code == "shutdown"
    # the worker gave both back: the claim (room-released) and the binding (lingering for alice)
    await until(lambda: n.pool.locate(ROOM) is None and not n.handle.claimed)
    await until(lambda: not n.handle.bindings)
    assert await n.sessions.lookup(SessionId("a")) is None
    taken = await n.sessions.bind(SessionId("a"), SessionBinding(UserId("mallory"), ROOM))
    assert taken.user_id == "alice"  # still reserved for its user


async def test_a_release_the_worker_sent_before_it_saw_a_prebound_join_is_not_applied(
    node: NodeFactory,
) -> None:
    n = await node(resume_grace=30)
    sink = RecordingSink()
    first = await n.join("alice", "a", sink)
    binding = SessionBinding(UserId("alice"), ROOM)
    # a join of "a" the front bound and forwarded as frame 100; a release the worker sent
    # having seen only up to frame 99 (it let the id go before it saw the join): not applied
    n.handle.prebound[SessionId("a")] = (100, binding)
    params = {"session": "a", "user": "alice", "room": str(ROOM), "linger": 5.0}
    n.pool._note(n.handle, Frame("note", 7, 99, method="release", params=params))
    await asyncio.sleep(0.01)
    assert await n.sessions.lookup(SessionId("a")) == binding
    assert n.handle.bindings[SessionId("a")] == binding
    # one sent after the worker saw the join is its own (a refusal or a leave): applied
    n.pool._note(n.handle, Frame("note", 8, 100, method="release", params=params))
    await until(lambda: SessionId("a") not in n.handle.bindings)
    await asyncio.sleep(0.01)  # the release runs in a task of the pool
    assert await n.sessions.lookup(SessionId("a")) is None
    del n.handle.prebound[SessionId("a")]
    assert first.relay in n.handle.relays


async def test_a_join_refused_at_the_front_after_its_bind_frees_the_binding(
    node: NodeFactory,
) -> None:
    n = await node()
    moved = SignalError("room-moved", "the room lives on another node", fatal=True)

    async def refuse(room: RoomKey) -> str:
        raise moved

    n.pool._rooms.claim = refuse  # type: ignore[method-assign]
    with pytest.raises(SignalError) as refused:
        await n.join("alice", "a", RecordingSink())
    assert refused.value is moved
    await asyncio.sleep(0.01)  # the release runs in a task of the pool
    assert await n.sessions.lookup(SessionId("a")) is None and not n.handle.bindings
    assert n.pool.locate(ROOM) is None and (await n.ask("state"))["sessions"] == 0
