"""What the rooms layer needs from a signaling connection: a place to put server messages.

A ``SignalSink`` takes typed server messages (``signaling.messages``, the wire vocabulary shared
by both layers and the only thing ``rooms`` imports from ``signaling``); how they are framed is the
sink's business. It is swapped on resume (the session keeps running, its messages go to the new
socket). ``send`` never blocks: implementations keep a bounded queue and close the connection
when it overflows.
"""

from __future__ import annotations

from typing import Protocol

from ..signaling.messages import ServerMessage


class SignalSink(Protocol):
    def send(self, message: ServerMessage) -> None:
        """Queue one server message for this session's client."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Close the connection (after the queued messages)."""
        ...


class NullSink:
    """The sink of a detached session (socket dropped, inside the resume grace window)."""

    def send(self, message: ServerMessage) -> None:
        return None

    def close(self, code: int, reason: str) -> None:
        return None
