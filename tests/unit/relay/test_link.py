"""The worker link (``zvonok.relay.link``) between two real ``Link`` objects over a
``socket.socketpair()``, or one ``Link`` and raw frames written to the other end: answers and
errors, ordering, concurrency, sequence numbers and acks, and every way a link closes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from zvonok.errors import SignalError
from zvonok.relay.frames import HEADER, MAX_FRAME, Frame
from zvonok.relay.link import (
    ACK_DELAY,
    ACK_EVERY,
    CLOSE_TIMEOUT,
    MAX_WRITE_BUFFER,
    Link,
    LinkClosed,
    RemoteError,
)

Handler = Callable[[Frame], Awaitable[Any]]


class Side:
    """One end's handlers: requests go to ``handlers[method]``; notes and closes are recorded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, Handler] = {}
        self.notes: list[Frame] = []
        self.closes = 0
        self.log: list[str] = []

    async def on_request(self, frame: Frame) -> Any:
        self.log.append(f"req:{frame.method}")
        return await self.handlers[frame.method](frame)

    def on_note(self, frame: Frame) -> None:
        self.log.append(f"note:{frame.method}")
        self.notes.append(frame)

    def on_close(self, link: Link) -> None:
        self.closes += 1


async def link_on(sock: socket.socket, side: Side, **kwargs: Any) -> Link:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    link = Link(
        reader,
        writer,
        name=side.name,
        on_request=side.on_request,
        on_note=side.on_note,
        on_close=side.on_close,
        **kwargs,
    )
    link.start()
    return link


class Pair:
    def __init__(self) -> None:
        self.a, self.b = Side("a"), Side("b")
        self.links: list[Link] = []

    async def open(self, **kwargs: Any) -> tuple[Link, Link]:
        sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.links = [await link_on(sa, self.a, **kwargs), await link_on(sb, self.b, **kwargs)]
        return self.links[0], self.links[1]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = Pair()
    yield p
    for link in p.links:
        await link.close()


