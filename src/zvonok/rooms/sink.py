"""What the rooms layer needs from a signaling connection: a place to put server messages.

A ``SignalSink`` is swapped on resume (the session keeps running, its messages go to the new
socket). ``send`` never blocks: implementations keep a bounded queue and close the connection
when it overflows.
"""

from __future__ import annotations

from typing import Any, Protocol


class SignalSink(Protocol):
    def send(self, msg_type: str, payload: dict[str, Any] | None) -> None:
        """Queue one server message for this session's client."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Close the connection (after the queued messages)."""
        ...


class NullSink:
    """The sink of a detached session (socket dropped, inside the resume grace window)."""

    def send(self, msg_type: str, payload: dict[str, Any] | None) -> None:
        return None

    def close(self, code: int, reason: str) -> None:
        return None
