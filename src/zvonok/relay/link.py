"""One worker link: an ordered, acknowledged channel of ``Frame`` values over a byte stream.

Owns the stream's reader task, the tasks that serve the peer's requests, the futures of this
side's own requests, and the bounded record of frames the peer has not acknowledged yet. Offers
``request`` (await the peer's answer: its value, its ``SignalError`` again, or ``RemoteError``),
``notify`` (one-way, in order) and ``close``. Either side serves requests concurrently (each in
its own task, so a worker's ``join`` may ask the front to ``bind`` a session meanwhile) and notes
in arrival order, inline.

Sequence numbers: every frame but ``ack`` carries the next ``seq``; every frame carries the
last ``seq`` received. A duplicate (``seq`` already seen) is dropped, a gap closes the link.
Frames stay recorded until acknowledged, so a transport that can lose or reorder (the cluster's
SignalBus) resends the same frames; on a Unix socket the record only bounds a peer that stops
acknowledging. A link closes when its peer stops reading (``MAX_WRITE_BUFFER``) or stops
acknowledging (``MAX_UNACKED``), when a frame is invalid, or at EOF; ``closed`` is then set and
``on_close`` called once; ``close`` lets frames still buffered drain for ``CLOSE_TIMEOUT`` at most
(a peer that stopped reading gets nothing more). Implements no RFC.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..errors import SignalError
from .frames import HEADER, Frame, FrameError, frame_length

log = logging.getLogger("zvonok.relay")

#: Frames sent and not yet acknowledged, at most; beyond that the peer is stuck: the link closes.
MAX_UNACKED: Final = 100_000
#: Bytes the transport may hold for a peer that does not read, at most.
MAX_WRITE_BUFFER: Final = 64 * 1024 * 1024
#: How long ``close`` lets buffered frames drain to the peer before it drops them.
CLOSE_TIMEOUT: Final = 1.0
#: Requests of the peer served at once, at most (more: answered ``busy``).
MAX_SERVING: Final = 10_000
#: A standalone ``ack`` goes out this long after a frame arrived, if nothing else carried it.
ACK_DELAY: Final = 0.05
#: ...or at once after this many unacknowledged frames.
ACK_EVERY: Final = 64

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
        )
    return RemoteError(error)


class Link:
    """One side of a worker link over ``reader``/``writer``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        name: str,
        on_request: RequestHandler,
        on_note: NoteHandler,
        on_close: Callable[[Link], None] | None = None,
        request_timeout: float = 10.0,
        max_unacked: int = MAX_UNACKED,
    ) -> None:
        self.name = name
        self._reader = reader
        self._writer = writer
        self._on_request = on_request
        self._on_note = on_note
        self._on_close = on_close
        self._request_timeout = request_timeout
        self._max_unacked = max_unacked
        self._sent = 0
        self._received = 0
        self._acked_to_peer = 0
        self._unacked: collections.deque[tuple[int, bytes]] = collections.deque()
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self._ack_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        #: Frames in and out, for metrics.
        self.frames_in = 0
        self.frames_out = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"link-{self.name}"
        )

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    # ------------------------------------------------------------------ sending
    def _send(self, frame: Frame) -> None:
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
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if frame.kind != "ack":
            self._unacked.append((self._sent, data))
            if len(self._unacked) > self._max_unacked:
                self._fail("peer stopped acknowledging")
                raise LinkClosed(f"link {self.name}: peer stopped acknowledging")
        self._writer.write(data)
        self.frames_out += 1
        if self._writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self._fail("peer stopped reading")
            self._writer.transport.abort()  # a graceful close would wait for it to read

    def notify(self, method: str, params: dict[str, Any], *, relay: int = 0) -> None:
        """Send a one-way note (in order with everything else this side sends)."""
        self._send(Frame("note", relay=relay, method=method, params=params))

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
        elif self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY, self._send_ack)

    def _send_ack(self) -> None:
        self._ack_timer = None
        if not self.closed.is_set() and self._received != self._acked_to_peer:
            with contextlib.suppress(LinkClosed):
                self._send(Frame("ack"))

    # ------------------------------------------------------------------ receiving
    async def _read_loop(self) -> None:
        reason = "eof"
        try:
            while not self.closed.is_set():  # a link may close itself in a note handler
                header = await self._reader.readexactly(HEADER.size)
                body = await self._reader.readexactly(frame_length(header))
                self._on_frame(Frame.parse(body))
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

    def _on_frame(self, frame: Frame) -> None:
        self.frames_in += 1
        while self._unacked and self._unacked[0][0] <= frame.ack:
            self._unacked.popleft()
        if frame.kind == "ack":
            return
        if frame.seq <= self._received:
            return  # a resent duplicate
        if frame.seq != self._received + 1:
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
        self._writer.close()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._on_close is not None:
            self._on_close(self)

    async def close(self) -> None:
        """Close the link and wait for its tasks."""
        self._fail("closed")
        tasks = [t for t in (self._task, *self._serving) if t is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            # shielded: a timeout must not cancel the stream's own close waiter
            await asyncio.wait_for(asyncio.shield(self._writer.wait_closed()), CLOSE_TIMEOUT)
        except TimeoutError:  # the peer does not read what is still buffered for it
            self._writer.transport.abort()
        except Exception:
            pass