class Raw:
    """The other end of a link, written and read frame by frame by the test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def write(self, frame: Frame) -> None:
        self.writer.write(bytes(frame))

    async def read(self, within: float = 1.0) -> Frame:
        header = await asyncio.wait_for(self.reader.readexactly(HEADER.size), within)
        (length,) = HEADER.unpack(header)
        return Frame.parse(await asyncio.wait_for(self.reader.readexactly(length), within))


@pytest.fixture
async def raw_pair() -> AsyncIterator[tuple[Side, Link, Raw]]:
    side = Side("a")
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    link = await link_on(sa, side, max_unacked=5, request_timeout=2.0)
    raw = Raw(*await asyncio.open_unix_connection(sock=sb))
    yield side, link, raw
    await link.close()
    raw.writer.close()


async def until(predicate: Callable[[], bool], within: float = 1.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------------- answers
async def test_a_request_gets_the_value_its_handler_returns(pair: Pair) -> None:
    a, b = await pair.open()

    async def echo(frame: Frame) -> Any:
        return {"params": frame.params, "relay": frame.relay}

    pair.b.handlers["echo"] = echo
    answer = await a.request("echo", {"x": [1, "два", None]}, relay=42)
    assert answer == {"params": {"x": [1, "два", None]}, "relay": 42}
    pair.a.handlers["none"] = lambda frame: asyncio.sleep(0)
    assert await b.request("none", {}) is None
    assert (a.frames_out, b.frames_in) >= (1, 1)


async def test_a_signal_error_travels_back_as_itself(pair: Pair) -> None:
    a, _ = await pair.open()

    async def refuse(frame: Frame) -> Any:
        raise SignalError("room-full", "the room is full", fatal=True, close_code=4008)

    pair.b.handlers["join"] = refuse
    with pytest.raises(SignalError) as refused:
        await a.request("join", {})
    error = refused.value
    assert (error.code, error.message, error.fatal, error.close_code) == (
        "room-full",
        "the room is full",
        True,
        4008,
    )


async def test_any_other_failure_is_a_remote_error_and_the_link_stays(pair: Pair) -> None:
    a, b = await pair.open()

    async def broken(frame: Frame) -> Any:
        return frame.params["missing"]

    pair.b.handlers["broken"] = broken
    with pytest.raises(RemoteError) as failed:
        await a.request("broken", {})
    assert failed.value.error == {"code": "internal", "message": "KeyError"}
    assert str(failed.value) == "internal: KeyError"
    with pytest.raises(RemoteError, match="KeyError"):  # no handler for the method at all
        await a.request("nothing", {})
    assert not a.closed.is_set() and not b.closed.is_set()


async def test_a_remote_error_of_a_nested_request_travels_on_unchanged(pair: Pair) -> None:
    a, b = await pair.open()

    async def inner(frame: Frame) -> Any:
        raise RuntimeError("bug")

    async def outer(frame: Frame) -> Any:
        return await b.request("inner", {})

    pair.a.handlers["inner"] = inner
    pair.b.handlers["outer"] = outer
    with pytest.raises(RemoteError) as failed:
        await a.request("outer", {})
    assert failed.value.error == {"code": "internal", "message": "RuntimeError"}


async def test_an_answer_that_does_not_encode_is_an_error_not_a_gap(pair: Pair) -> None:
    a, b = await pair.open()

    async def unencodable(frame: Frame) -> Any:
        return {"set": {1, 2}}

    async def huge(frame: Frame) -> Any:
        return "x" * (MAX_FRAME + 1)

    async def fine(frame: Frame) -> Any:
        return "fine"

    pair.b.handlers.update(unencodable=unencodable, huge=huge, fine=fine)
    with pytest.raises(RemoteError, match="TypeError"):
        await a.request("unencodable", {})
    with pytest.raises(RemoteError, match="FrameError"):
        await a.request("huge", {})
    # a request this side cannot encode fails here, and takes no sequence number
    with pytest.raises(TypeError):
        await a.request("fine", {"x": object()})
    with pytest.raises(TypeError):
        a.notify("note", {"x": object()})
    assert await a.request("fine", {}) == "fine"
    assert not a.closed.is_set() and not b.closed.is_set()


async def test_a_garbled_close_code_in_an_error_is_1008(raw_pair: tuple[Side, Link, Raw]) -> None:
    _, link, raw = raw_pair
    asked = asyncio.create_task(link.request("join", {}))
    req = await raw.read()
    raw.write(Frame("res", 1, req.seq, 0, req.id, error={"signal": True, "closeCode": "x"}))
    with pytest.raises(SignalError) as refused:
        await asked
    assert (refused.value.code, refused.value.close_code) == ("internal", 1008)
    assert not link.closed.is_set()


# ---------------------------------------------------------------------------- order, concurrency
async def test_notes_arrive_in_order_and_before_the_answer_sent_after_them(pair: Pair) -> None:
    a, b = await pair.open()

    async def join(frame: Frame) -> Any:
        b.notify("send", {"n": 1}, relay=frame.relay)
        b.notify("send", {"n": 2}, relay=frame.relay)
        return "joined"

    pair.b.handlers["join"] = join
    for n in range(50):
        a.notify("n", {"n": n})
    assert await a.request("join", {}, relay=3) == "joined"
    assert [(f.params["n"], f.relay) for f in pair.a.notes] == [(1, 3), (2, 3)]
    await until(lambda: len(pair.b.notes) == 50)
    assert [f.params["n"] for f in pair.b.notes] == list(range(50))
    assert pair.b.log.index("note:n") < pair.b.log.index("req:join")


async def test_a_handler_may_ask_the_other_side_meanwhile(pair: Pair) -> None:
    """The worker's join asks the front to bind the session before it answers."""
    a, b = await pair.open()

    async def bind(frame: Frame) -> Any:
        return {"bound": frame.params["session"]}

    async def join(frame: Frame) -> Any:
        held = await b.request("bind", {"session": frame.params["session"]})
        return held["bound"]

    pair.a.handlers["bind"] = bind
    pair.b.handlers["join"] = join
    answers = await asyncio.wait_for(
        asyncio.gather(*(a.request("join", {"session": f"s{i}"}) for i in range(20))), 1.0
    )
    assert answers == [f"s{i}" for i in range(20)]


