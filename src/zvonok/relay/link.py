"""One link: an ordered, acknowledged channel of ``Frame`` values over a transport.

Owns the protocol core, whatever carries the frames: sequence numbers and cumulative acks, the
bounded record of frames the peer has not acknowledged yet, the futures of this side's own
requests, the tasks that serve the peer's requests, and the link's own task (reading a stream,
or resending over a lossy transport). Offers ``request`` (await the peer's answer: its value, its
``SignalError`` again, or ``RemoteError``), ``notify`` (one-way, in order) and ``close``. Either
side serves requests concurrently (each in its own task, so a worker's ``join`` may ask the
front to ``bind`` a session meanwhile) and notes in arrival order, inline.

Sequence numbers: every frame but ``ack`` carries the next ``seq``; every frame carries the
last ``seq`` received. A duplicate (``seq`` already seen) is dropped. Frames stay recorded until
acknowledged. Two transports:

- ``StreamTransport`` (the worker link, a Unix socket): nothing is lost, so a gap closes the
  link, and the record only bounds a peer that stops acknowledging. Acks ride on the frames a
  side sends anyway; a standalone ``ack`` goes out only after ``ACK_EVERY`` frames (no timer).
  Notes sent in one pass of the event loop leave in one write (``StreamTransport.flush``, a
  ``call_soon`` after the first; ``COALESCE_BYTES`` or more at once), so a burst of notes (a
  tick's server messages for every session of a room, a load report) wakes the peer once; a
  request, an answer, an ack or a note sent with ``flush`` (a session's ``joined``) is written at
  once, with the notes queued before it (a join's round trip does not wait for the end of a busy
  worker's pass). Every transport has this ``flush``: the SignalBus publishes at once too.
- A lossy transport (``lossy = True``; the cluster's SignalBus over Redis pub/sub, shared design
  ``cluster.md`` §3 "SignalBus frames"): frames may be lost, duplicated or reordered. A frame
  ahead of the expected ``seq`` is dropped (counted in ``frames_dropped``), a duplicate is
  acknowledged again (its sender missed our ack), and the link resends every unacknowledged
  frame, in order, when the oldest is ``resend_interval`` old. It closes after
  ``progress_timeout`` without ack progress while frames are unacknowledged (the clock stands
  still while ``paused()``: the carrier is known to be down). Frames reach it through ``feed``.

A link closes when its peer stops reading (``MAX_WRITE_BUFFER``) or stops acknowledging
(``max_unacked`` frames or ``max_unacked_bytes`` bytes), when a frame is invalid, or at EOF;
``closed`` is then set and ``on_close`` called once; ``close`` lets frames still buffered drain
for ``CLOSE_TIMEOUT`` at most (a peer that stopped reading gets nothing more). Implements no RFC.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from ..errors import SignalError
from .frames import HEADER, Frame, FrameError, frame_length

log = logging.getLogger("zvonok.relay")

#: Frames sent and not yet acknowledged, at most; beyond that the peer is stuck: the link closes.
MAX_UNACKED: Final = 100_000
#: Bytes the transport may hold for a peer that does not read, at most.
MAX_WRITE_BUFFER: Final = 64 * 1024 * 1024
#: How long ``close`` lets buffered frames drain to the peer before it drops them.
CLOSE_TIMEOUT: Final = 1.0
#: A stream link writes the frames of one event-loop pass at once, at the end of the pass, or
#: as soon as this many bytes wait (a large frame gains nothing from waiting).
COALESCE_BYTES: Final = 64 * 1024
#: Requests of the peer served at once, at most (more: answered ``busy``).
MAX_SERVING: Final = 10_000
#: A lossy link's standalone ``ack`` goes out this long after a frame arrived, if nothing else
#: carried it (the sender resends what is not acknowledged).
ACK_DELAY: Final = 0.05
#: ...or at once after this many unacknowledged frames; a stream link acknowledges only so, or
#: on a frame it sends anyway: its peer's record of unacknowledged frames stays below this many
#: (plus what its own frames carry), and an idle link sends nothing at all (no timer, no wake-up
#: on either side for an ``ack`` after each one-way note).
ACK_EVERY: Final = 64
#: A lossy link resends its unacknowledged frames when the oldest is this old (§3: every 1 s).
RESEND_INTERVAL: Final = 1.0
#: A lossy link closes after this long without ack progress while frames are unacknowledged (§3).
PROGRESS_TIMEOUT: Final = 20.0

RequestHandler = Callable[[Frame], Awaitable[Any]]
NoteHandler = Callable[[Frame], None]


class LinkClosed(ConnectionError):
    """The link is closed; the request has no answer."""


class RemoteError(Exception):
    """The peer failed to serve a request (not a refusal: a bug or a missing method)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code', 'internal')}: {error.get('message', '')}")
        self.error = error


