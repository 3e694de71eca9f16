"""``RelaySink``: the ``SignalSink`` of a session whose WebSocket is held by another process.

The rooms layer sends a relayed session's server messages into it as if into a WebSocket; they
travel over a ``Link`` (to the front from a media worker, or to the edge node from a room's owner
node) as the notes ``send`` and ``close`` of the session's ``relay`` id. ``joined``, the answer
to the client's ``join``, leaves at once (``Link.notify`` with ``flush``): the rest of the join
(``participant-joined`` for the room, the first offer) runs after it in the same pass and its
client waits for it; other messages leave with the link's next write. Implements no RFC.
"""

from __future__ import annotations

import contextlib
from typing import Final

from ..signaling.messages import ServerMessage
from .link import Link, LinkClosed

#: Server messages sent at once (``flush``): someone waits for them.
FLUSHED: Final = frozenset({"joined"})


class RelaySink:
    """Server messages of one relayed session, as notes on ``link`` under ``relay``."""

    __slots__ = ("link", "relay", "_closed")

    def __init__(self, link: Link, relay: int) -> None:
        self.link = link
        self.relay = relay
        self._closed = False

    def send(self, message: ServerMessage) -> None:
        if self._closed:
            return
        with contextlib.suppress(LinkClosed):
            self.link.notify(
                "send",
                {"m": {"type": message.type, "payload": message.to_json()}},
                relay=self.relay,
                flush=message.type in FLUSHED,
            )

    def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(LinkClosed):
            self.link.notify("close", {"code": code, "reason": reason}, relay=self.relay)