async def test_requests_are_served_concurrently(pair: Pair) -> None:
    a, _ = await pair.open()
    released = asyncio.Event()

    async def wait(frame: Frame) -> Any:
        await released.wait()
        return "waited"

    async def release(frame: Frame) -> Any:
        released.set()
        return "released"

    pair.b.handlers.update(wait=wait, release=release)
    first = asyncio.create_task(a.request("wait", {}))
    assert await asyncio.wait_for(a.request("release", {}), 1.0) == "released"
    assert await asyncio.wait_for(first, 1.0) == "waited"


# ---------------------------------------------------------------------------- sequence, acks
async def test_duplicates_are_dropped_and_a_gap_closes_the_link(
    raw_pair: tuple[Side, Link, Raw],
) -> None:
    side, link, raw = raw_pair
    raw.write(Frame("note", 1, 0, method="one"))
    raw.write(Frame("note", 1, 0, method="one again"))  # a resent duplicate
    raw.write(Frame("note", 2, 0, method="two"))
    raw.write(Frame("ack", 0, 0))  # an ack takes no sequence number
    raw.write(Frame("note", 3, 0, method="three"))
    await until(lambda: len(side.notes) == 3)
    assert [f.method for f in side.notes] == ["one", "two", "three"]
    raw.write(Frame("note", 5, 0, method="five"))
    await asyncio.wait_for(link.closed.wait(), 1.0)
    assert link.close_reason == "bad frame: sequence gap: expected 4, got 5"
    assert [f.method for f in side.notes] == ["one", "two", "three"] and side.closes == 1


async def test_an_invalid_frame_closes_the_link(raw_pair: tuple[Side, Link, Raw]) -> None:
    side, link, raw = raw_pair
    raw.writer.write(HEADER.pack(4) + b"null")
    await asyncio.wait_for(link.closed.wait(), 1.0)
    assert link.close_reason == "bad frame: frame is not a JSON object"
    assert side.closes == 1


async def test_an_oversize_announcement_closes_the_link(raw_pair: tuple[Side, Link, Raw]) -> None:
    _, link, raw = raw_pair
    raw.writer.write(HEADER.pack(MAX_FRAME + 1))
    await asyncio.wait_for(link.closed.wait(), 1.0)
    assert link.close_reason.startswith("bad frame: announced frame of")


async def test_frames_carry_seq_and_ack_and_a_stream_link_acks_only_on_its_own_frames(
    raw_pair: tuple[Side, Link, Raw],
) -> None:
    side, link, raw = raw_pair
    link.notify("a", {})
    link.notify("b", {})
    assert [(f.seq, f.ack) for f in (await raw.read(), await raw.read())] == [(1, 0), (2, 0)]
    assert link.unacked == 2 and link.sent_seq == 2
    raw.write(Frame("ack", 0, 1))
    await until(lambda: link.unacked == 1)
    raw.write(Frame("note", 1, 2, method="x"))  # a frame's ack trims too
    await until(lambda: link.unacked == 0)
    # no standalone ack on a stream link (no timer, no wake-up): the next frame carries it
    with pytest.raises(TimeoutError):
        await raw.read(within=ACK_DELAY * 4)
    link.notify("c", {})
    assert (await raw.read()).ack == 1  # on every frame it sends


