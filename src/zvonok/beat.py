"""A shared beat for timers that may run a little early: one event-loop timer per beat, not one
per connection.

Owns ``Beat``: a callback filed for time ``when`` runs at the last multiple of ``quantum`` at or
before ``when`` (so at most ``quantum`` early, never late but for the loop's own lag), together
with every other callback filed for that multiple, on one ``call_at``. An idle server's cost is
its wake-ups; its per-connection periodic timers (keepalive pings every ``ping_interval``, the
lazily re-armed silence check, ``httpserver``) each woke the loop on their own, ~30 a second for
200 signaling connections; on the beat they share one wake-up a second. A timer that must be
exact re-arms itself: its last step (under two quanta left) gets a timer of its own.
Imports only asyncio; knows nothing about connections.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class BeatHandle:
    """A callback filed on a beat; ``cancel()`` keeps it from running (as ``TimerHandle``) and
    takes it off its beat at once, so a closed connection leaves nothing filed behind."""

    __slots__ = ("_beat", "_slot", "callback")

    def __init__(self, beat: Beat, slot: int, callback: Callable[[], None]) -> None:
        self._beat = beat
        self._slot = slot
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        if self.callback is None:
            return
        self.callback = None
        waiting = self._beat._slots.get(self._slot)
        if waiting is not None:
            waiting.pop(self, None)

    def cancelled(self) -> bool:
        return self.callback is None


class Beat:
    """Callbacks due at multiples of ``quantum`` seconds (loop time), one loop timer per
    multiple that has any."""

    def __init__(self, quantum: float = 1.0) -> None:
        if quantum <= 0:
            raise ValueError("quantum must be positive")
        self.quantum = quantum
        #: Per multiple: its handles in filing order (a dict, so ``cancel`` removes one in O(1)).
        self._slots: dict[int, dict[BeatHandle, None]] = {}
        #: How many loop timers the beat armed (one per multiple with callbacks; tests).
        self.timers = 0

    def call_at(
        self, loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], None]
    ) -> BeatHandle | asyncio.TimerHandle:
        """Run ``callback`` at the last multiple of ``quantum`` at or before ``when`` (loop
        time); exactly at ``when``, on a timer of its own, when ``when`` is less than two
        quanta away (so a callback never runs earlier than half its delay)."""
        if when - loop.time() < 2 * self.quantum:
            return loop.call_at(when, callback)
        # (a ``when`` a hair below a multiple, by float arithmetic, counts as that multiple)
        slot = math.floor(when / self.quantum + 1e-6)
        handle = BeatHandle(self, slot, callback)
        waiting = self._slots.get(slot)
        if waiting is None:
            waiting = self._slots[slot] = {}
            self.timers += 1
            loop.call_at(slot * self.quantum, self._run, loop, slot)
        waiting[handle] = None
        return handle

    def _run(self, loop: asyncio.AbstractEventLoop, slot: int) -> None:
        for handle in self._slots.pop(slot, {}):
            callback = handle.callback
            if callback is None:
                continue
            handle.callback = None
            try:
                callback()
            except Exception as exc:  # as the loop treats a failing timer: reported, not fatal
                loop.call_exception_handler(
                    {"message": f"beat callback {callback!r} failed", "exception": exc}
                )

    def pending(self) -> int:
        """Callbacks filed and not yet run or cancelled (tests, diagnostics)."""
        return sum(len(w) for w in self._slots.values())
