"""Fakes shared by unit tests of different packages (rooms, admin)."""

from __future__ import annotations

from typing import Any

from zvonok.signaling.messages import ServerMessage


class RecordingSink:
    """A signaling sink (what a WebSocket session gives the room service) that records what it is
    sent (as ``(type, payload)`` on the wire) and how it was closed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any] | None]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, message: ServerMessage) -> None:
        self.sent.append((message.type, message.to_json()))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def types(self) -> list[str]:
        return [t for t, _ in self.sent]

    def last(self, msg_type: str) -> dict[str, Any]:
        """The payload of the last message of ``msg_type`` (fails if none was sent)."""
        payload: dict[str, Any] | None = next(p for t, p in reversed(self.sent) if t == msg_type)
        assert payload is not None
        return payload

    def errors(self) -> list[str]:
        """The codes of every ``error`` sent, in order."""
        return [str((p or {}).get("code")) for t, p in self.sent if t == "error"]

    def clear(self) -> None:
        self.sent.clear()
