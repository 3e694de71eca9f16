"""The rooms layer as the signaling layer sees it: ``CallRooms`` and ``CallSession``.

A call WebSocket (``signaling.ws``) joins a room through ``CallRooms.join`` and then drives the
``CallSession`` it gets back: ``offer``/``answer``/``ice``/``track_settings``/``leave``, and
``detach`` when its socket drops. Every method is async and raises ``SignalError`` for a refusal,
so the same connection code runs whether the room lives in this process (``LocalRooms``, an
adapter over the ``RoomService``) or in a media worker behind the worker link
(``relay.front.RelayedRooms``). Server messages come back through the ``SignalSink`` given to
``join``. Implements no RFC.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import SignalError
from ..ids import RoomKey, SessionId, UserId
from ..signaling.messages import IcePayload, MessageError, TrackSetting
from .participant import Participant
from .service import RoomService
from .sink import SignalSink


class CallSession(Protocol):
    """One joined session, as its WebSocket drives it."""

    @property
    def session_id(self) -> SessionId: ...

    @property
    def closed(self) -> bool:
        """The session has ended (left, kicked, failed); the socket may still be open."""
        ...

    async def offer(self, sdp: str) -> None: ...

    async def answer(self, sdp: str) -> None: ...

    async def ice(self, ice: IcePayload) -> None: ...

    async def track_settings(self, tracks: tuple[TrackSetting, ...]) -> None:
        """The client's ``track-settings``: its wishes for tracks it receives."""
        ...

    async def leave(self) -> None:
        """The client's ``leave``: end the session now."""
        ...

    def detach(self, sink: SignalSink) -> None:
        """The socket behind ``sink`` dropped: keep the session for the resume grace window."""
        ...


class CallRooms(Protocol):
    """Where sessions join rooms; the app drains and closes it."""

    @property
    def closing(self) -> bool: ...

    async def join(
        self,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
    ) -> CallSession:
        """Enter (or resume) a session; raises ``SignalError`` when refused."""
        ...

    @property
    def empty(self) -> bool:
        """No room lives here (a draining node may stop)."""
        ...

    def set_drain(self, until: float | None) -> None:
        """Drain (existing rooms take joins, new rooms are refused with ``node-draining``) until
        ``until`` (s since the epoch: ``drain_timeout``), or serve again (None)."""
        ...

    def begin_shutdown(self, code: str = "shutdown") -> None:
        """Refuse new joins, tell every session to reconnect: ``error`` ``code`` (``shutdown``,
        or ``node-draining`` at the end of a drain) and close 1012."""
        ...

    async def close(self) -> None: ...


class LocalSession:
    """A ``CallSession`` over a ``Participant`` of this process."""

    __slots__ = ("_service", "participant")

    def __init__(self, service: RoomService, participant: Participant) -> None:
        self._service = service
        self.participant = participant

    @property
    def session_id(self) -> SessionId:
        return self.participant.session_id

    @property
    def closed(self) -> bool:
        return self.participant.closed

    def _live(self) -> Participant:
        if self.participant.closed:
            raise SignalError("not-joined", "the session has ended; join again")
        return self.participant

    async def offer(self, sdp: str) -> None:
        self._live().handle_offer(sdp)

    async def answer(self, sdp: str) -> None:
        self._live().handle_answer(sdp)

    async def ice(self, ice: IcePayload) -> None:
        participant = self._live()
        try:
            candidate = ice.parsed_candidate()
        except MessageError as exc:  # bad-candidate: judged after the room and session
            raise SignalError(exc.code, exc.message) from None
        participant.handle_ice(candidate)

    async def track_settings(self, tracks: tuple[TrackSetting, ...]) -> None:
        self._live().set_track_settings(tracks)

    async def leave(self) -> None:
        await self._service.leave(self._live(), "leave")

    def detach(self, sink: SignalSink) -> None:
        self._service.detach(self.participant, sink)


class LocalRooms:
    """``CallRooms`` over this process's ``RoomService`` (one process, or inside a worker)."""

    def __init__(self, service: RoomService) -> None:
        self.service = service

    @property
    def closing(self) -> bool:
        return self.service.closing

    async def join(
        self,
        key: RoomKey,
        user_id: UserId,
        session_id: SessionId,
        raw_room_id: int | str,
        sink: SignalSink,
    ) -> LocalSession:
        participant, _ = await self.service.join(key, user_id, session_id, raw_room_id, sink)
        return LocalSession(self.service, participant)

    @property
    def empty(self) -> bool:
        return not self.service.rooms

    def set_drain(self, until: float | None) -> None:
        self.service.set_drain(until)

    def begin_shutdown(self, code: str = "shutdown") -> None:
        self.service.begin_shutdown(code)

    async def close(self) -> None:
        await self.service.close()
