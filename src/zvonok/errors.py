"""The small error tree of zvonok.

Bad wire input raises ``ValueError`` in parsers; everything a client is told about becomes a
``SignalError`` whose ``code`` is what the client sees in an ``error`` message.
"""

from __future__ import annotations


class ZvonokError(Exception):
    """Base of every error zvonok raises on purpose."""


class AuthError(ZvonokError):
    """A token was refused (HTTP 401). ``reason`` is a short machine-readable label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AccessDenied(ZvonokError):
    """The user may not enter this chat/group (HTTP 403); never says whether the room exists."""


class StoreUnavailable(ZvonokError):
    """The membership backend could not answer (HTTP 503); access is never assumed."""


class SignalError(ZvonokError):
    """An error reported to the client as ``{"type": "error", "payload": {"code", "message"}}``.

    ``fatal`` errors close the WebSocket with ``close_code`` after the message is sent;
    ``retry_after_ms`` becomes the message's ``retryAfterMs`` (when to try again).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        fatal: bool = False,
        close_code: int = 1008,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal
        self.close_code = close_code
        self.retry_after_ms = retry_after_ms


class MediaError(ZvonokError):
    """A media-plane operation failed (bad SDP, DTLS failure, unsupported codec...)."""