def error_of(exc: BaseException) -> dict[str, Any]:
    """How a request's failure travels back (``SignalError`` exactly, anything else as internal)."""
    if isinstance(exc, SignalError):
        return {
            "signal": True,
            "code": exc.code,
            "message": exc.message,
            "fatal": exc.fatal,
            "closeCode": exc.close_code,
            "retryAfterMs": exc.retry_after_ms,
        }
    if isinstance(exc, RemoteError):
        return exc.error
    return {"code": "internal", "message": type(exc).__name__}


def raise_error(error: dict[str, Any]) -> Exception:
    """The exception a failed request raises on the requesting side."""
    if error.get("signal"):
        return SignalError(
            str(error.get("code", "internal")),
            str(error.get("message", "")),
            fatal=bool(error.get("fatal", False)),
            close_code=code if isinstance(code := error.get("closeCode"), int) else 1008,
            retry_after_ms=after if isinstance(after := error.get("retryAfterMs"), int) else None,
        )
    return RemoteError(error)


class Transport(Protocol):
    """What carries one link's frames: the link hands it encoded frames (length prefix
    included) and it hands the link frame bodies (``Link.deliver`` from ``receive``, or
    ``Link.feed`` from outside)."""

    #: Frames may be lost, duplicated or reordered (the link drops gaps and resends).
    lossy: bool

    def write(self, data: bytes) -> str | None:
        """Send one encoded frame; a reason to close the link if the peer cannot take more."""
        ...

    def flush(self) -> str | None:
        """Send what ``write`` queued now, in order, instead of at the end of the event loop's
        pass (or when the transport's own sender gets to it); a reason to close the link as
        ``write``."""
        ...

    async def receive(self, link: Link) -> None:
        """Deliver the peer's frames to ``link`` until the transport ends (return: EOF).

        ``asyncio.IncompleteReadError`` also means EOF; ``FrameError``, ``ConnectionError``
        and ``OSError`` close the link with their reason."""
        ...

    def close(self) -> None:
        """Stop sending and receiving (called once, when the link closes)."""
        ...

    async def wait_closed(self) -> None:
        """Wait (``CLOSE_TIMEOUT`` at most) until what was written has left."""
        ...