async def test_every_ack_every_frames_are_acknowledged_at_once(
    raw_pair: tuple[Side, Link, Raw],
) -> None:
    side, link, raw = raw_pair
    burst = ACK_EVERY + 1
    raw.writer.write(b"".join(bytes(Frame("note", n, 0, method="n")) for n in range(1, burst + 1)))
    first = await raw.read()
    # at ACK_EVERY at once; the one frame after it waits for the next frame this side sends
    assert (first.kind, first.ack) == ("ack", ACK_EVERY)
    await until(lambda: len(side.notes) == burst)
    with pytest.raises(TimeoutError):
        await raw.read(within=ACK_DELAY * 4)
    link.notify("m", {})
    assert (await raw.read()).ack == burst


async def test_acks_trim_the_unacked_record(pair: Pair) -> None:
    a, b = await pair.open()

    async def ok(frame: Frame) -> Any:
        return "ok"

    pair.b.handlers["ok"] = ok
    for n in range(10):
        a.notify("n", {"n": n})
    assert a.unacked == 10
    await until(lambda: len(pair.b.notes) == 10)
    assert a.unacked == 10  # one-way notes: nothing to carry the ack yet
    assert await a.request("ok", {}) == "ok"
    assert a.unacked == 0  # the answer carried the ack
    assert b.unacked == 1  # its answer is acknowledged by the next frame a sends
    a.notify("n", {})
    await until(lambda: b.unacked == 0)


async def test_a_stream_link_acks_after_ack_every_one_way_frames(pair: Pair) -> None:
    a, b = await pair.open()
    for n in range(ACK_EVERY * 3):
        a.notify("n", {"n": n})
    await until(lambda: len(pair.b.notes) == ACK_EVERY * 3)
    await until(lambda: a.unacked == 0)  # the record of a one-way stream stays bounded


async def test_a_peer_that_never_acks_closes_the_link_at_max_unacked(
    raw_pair: tuple[Side, Link, Raw],
) -> None:
    side, link, _ = raw_pair  # the raw end reads nothing and acks nothing; max_unacked=5
    for n in range(5):
        link.notify("n", {"n": n})
    with pytest.raises(LinkClosed, match="peer stopped acknowledging"):
        link.notify("n", {"n": 5})
    assert link.closed.is_set() and link.close_reason == "peer stopped acknowledging"
    assert side.closes == 1
    with pytest.raises(LinkClosed, match="is closed"):
        await link.request("x", {})


