"""The session's negotiation rules (docs/protocol.md, "Negotiation"), on a real RoomService.

Glare with the server impolite: a colliding client offer is never applied while the server's offer
is outstanding, gets one informational ``glare``, and is answered only if no answer arrives within
``glare_yield``; a refused offer or answer is always followed by a server offer; a session whose
media failed is ended and its socket closed (4002); an ended session's id stays bound to its user.
Real captured client SDP, a real MediaWorker on 127.0.0.1; short real timers (tens of ms).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from zvonok.cluster.base import SessionBinding
from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.errors import SignalError
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.sdp.description import SessionDescription
from zvonok.media.transport.transport import ConnectionState
from zvonok.media.worker import MediaWorker
from zvonok.rooms.participant import Participant
from zvonok.rooms.service import MEDIA_FAILED_CLOSE_CODE, RoomService

from ..fakes import RecordingSink
from ..sdp_answers import answer_to, sdp_fixture

ROOM = RoomKey(RoomKind.GROUP, "7")
YIELD = 0.05


class Sink(RecordingSink):
    def types(self) -> list[str]:
        """What was sent, without the ``tracks`` maps and ``ice`` candidates around offers."""
        return [t for t in super().types() if t not in ("tracks", "ice")]


def make_rooms(worker: MediaWorker, **settings: Any) -> RoomService:
    return RoomService(
        worker=worker,
        sessions=LocalSessionDirectory(),
        rooms=LocalRoomDirectory(),
        ice_servers=[],
        **settings,
    )


@pytest.fixture
async def rooms(worker: MediaWorker) -> AsyncIterator[RoomService]:
    service = make_rooms(worker, glare_yield=YIELD, max_sessions_per_user=2)
    yield service
    await service.close()


async def join(rooms: RoomService, user: str, session: str, sink: Sink) -> Participant:
    participant, _ = await rooms.join(ROOM, UserId(user), SessionId(session), 7, sink)
    return participant


CLIENT_OFFER = sdp_fixture("chromium_offer_audio_video.sdp")


async def test_colliding_offer_is_kept_and_dropped_when_the_answer_arrives(
    rooms: RoomService,
) -> None:
    sink = Sink()
    alice = await join(rooms, "alice", "a", sink)
    server_offer = sink.last("offer")["sdp"]
    sink.clear()
    alice.handle_offer(CLIENT_OFFER)
    alice.handle_offer(CLIENT_OFFER)  # the stale second offer of an explicit-rollback client
    assert sink.errors() == ["glare"]  # informational, once
    assert alice.negotiator.state == "have-local-offer"
    alice.handle_answer(answer_to(server_offer, publish={"0": 1234}))
    assert str(alice.negotiator.state) == "stable"  # (str: mypy keeps the narrowing above)
    await asyncio.sleep(YIELD * 3)
    assert "answer" not in sink.types()  # the pending client offer was dropped, not answered
    assert alice.published  # the answer (publishing audio on mid 0) was applied


async def test_no_answer_within_glare_yield_answers_the_client_then_offers_again(
    rooms: RoomService,
) -> None:
    sink = Sink()
    alice = await join(rooms, "alice", "a", sink)
    sink.clear()
    alice.handle_offer(CLIENT_OFFER)
    await asyncio.sleep(YIELD / 5)
    assert sink.types() == ["error"]
    await asyncio.sleep(YIELD * 3)
    assert sink.types() == ["error", "answer", "offer"]
    answer = SessionDescription.parse(sink.last("answer")["sdp"])
    offered = SessionDescription.parse(CLIENT_OFFER)
    assert [m.mid for m in answer.media] == [m.mid for m in offered.media]
    assert set(alice.published) == {m.mid for m in offered.media}
    assert alice.negotiator.state == "have-local-offer"  # the follow-up round


async def test_refused_answer_is_followed_by_a_new_offer(rooms: RoomService) -> None:
    sink = Sink()
    alice = await join(rooms, "alice", "a", sink)
    sink.clear()
    alice.handle_answer(sdp_fixture("chromium_offer_screenshare.sdp").replace("offer", "answer"))
    assert sink.errors() == ["bad-sdp"]
    assert sink.types() == ["error", "offer"]
    assert alice.negotiator.state == "have-local-offer"


async def test_refused_offer_is_followed_by_a_new_offer(rooms: RoomService) -> None:
    sink = Sink()
    alice = await join(rooms, "alice", "a", sink)
    alice.handle_answer(answer_to(sink.last("offer")["sdp"]))
    sink.clear()
    no_mux = "".join(
        line for line in CLIENT_OFFER.splitlines(keepends=True) if line.strip() != "a=rtcp-mux"
    )
    assert no_mux != CLIENT_OFFER
    alice.handle_offer(no_mux)
    assert sink.types() == ["error", "offer"]
    assert sink.last("error")["code"] == "bad-sdp"


async def test_refused_answer_with_a_pending_client_offer_answers_it(rooms: RoomService) -> None:
    sink = Sink()
    alice = await join(rooms, "alice", "a", sink)
    sink.clear()
    alice.handle_offer(CLIENT_OFFER)
    alice.handle_answer("v=0\r\n")
    assert sink.errors() == ["glare", "bad-sdp"]
    assert sink.types() == ["error", "error", "answer"]


async def test_failed_media_ends_the_session_and_closes_its_socket(rooms: RoomService) -> None:
    a, b = Sink(), Sink()
    alice = await join(rooms, "alice", "a", a)
    await join(rooms, "bob", "b", b)
    alice._on_state(ConnectionState.FAILED)
    for _ in range(20):
        await asyncio.sleep(0.01)
        if a.closed:
            break
    assert a.closed == (MEDIA_FAILED_CLOSE_CODE, "media failed")
    assert a.errors()[-1] == "media-failed"
    left = b.last("participant-left")
    assert left["sessionId"] == "a" and left["reason"] == "failed"
    # the client joins again with the same id: a fresh session
    again = await join(rooms, "alice", "a", Sink())
    assert again is not alice and not again.closed


async def test_ended_session_id_is_not_squatted(rooms: RoomService) -> None:
    alice = await join(rooms, "alice", "a", Sink())
    await rooms.leave(alice, "leave")
    with pytest.raises(SignalError) as taken:
        await join(rooms, "mallory", "a", Sink())
    assert taken.value.code == "session-taken"
    assert not (await join(rooms, "alice", "a", Sink())).closed


async def test_sessions_per_user_capped(rooms: RoomService) -> None:
    await join(rooms, "alice", "a1", Sink())
    await join(rooms, "alice", "a2", Sink())
    with pytest.raises(SignalError) as capped:
        await join(rooms, "alice", "a3", Sink())
    assert capped.value.code == "too-many-sessions"
    await join(rooms, "bob", "b1", Sink())


async def test_lingering_binding_expires_and_is_bounded() -> None:
    now = [0.0]
    directory = LocalSessionDirectory(clock=lambda: now[0], max_lingering=2)
    alice = SessionBinding(UserId("alice"), ROOM)
    mallory = SessionBinding(UserId("mallory"), ROOM)
    elsewhere = SessionBinding(UserId("alice"), RoomKey(RoomKind.CHAT, "1"))
    await directory.bind(SessionId("a"), alice)
    await directory.release(SessionId("a"), alice, linger=10)
    assert await directory.bind(SessionId("a"), mallory) == alice
    assert await directory.bind(SessionId("a"), elsewhere) == elsewhere  # same user, any room
    await directory.release(SessionId("a"), elsewhere, linger=10)
    now[0] = 10.5
    assert await directory.bind(SessionId("a"), mallory) == mallory
    for name in ("x", "y", "z"):
        binding = SessionBinding(UserId(name), ROOM)
        await directory.bind(SessionId(name), binding)
        await directory.release(SessionId(name), binding, linger=10)
    assert await directory.bind(SessionId("x"), mallory) == mallory  # the oldest was forgotten
    assert await directory.bind(SessionId("z"), mallory) != mallory


async def test_no_ice_check_gets_one_ice_restart_then_media_failed(worker: MediaWorker) -> None:
    """A client whose ICE agent never sends a check (Chromium can lose its first gathering in a
    rollback) gets one ICE-restart offer (new ufrag/pwd); still no check after that, and its
    session fails: ``state`` ``failed``, ``error`` ``media-failed``, close 4002, session gone."""
    rooms = make_rooms(worker, ice_stall=YIELD)
    try:
        sink = Sink()
        alice = await join(rooms, "alice", "a", sink)
        ufrags = [SessionDescription.parse(sink.last("offer")["sdp"]).media[0].ice_ufrag]
        alice.handle_answer(answer_to(sink.last("offer")["sdp"]))
        sink.clear()
        await asyncio.sleep(YIELD * 3)
        assert sink.types() == ["offer"]
        ufrags.append(SessionDescription.parse(sink.last("offer")["sdp"]).media[0].ice_ufrag)
        assert len(set(ufrags)) == 2
        alice.handle_answer(answer_to(sink.last("offer")["sdp"]))
        sink.clear()
        await asyncio.sleep(YIELD * 3)
        assert sink.types() == ["state", "error"]
        assert sink.last("state") == {"state": "failed"}
        assert sink.last("error")["code"] == "media-failed"
        assert sink.closed is not None and sink.closed[0] == 4002
        assert SessionId("a") not in rooms.sessions
    finally:
        await rooms.close()


async def test_offer_only_client_receives_a_later_publisher_in_its_vacant_m_lines(
    rooms: RoomService,
) -> None:
    """An offer-only client (offers once, never answers) alone in a room: our answer makes its
    two m-lines vacant (placeholder SSRCs). Bob joins and publishes: his tracks go into those
    m-lines at once, with the SSRCs the client already knows, and a ``tracks`` map says whose
    they are, while our offer to the client stays unanswered."""
    alice_sink, bob_sink = Sink(), Sink()
    alice = await join(rooms, "alice", "a", alice_sink)
    alice.handle_offer(CLIENT_OFFER)  # collides with our first offer, which it never answers
    await asyncio.sleep(YIELD * 3)
    answer = SessionDescription.parse(alice_sink.last("answer")["sdp"])
    held = {m.mid: m.ssrc_of_media() for m in answer.media}
    assert all(m.msid is not None and m.msid[0] == "-" for m in answer.media)
    assert alice.negotiator.state == "have-local-offer" and not alice.consumers
    alice_sink.clear()
    bob = await join(rooms, "bob", "b", bob_sink)
    bob.handle_answer(answer_to(bob_sink.last("offer")["sdp"], publish={"0": 71, "1": 72}))
    await asyncio.sleep(YIELD)
    assert set(alice.consumers) == set(bob.published.values())
    assert {c.ssrc for c in alice.consumers.values()} == set(held.values())
    sent = [t for t, _ in alice_sink.sent]
    # The map alone (once per filled track): no description follows.
    assert sent[0] == "participant-joined" and set(sent[1:]) == {"tracks"}
    tracks = alice_sink.last("tracks")["tracks"]
    assert {(t["mid"], t["sessionId"]) for t in tracks} == {("0", "b"), ("1", "b")}
    assert alice.negotiator.state == "have-local-offer"  # still unanswered, media flows anyway
