"""The transport-independent ``Link`` core over a lossy in-memory transport (what the cluster's
SignalBus is over Redis pub/sub): frames dropped, duplicated and reordered at random (seeded),
and still every request answered exactly once, every note delivered once and in order; a gap
dropped, not fatal; a duplicate acknowledged again; resends; the ack-progress deadline and its
pause; the unacknowledged caps; which frames the carrier is asked to send at once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvonok.errors import SignalError
from zvonok.relay.frames import HEADER, Frame
from zvonok.relay.link import Link, LinkClosed


class Lossy:
    """One direction of an in-memory lossy carrier: each frame is dropped with ``drop``,
    doubled with ``dup``, and delivered after a random delay up to ``jitter`` s (so frames
    overtake one another)."""

    lossy = True

    def __init__(self, rng: random.Random, drop: float, dup: float, jitter: float) -> None:
        self.rng = rng
        self.drop, self.dup, self.jitter = drop, dup, jitter
        self.peer: Link | None = None
        self.written: list[Frame] = []
        #: How many frames had been written at each ``flush``.
        self.flushes: list[int] = []
        self.down = False
        self._closed = asyncio.Event()

    def write(self, data: bytes) -> str | None:
        self.written.append(Frame.parse(data[HEADER.size :]))
        if self.down or self.rng.random() < self.drop:
            return None
        copies = 2 if self.rng.random() < self.dup else 1
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            loop.call_later(self.rng.uniform(0, self.jitter), self._deliver, data[HEADER.size :])
        return None

    def flush(self) -> str | None:
        self.flushes.append(len(self.written))
        return None

    def _deliver(self, body: bytes) -> None:
        if self.peer is not None and not self.down:
            self.peer.feed(body)

    async def receive(self, link: Link) -> None:
        await self._closed.wait()

    def close(self) -> None:
        self._closed.set()

    async def wait_closed(self) -> None:
        return None


class Side:
    def __init__(self, name: str) -> None:
        self.name = name
        self.notes: list[tuple[int, int]] = []
        self.served: dict[int, int] = {}
        self.closes: list[str] = []

    async def on_request(self, frame: Frame) -> Any:
        n = int(frame.params["n"])
        self.served[n] = self.served.get(n, 0) + 1
        await asyncio.sleep(0)
        if n % 7 == 3:
            raise SignalError("refused", f"no {n}")
        return {"double": 2 * n}

    def on_note(self, frame: Frame) -> None:
        self.notes.append((frame.relay, int(frame.params["n"])))

    def on_close(self, link: Link) -> None:
        self.closes.append(link.close_reason)


async def until(predicate: Callable[[], bool], within: float = 1.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def pair(
    rng: random.Random,
    *,
    drop: float = 0.0,
    dup: float = 0.0,
    jitter: float = 0.0,
    resend: float = 0.02,
    **kwargs: Any,
) -> tuple[Link, Link, Side, Side, Lossy, Lossy]:
    sa, sb = Side("a"), Side("b")
    ta, tb = Lossy(rng, drop, dup, jitter), Lossy(rng, drop, dup, jitter)
    a = Link(
        transport=ta, name="a", on_request=sa.on_request, on_note=sa.on_note,
        on_close=sa.on_close, resend_interval=resend, **kwargs,
    )  # fmt: skip
    b = Link(
        transport=tb, name="b", on_request=sb.on_request, on_note=sb.on_note,
        on_close=sb.on_close, resend_interval=resend, **kwargs,
    )  # fmt: skip
    ta.peer, tb.peer = b, a
    a.start()
    b.start()
    return a, b, sa, sb, ta, tb


async def exchange(seed: int, drop: float, dup: float, jitter: float, count: int) -> None:
    rng = random.Random(seed)
    a, b, sa, sb, _, _ = pair(
        rng, drop=drop, dup=dup, jitter=jitter, resend=0.01, progress_timeout=60.0
    )
    try:

        async def ask(link: Link, n: int) -> Any:
            try:
                return await link.request("double", {"n": n}, relay=n % 3 + 1, wait=30.0)
            except SignalError as exc:
                return exc.message

        asks = []
        for n in range(count):
            a.notify("note", {"n": n}, relay=n % 3 + 1)
            b.notify("note", {"n": n}, relay=n % 3 + 1)
            asks.append(asyncio.ensure_future(ask(a, n)))
            asks.append(asyncio.ensure_future(ask(b, n)))
            if n % 5 == 0:
                await asyncio.sleep(rng.uniform(0, jitter))
        answers = await asyncio.wait_for(asyncio.gather(*asks), 30.0)
        expected = [f"no {n}" if n % 7 == 3 else {"double": 2 * n} for n in range(count)]
        assert answers[0::2] == expected and answers[1::2] == expected
        await until(lambda: len(sa.notes) >= count and len(sb.notes) >= count, within=10.0)
        in_order = [(n % 3 + 1, n) for n in range(count)]
        assert sa.notes == in_order and sb.notes == in_order  # once each, in order
        assert sa.served == dict.fromkeys(range(count), 1)  # every request served once
        assert sb.served == dict.fromkeys(range(count), 1)
        await until(lambda: a.unacked == b.unacked == 0, within=10.0)
        assert a.unacked == b.unacked == 0 and a.unacked_bytes == b.unacked_bytes == 0
        assert not a.closed.is_set() and not b.closed.is_set()
    finally:
        await a.close()
        await b.close()


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    drop=st.sampled_from([0.0, 0.05, 0.2]),
    dup=st.sampled_from([0.0, 0.1, 0.3]),
    jitter=st.sampled_from([0.0, 0.002, 0.01]),
)
def test_everything_arrives_once_and_in_order_over_a_lossy_carrier(
    seed: int, drop: float, dup: float, jitter: float
) -> None:
    asyncio.run(exchange(seed, drop, dup, jitter, count=40))


@pytest.mark.parametrize("seed", range(3))
async def test_a_heavy_loss_run(seed: int) -> None:
    await exchange(seed, drop=0.3, dup=0.2, jitter=0.005, count=40)


async def test_a_gap_is_dropped_not_fatal_and_a_duplicate_is_acked_again() -> None:
    rng = random.Random(1)
    a, b, sa, sb, ta, tb = pair(rng, resend=60.0)
    try:
        ta.peer = None  # a's frames go nowhere; the test feeds b by hand
        b.feed(bytes(Frame("note", 2, 0, method="n", params={"n": 2}))[HEADER.size :])
        assert not b.closed.is_set() and sb.notes == [] and b.frames_dropped == 1
        b.feed(bytes(Frame("note", 1, 0, method="n", params={"n": 1}))[HEADER.size :])
        b.feed(bytes(Frame("note", 2, 0, method="n", params={"n": 2}))[HEADER.size :])
        assert sb.notes == [(0, 1), (0, 2)]
        await until(lambda: any(f.kind == "ack" and f.ack == 2 for f in tb.written))
        acks = len(tb.written)
        b.feed(bytes(Frame("note", 2, 0, method="n", params={"n": 2}))[HEADER.size :])
        assert sb.notes == [(0, 1), (0, 2)]  # the duplicate is not delivered again...
        await until(lambda: len(tb.written) > acks)  # ...but acknowledged again
        assert (tb.written[-1].kind, tb.written[-1].ack) == ("ack", 2)
    finally:
        await a.close()
        await b.close()


async def test_an_invalid_pushed_frame_closes_the_link() -> None:
    a, b, _, sb, _, _ = pair(random.Random(2))
    b.feed(b"null")
    assert b.closed.is_set() and sb.closes == ["bad frame: frame is not a JSON object"]
    await a.close()
    await b.close()


async def test_unacked_frames_are_resent_in_order_until_acknowledged() -> None:
    a, b, _, sb, ta, _ = pair(random.Random(3), resend=0.05)
    try:
        ta.down = True  # the carrier loses everything for a while
        for n in range(5):
            a.notify("n", {"n": n})
        await asyncio.sleep(0.2)
        assert a.frames_resent >= 5 and sb.notes == []
        ta.down = False
        await until(lambda: len(sb.notes) == 5)
        assert sb.notes == [(0, n) for n in range(5)]
        await until(lambda: a.unacked == 0)
        resent = a.frames_resent
        await asyncio.sleep(0.15)
        assert a.frames_resent == resent  # nothing is resent once acknowledged
    finally:
        await a.close()
        await b.close()


async def test_no_ack_progress_closes_the_link_unless_paused() -> None:
    paused = True
    a, b, sa, _, ta, _ = pair(
        random.Random(4), resend=0.02, progress_timeout=0.2, paused=lambda: paused
    )
    try:
        ta.down = True
        asked = asyncio.ensure_future(a.request("double", {"n": 1}))
        await asyncio.sleep(0.5)  # paused: the clock stands still
        assert not a.closed.is_set()
        paused = False
        await asyncio.wait_for(a.closed.wait(), 1.0)
        assert a.close_reason == "no ack progress" and sa.closes == ["no ack progress"]
        with pytest.raises(LinkClosed, match="no ack progress"):
            await asyncio.wait_for(asked, 1.0)
    finally:
        await a.close()
        await b.close()


async def test_the_unacked_caps_close_the_link() -> None:
    a, b, sa, _, ta, _ = pair(random.Random(5), max_unacked=3, max_unacked_bytes=10_000)
    c, d, sc, _, tc, _ = pair(random.Random(5), max_unacked=100, max_unacked_bytes=1_000)
    try:
        ta.down = tc.down = True
        for n in range(3):
            a.notify("n", {"n": n})
        with pytest.raises(LinkClosed, match="peer stopped acknowledging"):
            a.notify("n", {"n": 3})
        assert sa.closes == ["peer stopped acknowledging"]
        with pytest.raises(LinkClosed, match="peer stopped acknowledging"):
            for _ in range(20):
                c.notify("n", {"n": "x" * 100})
        assert sc.closes == ["peer stopped acknowledging"]
    finally:
        for link in (a, b, c, d):
            await link.close()


async def test_a_link_without_a_stream_or_transport_is_refused() -> None:
    async def nothing(frame: Frame) -> Any:
        return None

    with pytest.raises(TypeError):
        Link(name="x", on_request=nothing, on_note=lambda f: None)


async def test_requests_answers_and_flushed_notes_are_sent_at_once() -> None:
    """A request, its answer and a note sent with ``flush`` ask the carrier to send at once
    (the SignalBus then publishes in that pass instead of when its sender task runs), with
    what was written before; a plain note does not."""
    a, b, _, _, ta, tb = pair(random.Random(5))
    try:
        a.notify("note", {"n": 1}, relay=1)
        assert ta.flushes == []  # waits for the carrier's own sender
        a.notify("note", {"n": 2}, relay=1, flush=True)
        assert ta.flushes == [2]  # at once, the first note with it
        asking = asyncio.ensure_future(a.request("double", {"n": 4}, relay=1, wait=5.0))
        await asyncio.sleep(0)
        assert ta.flushes == [2, 3]
        assert ta.written[2].kind == "req"
        assert await asking == {"double": 8}
        answer = next(i for i, f in enumerate(tb.written) if f.kind == "res")
        assert answer + 1 in tb.flushes
    finally:
        await a.close()
        await b.close()