async def test_a_peer_that_stops_reading_closes_the_link(
    raw_pair: tuple[Side, Link, Raw],
) -> None:
    side, link, _ = raw_pair  # the raw end reads nothing
    chunk = "x" * (MAX_FRAME - 1024)
    with pytest.raises(LinkClosed):
        for _ in range(MAX_WRITE_BUFFER // len(chunk) + 2):
            link._max_unacked = 1_000  # the fixture's 5 would stop it first
            link.notify("big", {"x": chunk})
    assert link.close_reason == "peer stopped reading" and side.closes == 1
    await asyncio.wait_for(link.close(), 0.5)  # the buffered frames are dropped, not awaited


async def test_close_drops_what_a_silent_peer_does_not_read_within_close_timeout(
    raw_pair: tuple[Side, Link, Raw],
) -> None:
    _, link, _ = raw_pair  # the raw end reads nothing
    link.notify("big", {"x": "x" * (MAX_FRAME - 1024)})  # more than the socket buffers hold
    assert link._writer.transport.get_write_buffer_size() > 0
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(link.close(), CLOSE_TIMEOUT + 0.5)
    assert asyncio.get_running_loop().time() - started >= CLOSE_TIMEOUT * 0.9


# ---------------------------------------------------------------------------- closing
async def test_eof_fails_pending_requests_and_closes_once(
    raw_pair: tuple[Side, Link, Raw],
) -> None:
    side, link, raw = raw_pair
    asked = asyncio.create_task(link.request("join", {}))
    await raw.read()
    raw.writer.close()
    with pytest.raises(LinkClosed, match=r"closed \(eof\)"):
        await asyncio.wait_for(asked, 1.0)
    assert link.closed.is_set() and link.close_reason == "eof"
    with pytest.raises(LinkClosed):
        link.notify("late", {})
    await link.close()
    assert side.closes == 1 and link.close_reason == "eof"


async def test_a_request_without_an_answer_in_time_raises_link_closed(pair: Pair) -> None:
    a, _ = await pair.open()

    async def never(frame: Frame) -> Any:
        await asyncio.Event().wait()

    async def ok(frame: Frame) -> Any:
        return "ok"

    pair.b.handlers.update(never=never, ok=ok)
    with pytest.raises(LinkClosed, match="no answer to never"):
        await a.request("never", {}, wait=0.05)
    assert not a.closed.is_set()  # one slow answer does not close the link
    assert await a.request("ok", {}) == "ok"


async def test_the_default_request_timeout(pair: Pair) -> None:
    a, _ = await pair.open(request_timeout=0.05)

    async def never(frame: Frame) -> Any:
        await asyncio.Event().wait()

    pair.b.handlers["never"] = never
    with pytest.raises(LinkClosed, match="no answer to never"):
        await a.request("never", {})


async def test_close_cancels_the_requests_being_served(pair: Pair) -> None:
    a, b = await pair.open()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(frame: Frame) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    pair.b.handlers["hang"] = hang
    asked = asyncio.create_task(a.request("hang", {}))
    await asyncio.wait_for(started.wait(), 1.0)
    await b.close()
    assert cancelled.is_set() and b.closed.is_set() and b.close_reason == "closed"
    assert pair.b.closes == 1
    with pytest.raises(LinkClosed):
        await asyncio.wait_for(asked, 1.0)
    await asyncio.wait_for(a.closed.wait(), 1.0)
    assert a.close_reason == "eof" and pair.a.closes == 1
    await b.close()  # closing twice is harmless
    assert pair.b.closes == 1


# ---------------------------------------------------------------------------- coalescing
async def test_notes_of_one_loop_pass_leave_in_one_write() -> None:
    """A burst of notes (a tick's server messages) reaches the peer in one read: one wake-up."""
    side = Side("a")
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    link = await link_on(sa, side)
    sb.setblocking(False)
    try:
        for i in range(5):
            link.notify("send", {"i": i}, relay=i + 1)
        with pytest.raises(BlockingIOError):
            sb.recv(65536)  # nothing written yet: the frames wait for the end of the pass
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        data = sb.recv(65536)
        frames = []
        while data:
            (length,) = HEADER.unpack(data[: HEADER.size])
            frames.append(Frame.parse(data[HEADER.size : HEADER.size + length]))
            data = data[HEADER.size + length :]
        assert [f.params["i"] for f in frames] == [0, 1, 2, 3, 4]
        assert [f.seq for f in frames] == [1, 2, 3, 4, 5]
    finally:
        await link.close()
        sb.close()


async def test_close_sends_the_frames_still_queued(raw_pair: tuple[Side, Link, Raw]) -> None:
    _, link, raw = raw_pair
    link.notify("close", {"code": 1000, "reason": "bye"}, relay=3)
    await link.close()  # in the same pass: the note was not written yet
    frame = await raw.read()
    assert (frame.method, frame.relay, frame.params["reason"]) == ("close", 3, "bye")


async def test_a_request_goes_out_at_once_with_the_notes_before_it() -> None:
    side = Side("a")
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    link = await link_on(sa, side, request_timeout=0.5)
    sb.setblocking(False)
    try:
        link.notify("send", {"i": 0}, relay=1)
        asked = link.request("join", {})
        asked.send(None)  # the request runs up to its wait; the loop runs nothing meanwhile
        data = sb.recv(65536)
        (length,) = HEADER.unpack(data[: HEADER.size])
        first = Frame.parse(data[HEADER.size : HEADER.size + length])
        second = Frame.parse(data[2 * HEADER.size + length :])
        assert (first.kind, first.method, second.kind, second.method) == (
            "note", "send", "req", "join",
        )  # fmt: skip
        asked.close()
    finally:
        await link.close()
        sb.close()
