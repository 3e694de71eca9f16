"""One session's decrypted RTP, routed by SSRC to the producers that own it.

Owns ``RtpDispatcher``, the pure-Python reference of ``zvonok.media._fastpath.RtpDispatcher``
(what ``MediaEndpoint.on_rtp`` runs), and ``make_dispatcher``: read the SSRC (RFC 3550 §5.1) of
each packet, call the handler registered for it (a producer's media or RTX stream, RFC 4588 §4),
or the unknown-SSRC hook; packets too short for an RTP header are dropped. Counts packets and
bytes in. The handler table is the caller's dict, shared, not copied.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from typing import TYPE_CHECKING, Protocol

from ..fastpath import native

if TYPE_CHECKING:
    from .. import _fastpath

_unpack_u32 = Struct("!I").unpack_from


class DispatcherLike(Protocol):
    packets_in: int
    bytes_in: int
    dropped: int
    unknown_ssrc: int

    def dispatch(self, packet: bytes, /) -> None: ...


class RtpDispatcher:
    """Routes RTP by SSRC through ``handlers``; others go to ``unknown(ssrc, packet)``."""

    __slots__ = ("handlers", "_unknown", "packets_in", "bytes_in", "dropped", "unknown_ssrc")

    def __init__(
        self,
        handlers: dict[int, Callable[[bytes], None]],
        unknown: Callable[[int, bytes], None],
    ) -> None:
        self.handlers = handlers
        self._unknown = unknown
        self.packets_in = self.bytes_in = self.dropped = self.unknown_ssrc = 0

    def dispatch(self, packet: bytes) -> None:
        self.packets_in += 1
        self.bytes_in += len(packet)
        if len(packet) < 12:
            self.dropped += 1
            return
        ssrc: int = _unpack_u32(packet, 8)[0]
        handler = self.handlers.get(ssrc)
        if handler is None:
            self.unknown_ssrc += 1
            self._unknown(ssrc, packet)
            return
        handler(packet)


def make_dispatcher(
    handlers: dict[int, Callable[[bytes], None]], unknown: Callable[[int, bytes], None]
) -> DispatcherLike:
    """The compiled dispatcher when the extension is built, else the Python one."""
    if native is not None:
        dispatcher: _fastpath.RtpDispatcher = native.RtpDispatcher(handlers, unknown)
        return dispatcher
    return RtpDispatcher(handlers, unknown)
