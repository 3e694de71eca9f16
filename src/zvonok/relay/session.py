"""``LinkedSession``: a ``CallSession`` whose room lives across a ``Link``, under one relay id.

The WebSocket endpoint drives it like a local session; each call becomes a request on the link
(``offer``, ``answer``, ``ice``, ``track-settings``, ``leave``) or the note ``detach``, and the
session's server messages come back as the notes ``send``/``close``/``ended`` (``RelaySink`` on
the other side).
Subclasses say what a broken link means (``lost_error``: ``worker-lost`` from a front to its
worker, ``node-lost`` from an edge node to a room's owner) and how they stop relaying
(``forget``). Implements no RFC.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from ..errors import SignalError
from ..ids import SessionId
from ..rooms.sink import SignalSink
from ..signaling.messages import (
    Error,
    IcePayload,
    MessageError,
    TrackSetting,
    parse_server_object,
)
from .link import Link, LinkClosed

log = logging.getLogger("zvonok.relay")


class LinkedSession:
    """One session relayed over ``link`` under ``relay``."""

    def __init__(self, link: Link, relay: int, session_id: SessionId, sink: SignalSink) -> None:
        self.link = link
        self.relay = relay
        self._session_id = session_id
        self.sink = sink
        self._closed = False

    # ------------------------------------------------------------------ what subclasses say
    def lost_error(self) -> SignalError:
        """The error a request meets when the link is gone."""
        raise NotImplementedError

    def forget(self) -> bool:
        """Stop relaying this session; False if that was done already."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise ``lost_error()`` before a request when the other side is known to be gone."""

    # ------------------------------------------------------------------ CallSession
    @property
    def session_id(self) -> SessionId:
        return self._session_id

    @property
    def closed(self) -> bool:
        return self._closed

    async def _request(self, method: str, params: dict[str, Any]) -> None:
        self.check()
        try:
            await self.link.request(method, params, relay=self.relay)
        except LinkClosed:
            raise self.lost_error() from None

    async def offer(self, sdp: str) -> None:
        await self._request("offer", {"sdp": sdp})

    async def answer(self, sdp: str) -> None:
        await self._request("answer", {"sdp": sdp})

    async def ice(self, ice: IcePayload) -> None:
        try:
            ice.parsed_candidate()  # bad-candidate is judged here, as a local session would
        except MessageError as exc:
            raise SignalError(exc.code, exc.message) from None
        await self._request("ice", {"ice": ice.to_json()})

    async def track_settings(self, tracks: tuple[TrackSetting, ...]) -> None:
        await self._request("track-settings", {"tracks": [t.to_json() for t in tracks]})

    async def leave(self) -> None:
        try:
            await self._request("leave", {})
        finally:
            self.forget()

    def detach(self, sink: SignalSink) -> None:
        if not self.forget():
            return
        with contextlib.suppress(LinkClosed):
            self.link.notify("detach", {}, relay=self.relay)

    # ------------------------------------------------------------------ from the other side
    def on_note(self, method: str, params: dict[str, Any]) -> None:
        if method == "send":
            try:
                message = parse_server_object(params["m"])
            except (MessageError, KeyError, TypeError) as exc:
                log.error("link %s sent an invalid server message: %s", self.link.name, exc)
                return
            self.sink.send(message)
        elif method == "close":
            self._closed = True
            self.sink.close(int(params.get("code", 1000)), str(params.get("reason", "")))
        elif method == "ended":
            self._closed = True

    def lost(self, error: SignalError | None = None) -> None:
        """The other side is gone: tell the client ``error`` (``lost_error()`` by default) and
        close its socket (it joins again)."""
        if self._closed:
            return
        self._closed = True
        error = error or self.lost_error()
        self.sink.send(Error(error.code, error.message, retry_after_ms=0))
        self.sink.close(error.close_code, error.code)