class StreamTransport:
    """A link over a byte stream (the worker link's Unix socket): nothing lost or reordered.

    Frames written in one pass of the event loop are joined and written together at its end
    (one ``send``, one wake-up of the peer instead of one per frame); ``COALESCE_BYTES`` waiting
    are written at once. A write that finds the peer not reading closes the link: at once, or
    through ``on_error`` when the deferred write finds it."""

    lossy = False

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        #: Called with a reason when a deferred write finds the peer not reading (the link's).
        self.on_error: Callable[[str], None] | None = None
        self._queued: list[bytes] = []
        self._queued_bytes = 0
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes) -> str | None:
        self._queued.append(data)
        self._queued_bytes += len(data)
        if self._queued_bytes >= COALESCE_BYTES:
            return self.flush()
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._flush_soon)
        return None

    def flush(self) -> str | None:
        """Write every queued frame now; a reason to close the link if the peer cannot take
        more."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if not self._queued:
            return None
        queued = self._queued
        data = queued[0] if len(queued) == 1 else b"".join(queued)
        self._queued = []
        self._queued_bytes = 0
        if self.writer.transport.is_closing():
            return None  # aborted (the peer stopped reading) or closed: nothing goes out
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.writer.transport.abort()  # a graceful close would wait for it to read
            return "peer stopped reading"
        return None

    def _flush_soon(self) -> None:
        self._flush = None
        reason = self.flush()
        if reason is not None and self.on_error is not None:
            self.on_error(reason)

    async def receive(self, link: Link) -> None:
        while not link.closed.is_set():  # a link may close itself in a note handler
            header = await self.reader.readexactly(HEADER.size)
            body = await self.reader.readexactly(frame_length(header))
            link.deliver(body)

    def close(self) -> None:
        self.flush()  # what was sent before the close goes out first
        self.writer.close()

    async def wait_closed(self) -> None:
        try:
            # shielded: a timeout must not cancel the stream's own close waiter
            await asyncio.wait_for(asyncio.shield(self.writer.wait_closed()), CLOSE_TIMEOUT)
        except TimeoutError:  # the peer does not read what is still buffered for it
            self.writer.transport.abort()
        except Exception:
            pass


class _Sent:
    """One frame in the unacknowledged record: its ``seq``, its bytes, when it last went out."""

    __slots__ = ("seq", "data", "at")

    def __init__(self, seq: int, data: bytes, at: float) -> None:
        self.seq = seq
        self.data = data
        self.at = at


class Link:
    """One side of a link: over a stream (``Link(reader, writer, ...)``, the worker link) or
    over any ``transport`` (``Link(transport=..., ...)``, the cluster's SignalBus)."""

    def __init__(
        self,
        reader: asyncio.StreamReader | None = None,
        writer: asyncio.StreamWriter | None = None,
        *,
        name: str,
        on_request: RequestHandler,
        on_note: NoteHandler,
        on_close: Callable[[Link], None] | None = None,
        request_timeout: float = 10.0,
        max_unacked: int = MAX_UNACKED,
        transport: Transport | None = None,
        max_unacked_bytes: int | None = None,
        resend_interval: float = RESEND_INTERVAL,
        progress_timeout: float = PROGRESS_TIMEOUT,
        paused: Callable[[], bool] | None = None,
    ) -> None:
        if transport is None:
            if reader is None or writer is None:
                raise TypeError("a link needs a reader and a writer, or a transport")
            transport = StreamTransport(reader, writer)
            transport.on_error = self._fail
        self.name = name
        self._transport = transport
        self._on_request = on_request
        self._on_note = on_note
        self._on_close = on_close
        self._request_timeout = request_timeout
        self._max_unacked = max_unacked
        self._max_unacked_bytes = max_unacked_bytes
        self._resend_interval = resend_interval
        self._progress_timeout = progress_timeout
        self._paused = paused
        #: A standalone ack's delay: lossy links only (a stream link acks every ACK_EVERY frames)
        self._ack_delay = ACK_DELAY if transport.lossy else None
        self._sent = 0
        self._received = 0
        self._acked_to_peer = 0
        self._ack_owed = False  # a duplicate arrived: the peer missed our ack (lossy)
        self._unacked: collections.deque[_Sent] = collections.deque()
        self._unacked_bytes = 0
        self._progress_at = 0.0
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self._ack_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._resender: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        #: Frames in and out, for metrics (resent frames count again).
        self.frames_in = 0
        self.frames_out = 0
        #: Lossy links: frames dropped as ahead of sequence, and frames resent.
        self.frames_dropped = 0
        self.frames_resent = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._read_loop(), name=f"link-{self.name}")
        if self._transport.lossy:
            self._resender = loop.create_task(self._resend_loop(), name=f"link-{self.name}-resend")

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    @property
    def unacked_bytes(self) -> int:
        return self._unacked_bytes

    @property
    def sent_seq(self) -> int:
        """The sequence number of the last frame this side sent (the next one takes one more:
        ``request`` and ``notify`` send before they return or first wait)."""
        return self._sent

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def _writer(self) -> asyncio.StreamWriter:
        """A stream link's writer (tests look at its buffer)."""
        if not isinstance(self._transport, StreamTransport):
            raise AttributeError("not a stream link")
        return self._transport.writer

    # ------------------------------------------------------------------ sending
    def _send(self, frame: Frame, *, flush: bool = False) -> None:
        if self.closed.is_set():
            raise LinkClosed(f"link {self.name} is closed ({self.close_reason})")
        seq = self._sent + 1 if frame.kind != "ack" else 0
        ack = self._received
        # a frame that does not encode (FrameError, TypeError) raises here, before it takes a
        # sequence number: the next frame must not leave the peer a gap
        data = bytes(
            Frame(
                frame.kind,
                seq,
                ack,
                frame.relay,
                frame.id,
                frame.method,
                frame.params,
                frame.value,
                frame.error,
            )
        )
        if frame.kind != "ack":
            self._sent = seq
        self._acked_to_peer = ack
        self._ack_owed = False
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if frame.kind != "ack":
            now = asyncio.get_running_loop().time()
            if not self._unacked:
                self._progress_at = now  # the progress clock starts with the first unacked
            self._unacked.append(_Sent(self._sent, data, now))
            self._unacked_bytes += len(data)
            if len(self._unacked) > self._max_unacked or (
                self._max_unacked_bytes is not None
                and self._unacked_bytes > self._max_unacked_bytes
            ):
                self._fail("peer stopped acknowledging")
                raise LinkClosed(f"link {self.name}: peer stopped acknowledging")
        self.frames_out += 1
        reason = self._transport.write(data)
        if reason is None and (frame.kind != "note" or flush):
            # a request, an answer, an ack or a note sent with ``flush`` goes out at once (a
            # join waits for it), with the notes queued before it; other notes wait for the end
            # of the pass (a stream) or for the bus's sender task
            reason = self._transport.flush()
        if reason is not None:
            self._fail(reason)

    def notify(
        self, method: str, params: dict[str, Any], *, relay: int = 0, flush: bool = False
    ) -> None:
        """Send a one-way note (in order with everything else this side sends); ``flush``: at
        once, with what was queued before it, as a request is (someone waits for this one)."""
        self._send(Frame("note", relay=relay, method=method, params=params), flush=flush)

    async def request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        relay: int = 0,
        wait: float | None = None,
    ) -> Any:
        """Ask the peer; its answer within ``wait`` s (``LinkClosed`` if none, or the link goes)."""
        self._next_id += 1
        ident = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            self._send(Frame("req", relay=relay, id=ident, method=method, params=params))
            return await asyncio.wait_for(future, wait or self._request_timeout)
        except TimeoutError:
            raise LinkClosed(f"link {self.name}: no answer to {method}") from None
        finally:
            self._pending.pop(ident, None)

    def _schedule_ack(self) -> None:
        if self._received - self._acked_to_peer >= ACK_EVERY:
            self._send_ack()
        elif self._ack_timer is None and self._ack_delay is not None:
            self._ack_timer = asyncio.get_running_loop().call_later(self._ack_delay, self._send_ack)

    def _send_ack(self) -> None:
        self._ack_timer = None
        if not self.closed.is_set() and (self._received != self._acked_to_peer or self._ack_owed):
            with contextlib.suppress(LinkClosed):
                self._send(Frame("ack"))

    def resend(self) -> int:
        """Send every unacknowledged frame again, in order (a lossy link does this by itself
        when the oldest is ``resend_interval`` old); how many."""
        now = asyncio.get_running_loop().time()
        count = 0
        for sent in list(self._unacked):
            if self.closed.is_set():
                break
            sent.at = now
            count += 1
            reason = self._transport.write(sent.data)
            if reason is not None:
                self._fail(reason)
        self.frames_out += count
        self.frames_resent += count
        return count

    async def _resend_loop(self) -> None:
        """Lossy links: resend, and close when the peer makes no ack progress."""
        loop = asyncio.get_running_loop()
        tick = min(self._resend_interval, self._progress_timeout) / 4
        while not self.closed.is_set():
            await asyncio.sleep(tick)
            if not self._unacked:
                continue
            now = loop.time()
            if self._paused is not None and self._paused():
                self._progress_at = now  # the carrier is down: the peer cannot ack
                continue
            if now - self._progress_at > self._progress_timeout:
                self._fail("no ack progress")
                return
            if now - self._unacked[0].at >= self._resend_interval:
                self.resend()

    # ------------------------------------------------------------------ receiving
    async def _read_loop(self) -> None:
        reason = "eof"
        try:
            await self._transport.receive(self)
        except asyncio.IncompleteReadError:
            reason = "eof"
        except FrameError as exc:
            reason = f"bad frame: {exc}"
            log.error("link %s: %s", self.name, reason)
        except (ConnectionError, OSError) as exc:
            reason = f"connection error: {exc}"
        except asyncio.CancelledError:
            reason = "closed"
            raise
        finally:
            self._fail(reason)

    def deliver(self, body: bytes) -> None:
        """Take one frame body from the transport; ``FrameError`` if it is invalid (or out of
        sequence on a lossless transport)."""
        self._on_frame(Frame.parse(body))

    def feed(self, body: bytes) -> None:
        """Take one frame body pushed from outside the link's task; an invalid frame closes
        the link."""
        if self.closed.is_set():
            return
        try:
            self.deliver(body)
        except FrameError as exc:
            reason = f"bad frame: {exc}"
            log.error("link %s: %s", self.name, reason)
            self._fail(reason)

    def _on_frame(self, frame: Frame) -> None:
        self.frames_in += 1
        trimmed = False
        while self._unacked and self._unacked[0].seq <= frame.ack:
            self._unacked_bytes -= len(self._unacked.popleft().data)
            trimmed = True
        if trimmed:
            self._progress_at = asyncio.get_running_loop().time()
        if frame.kind == "ack":
            return
        if frame.seq <= self._received:
            if self._transport.lossy:  # the peer resent it: our ack went missing
                self._ack_owed = True
                self._schedule_ack()
            return  # a resent duplicate
        if frame.seq != self._received + 1:
            if self._transport.lossy:  # a frame before it was lost: it comes again, in order
                self.frames_dropped += 1
                return
            raise FrameError(f"sequence gap: expected {self._received + 1}, got {frame.seq}")
        self._received = frame.seq
        self._schedule_ack()
        if frame.kind == "res":
            future = self._pending.get(frame.id)
            if future is not None and not future.done():
                if frame.error is not None:
                    future.set_exception(raise_error(frame.error))
                else:
                    future.set_result(frame.value)
        elif frame.kind == "req":
            if len(self._serving) >= MAX_SERVING:
                self._answer(frame, error={"code": "busy", "message": "too many requests"})
                return
            task = asyncio.get_running_loop().create_task(self._serve(frame))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        else:
            try:
                self._on_note(frame)
            except Exception:
                log.exception("link %s: note %s failed", self.name, frame.method)

    async def _serve(self, frame: Frame) -> None:
        try:
            value = await self._on_request(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, (SignalError, RemoteError)):
                log.exception("link %s: request %s failed", self.name, frame.method)
            self._answer(frame, error=error_of(exc))
            return
        try:
            self._answer(frame, value=value)
        except (TypeError, ValueError) as exc:  # the value does not encode (or is too large)
            log.error("link %s: answer to %s does not encode: %s", self.name, frame.method, exc)
            self._answer(frame, error=error_of(exc))

    def _answer(
        self, frame: Frame, *, value: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        with contextlib.suppress(LinkClosed):
            self._send(Frame("res", relay=frame.relay, id=frame.id, value=value, error=error))

    # ------------------------------------------------------------------ closing
    def fail(self, reason: str) -> None:
        """Close the link now for ``reason`` (its owner saw the peer go)."""
        self._fail(reason)

    def _fail(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkClosed(f"link {self.name} closed ({reason})"))
        self._pending.clear()
        for task in list(self._serving):
            task.cancel()
        self._transport.close()
        current = asyncio.current_task()
        for own in (self._task, self._resender):
            if own is not None and own is not current:
                own.cancel()
        if self._on_close is not None:
            self._on_close(self)

    async def close(self) -> None:
        """Close the link and wait for its tasks."""
        self._fail("closed")
        tasks = [t for t in (self._task, self._resender, *self._serving) if t is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._transport.wait_closed()
