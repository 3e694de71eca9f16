"""Graceful drain of a node: ``NodeDrain`` (shared design ``cluster.md`` §4 "Graceful drain").

``serving`` → ``draining`` (SIGTERM, or ``POST /admin/drain``) → ``serving`` again
(``DELETE /admin/drain``), or → ``stopping``: when no room is left here, or when
``drain_timeout`` has passed (then the server tells the sessions still here ``node-draining``,
closes their sockets with 1012, releases their rooms and exits: ``app._Server``). While draining,
rooms that exist here keep taking joins and resumes (refusing would split calls), a join that
would create a room is refused with ``node-draining`` (``CallRooms.set_drain``), ``/readyz``
answers 503, and every listener (the node registry's ``set_state``: a draining node is not
picked for new rooms) hears the new state.

Owns one task, the wait for empty rooms (a look every ``POLL_INTERVAL``), cancelled by
``cancel`` and ``stop``. Imports ``rooms.port`` only. Implements no RFC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from .rooms.port import CallRooms

log = logging.getLogger("zvonok.drain")

SERVING: Final = "serving"
DRAINING: Final = "draining"
STOPPING: Final = "stopping"
#: How often a draining node looks whether its rooms are gone.
POLL_INTERVAL: Final = 0.5


class NodeDrain:
    """This node's drain state and the wait for its rooms to end."""

    def __init__(self, calls: CallRooms, timeout: float, *, poll: float = POLL_INTERVAL) -> None:
        self._calls = calls
        self.timeout = timeout
        self._poll = poll
        self.state: str = SERVING
        #: The drain was started by SIGTERM (a second one then stops the node at once).
        self.by_signal = False
        #: Called once the drain is over: ``"empty"`` (no room left) or ``"timeout"``.
        self.on_done: Callable[[str], None] | None = None
        #: Told every state change (``serving``/``draining``): the node registry's ``set_state``.
        self.listeners: list[Callable[[str], None]] = []
        self._deadline: float | None = None  # time.monotonic()
        self._task: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self.state == DRAINING

    def seconds_left(self) -> float | None:
        """Until ``drain_timeout`` ends the drain (None when not draining)."""
        if self._deadline is None or self.state != DRAINING:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def status(self) -> dict[str, Any]:
        """What ``GET``/``POST``/``DELETE /admin/drain`` answer."""
        left = self.seconds_left()
        return {
            "state": self.state,
            "secondsLeft": None if left is None else round(left, 1),
            "drainTimeout": self.timeout,
            "empty": self._calls.empty,
        }

    def start(self, *, by_signal: bool = False) -> bool:
        """Begin draining; False when the node already drains (or stops)."""
        if by_signal:
            self.by_signal = True
        if self.state != SERVING:
            return False
        self.state = DRAINING
        self._deadline = time.monotonic() + self.timeout
        self._calls.set_drain(time.time() + self.timeout)
        self._tell(DRAINING)
        log.info(
            "draining (%s): no new rooms; the node stops when its rooms are empty or in %.0f s",
            "SIGTERM" if by_signal else "admin API",
            self.timeout,
        )
        self._task = asyncio.get_running_loop().create_task(self._wait(), name="drain")
        return True

    def cancel(self) -> bool:
        """Serve again (new rooms welcome); False when not draining (serving, or stopping)."""
        if self.state != DRAINING:
            return False
        self._end_wait()
        self.state = SERVING
        self.by_signal = False
        self._deadline = None
        self._calls.set_drain(None)
        self._tell(SERVING)
        log.info("drain cancelled: serving again")
        return True

    def stop(self) -> None:
        """The node stops now (a fast shutdown, or the drain's end): no more waiting."""
        self._end_wait()
        self.state = STOPPING

    def _end_wait(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _tell(self, state: str) -> None:
        for listener in self.listeners:
            try:
                listener(state)
            except Exception:  # a listener's bug must not stop the drain
                log.exception("drain listener failed")

    async def _wait(self) -> None:
        assert self._deadline is not None
        while not self._calls.empty:
            left = self._deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(self._poll, left))
        reason = "empty" if self._calls.empty else "timeout"
        log.info("drain over: %s", "no room left" if reason == "empty" else "drain_timeout passed")
        self.stop()
        if self.on_done is not None:
            self.on_done(reason)
