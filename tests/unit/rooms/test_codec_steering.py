"""Codec steering (docs/media.md): what each client can send and receive, the rule, and the room.

The rule is checked as a pure function; the negotiator on real Chromium and Firefox ESR SDP
(tests/fixtures/sdp: Firefox captured without OpenH264); the room with a real RoomService and
MediaWorker on 127.0.0.1 and browser-shaped answers that accept codecs in a given order, the way
``setCodecPreferences`` makes a browser do.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.sdp.codecs import CodecKey, codec_key
from zvonok.media.sdp.description import RtpCodec, SessionDescription
from zvonok.media.sdp.negotiation import LocalParameters, SendTrack, SessionNegotiator
from zvonok.rooms import moderation
from zvonok.rooms import participant as participant_module
from zvonok.rooms.participant import Participant
from zvonok.rooms.quality import QualityMonitor
from zvonok.rooms.service import RoomService
from zvonok.rooms.steering import backup_served, steer
from zvonok.signaling.messages import Stats

from ..fakes import RecordingSink
from ..sdp_answers import answer_to, sdp_fixture

VP8: CodecKey = ("vp8", 90000, 1)
VP9: CodecKey = ("vp9", 90000, 1, "0")
H264: CodecKey = ("h264", 90000, 1, "1", 66, 224)
LOCAL = LocalParameters(
    ice_ufrag="srvufrag",
    ice_pwd="serverpasswordserverpassword",
    fingerprint=("sha-256", ":".join(["AB"] * 32)),
    candidates=["candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"],
)


# ---------------------------------------------------------------------------- the rule
def test_a_preferred_codec_everyone_decodes_is_left_alone() -> None:
    got = steer([VP8, VP9, H264], H264, {"a": frozenset({VP8, H264}), "b": frozenset({H264})})
    assert got.allowed is None and not got.unavailable


def test_a_codec_someone_cannot_decode_is_steered_to_what_all_decode() -> None:
    got = steer([VP8, VP9, H264], H264, {"ff": frozenset({VP8, VP9}), "b": frozenset({VP8, H264})})
    assert got.allowed == frozenset({VP8}) and not got.unavailable
    got = steer([VP8, VP9, H264], VP8, {"h264-only": frozenset({H264})})
    assert got.allowed == frozenset({H264}) and not got.unavailable


def test_a_subscriber_that_decodes_nothing_sendable_is_told_and_not_steered_for() -> None:
    got = steer([H264], H264, {"ff": frozenset({VP8, VP9}), "b": frozenset({H264})})
    assert got.allowed is None and got.unavailable == {"ff": "unsupported-codec"}
    got = steer([VP8, H264], H264, {"x": frozenset()})
    assert got.allowed is None and got.unavailable == {"x": "unsupported-codec"}


def test_no_single_codec_fits_the_most_decoded_one_wins() -> None:
    subs = {"a": frozenset({H264}), "b": frozenset({VP8}), "c": frozenset({VP8, VP9})}
    got = steer([VP8, VP9, H264], H264, subs)
    assert got.allowed == frozenset({VP8}) and got.unavailable == {"a": "codec-conflict"}
    # A tie keeps what the publisher sends.
    got = steer([VP8, H264], H264, {"a": frozenset({H264}), "b": frozenset({VP8})})
    assert got.allowed is None and got.unavailable == {"b": "codec-conflict"}


def test_steering_is_stable_once_applied() -> None:
    """The decision is made against the codec sent unrestricted, so applying it changes nothing."""
    subs = {"ff": frozenset({VP8, VP9})}
    first = steer([VP8, VP9, H264], H264, subs)
    assert steer([VP8, VP9, H264], H264, subs) == first
    assert steer([VP8, VP9, H264], H264, {}).allowed is None  # the subscriber left: lifted


def test_a_backup_stream_is_asked_for_in_the_codec_the_conflicting_subscribers_decode() -> None:
    """No single codec fits: the publisher keeps its own, and a backup is wanted in the codec
    most of the others decode (our order on a tie); a backup sending it serves them."""
    subs = {"h": frozenset({H264}), "v": frozenset({VP8})}
    got = steer([VP8, VP9, H264], VP8, subs)
    assert got.allowed is None and got.unavailable == {"h": "codec-conflict"}
    assert got.backup == H264
    assert backup_served(got, subs, H264) == {"h"}
    assert backup_served(got, subs, VP8) == set()  # it does not decode that variant
    assert backup_served(got, subs, None) == set()  # no backup flows yet
    subs = {"a": frozenset({VP9, H264}), "b": frozenset({H264}), "c": frozenset({VP9}),
            "v1": frozenset({VP8}), "v2": frozenset({VP8})}  # fmt: skip
    got = steer([VP8, VP9, H264], VP8, subs)
    assert got.allowed is None and got.backup in (VP9, H264)
    assert got.backup == VP9  # a tie (2 and 2): our order
    assert backup_served(got, subs, VP9) == {"a", "c"}  # b stays codec-conflict


def test_a_publisher_that_cannot_be_steered_gets_a_backup_instead() -> None:
    """Its m-line also carries one of our tracks (our codec list there serves both directions):
    it keeps what it sends, and those who cannot decode that get a backup in what they do."""
    got = steer([VP8, H264], VP8, {"h": frozenset({H264})}, fixed=True)
    assert got.allowed is None and got.unavailable == {"h": "codec-conflict"}
    assert got.backup == H264
    got = steer([VP8, H264], H264, {"a": frozenset({H264}), "b": frozenset({VP8})}, fixed=True)
    assert got.allowed is None and got.unavailable == {"b": "codec-conflict"}
    assert got.backup == VP8
    assert steer([VP8, H264], VP8, {"v": frozenset({VP8})}, fixed=True) == steer(
        [VP8, H264], VP8, {"v": frozenset({VP8})}
    )


def test_no_backup_when_one_codec_fits_or_nobody_can_be_helped() -> None:
    assert steer([VP8, H264], VP8, {"a": frozenset({H264})}).backup is None  # steered instead
    assert steer([VP8, H264], VP8, {"a": frozenset({VP8})}).backup is None
    got = steer([H264], H264, {"ff": frozenset({VP8}), "b": frozenset({H264})})
    assert got.backup is None  # it cannot send what ff decodes: unsupported, not a conflict
    assert backup_served(got, {"ff": frozenset({VP8})}, VP8) == set()


# ---------------------------------------------------------------------------- the negotiator
def _video(desc: SessionDescription, mid: str) -> list[RtpCodec]:
    return next(m.codecs for m in desc.media if m.mid == mid)


def test_chromium_offer_send_codecs_and_a_steered_reoffer_keep_payload_types() -> None:
    neg = SessionNegotiator()
    answer, result = neg.apply_offer(
        sdp_fixture("chromium_offer_audio_video.sdp"), [], lambda _: LOCAL
    )
    mid = next(m for m, t in result.published.items() if t.kind == "video")
    sendable = neg.receive_codecs(mid)
    assert {codec_key(c)[0] for c in sendable} == {"vp8", "vp9", "h264"}
    sent = neg.sending_codec(mid)
    assert sent is not None and sent.name == "VP8"  # our answer puts VP8 first
    assert _video(SessionDescription.parse(answer), mid)[0].name == "VP8"
    pts = {codec_key(c): c.payload_type for c in sendable}

    assert neg.restrict_receive(mid, frozenset({H264}))
    assert not neg.restrict_receive(mid, frozenset({H264}))
    offer = SessionDescription.parse(neg.create_offer([], LOCAL))
    codecs = _video(offer, mid)
    media = [c for c in codecs if c.name != "rtx"]
    assert [codec_key(c) for c in media] == [H264]
    assert media[0].payload_type == pts[H264]  # the same payload type as before
    assert [c.fmtp["apt"] for c in codecs if c.name == "rtx"] == [str(media[0].payload_type)]
    neg.apply_answer(answer_to(str(offer), publish={mid: 4242}))
    sent = neg.sending_codec(mid)
    assert sent is not None and codec_key(sent) == H264

    assert neg.restrict_receive(mid, None)
    offer = SessionDescription.parse(neg.create_offer([], LOCAL))
    again = {codec_key(c): c.payload_type for c in _video(offer, mid) if c.name != "rtx"}
    assert again == pts  # the whole list is back, numbered as before


def test_an_answer_to_a_steered_offer_never_shrinks_what_the_client_can_send() -> None:
    """Lifted while a steered offer is out: its answer lists only the allowed codecs, and the
    next offer must still carry the whole list."""
    neg = SessionNegotiator()
    neg.apply_answer(answer_to(neg.create_offer([], LOCAL), publish={"1": 77}))
    full = [codec_key(c) for c in neg.receive_codecs("1")]
    neg.restrict_receive("1", frozenset({H264}))
    steered = neg.create_offer([], LOCAL)
    neg.restrict_receive("1", None)
    neg.apply_answer(answer_to(steered, publish={"1": 77}))
    assert [codec_key(c) for c in neg.receive_codecs("1")] == full
    offer = SessionDescription.parse(neg.create_offer([], LOCAL))
    assert [codec_key(c) for c in _video(offer, "1") if c.name != "rtx"] == full
    assert offered_names(offer, "1")[0] == "VP8"


def offered_names(desc: SessionDescription, mid: str) -> list[str]:
    return [c.name for c in _video(desc, mid) if c.name != "rtx"]


def test_a_steered_client_offer_is_answered_with_the_allowed_codecs_only() -> None:
    neg = SessionNegotiator()
    text = sdp_fixture("chromium_offer_audio_video.sdp")
    _, result = neg.apply_offer(text, [], lambda _: LOCAL)
    mid = next(m for m, t in result.published.items() if t.kind == "video")
    neg.restrict_receive(mid, frozenset({VP9}))
    answer, _ = neg.apply_offer(text, [], lambda _: LOCAL)
    assert {codec_key(c) for c in _video(SessionDescription.parse(answer), mid)
            if c.name != "rtx"} == {VP9}  # fmt: skip
    sent = neg.sending_codec(mid)
    assert sent is not None and codec_key(sent) == VP9
    assert {codec_key(c)[0] for c in neg.receive_codecs(mid)} == {"vp8", "vp9", "h264"}


def test_a_client_sends_our_first_codec_and_is_offered_its_own_order_next() -> None:
    """RFC 3264: a browser sends the *other* side's first codec (Chromium does, even with H.264
    first in setCodecPreferences), so the server follows the order of the client's answer."""
    neg = SessionNegotiator()
    offer = neg.create_offer([], LOCAL)
    neg.apply_answer(answer_to(offer, publish={"1": 77}, video=["H264", "VP8"]))
    sent = neg.sending_codec("1")
    assert sent is not None and sent.name == "VP8"
    assert neg.preferred_codec("1") == H264
    again = neg.create_offer([], LOCAL)
    assert [c.name for c in _video(SessionDescription.parse(again), "1")][:2] == ["H264", "rtx"]
    neg.apply_answer(answer_to(again, publish={"1": 77}, video=["H264", "VP8"]))
    sent = neg.sending_codec("1")
    assert sent is not None and codec_key(sent) == H264


def test_firefox_without_openh264_accepts_only_vp8_and_vp9_of_a_chromium_camera() -> None:
    chromium = SessionDescription.parse(sdp_fixture("chromium_offer_audio_video.sdp"))
    camera = next(m for m in chromium.media if m.kind == "video")
    track = SendTrack("t1", "alice", "video", camera.codecs, 5555, 5556, "alice")
    neg = SessionNegotiator()
    assert neg.decodable("t1") is None
    neg.apply_offer(sdp_fixture("firefox_offer_audio_video.sdp"), [track], lambda _: LOCAL)
    accepted = neg.decodable("t1")
    assert accepted is not None and {k[0] for k in accepted} == {"vp8", "vp9"}


def test_a_track_filling_a_vacant_m_line_is_decodable_at_once() -> None:
    neg = SessionNegotiator()
    neg.apply_offer(sdp_fixture("chromium_offer_audio_video.sdp"), [], lambda _: LOCAL)
    assert neg.decodable_map() == {}  # vacant placeholders carry no track
    vp8 = [RtpCodec(96, "VP8", 90000, None, {}, [])]
    assert neg.fill_vacant(SendTrack("t1", "a", "video", vp8, 7, 8, "a")) is not None
    assert neg.decodable("t1") is not None and VP8 in neg.decodable("t1")  # type: ignore[operator]


def test_a_refused_track_decodes_nothing() -> None:
    h264 = [RtpCodec(102, "H264", 90000, None, {"packetization-mode": "1",
                                                "profile-level-id": "42e01f"}, [])]  # fmt: skip
    neg = SessionNegotiator()
    offer = neg.create_offer([SendTrack("t1", "a", "video", h264, 7, 8, "a")], LOCAL)
    neg.apply_answer(answer_to(offer, video=["VP8", "VP9"]))  # Firefox: no H.264 → port 0
    assert neg.decodable("t1") == frozenset()


# ---------------------------------------------------------------------------- the room
ROOM = RoomKey(RoomKind.GROUP, "19")


async def join(rooms: RoomService, user: str, sink: RecordingSink) -> Participant:
    participant, _ = await rooms.join(ROOM, UserId(user), SessionId(user), 19, sink)
    return participant


def offered_video(sink: RecordingSink, mid: str) -> list[str]:
    desc = SessionDescription.parse(sink.last("offer")["sdp"])
    return [c.name for c in _video(desc, mid) if c.name != "rtx"]


def count(sink: RecordingSink, msg_type: str) -> int:
    return sink.types().count(msg_type)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_an_h264_camera_is_steered_to_vp8_for_a_firefox_and_back(
    rooms: RoomService,
) -> None:
    alice_sink, bob_sink = RecordingSink(), RecordingSink()
    alice = await join(rooms, "alice", alice_sink)
    # Chromium with H.264 first in setCodecPreferences: it answers (and sends) H.264.
    alice.handle_answer(
        answer_to(
            alice_sink.last("offer")["sdp"],
            publish={"0": 71, "1": 72},
            video=["H264", "VP8", "VP9"],
        )  # fmt: skip
    )
    await settle()
    # She sends our first codec (VP8), so she gets an offer in her own order, H.264 first.
    assert alice.negotiator.preferred_codec("1") == H264
    assert offered_video(alice_sink, "1")[0] == "H264"
    alice.handle_answer(
        answer_to(
            alice_sink.last("offer")["sdp"],
            publish={"0": 71, "1": 72},
            video=["H264", "VP8", "VP9"],
        )  # fmt: skip
    )
    await settle()
    sent = alice.negotiator.sending_codec("1")
    assert sent is not None and codec_key(sent) == H264
    offers_to_alice = count(alice_sink, "offer")

    bob = await join(rooms, "bob", bob_sink)  # Firefox without OpenH264
    bob.handle_answer(answer_to(bob_sink.last("offer")["sdp"], video=["VP8", "VP9"]))
    await settle()
    camera = alice.published["1"]
    decodable = bob.negotiator.decodable(camera)
    assert decodable is not None and {k[0] for k in decodable} == {"vp8", "vp9"}
    # Alice is renegotiated: her video m-line now lists only what Bob decodes.
    assert count(alice_sink, "offer") == offers_to_alice + 1
    assert set(offered_video(alice_sink, "1")) == {"VP8", "VP9"}
    alice.handle_answer(
        answer_to(
            alice_sink.last("offer")["sdp"],
            publish={"0": 71, "1": 72},
            video=["H264", "VP8", "VP9"],
        )  # fmt: skip
    )
    await settle()
    sent = alice.negotiator.sending_codec("1")
    assert sent is not None and sent.name == "VP8"
    assert alice.negotiator.preferred_codec("1") == H264  # what she goes back to when free
    # Bob's consumer already maps VP8: no renegotiation for him, no track-unavailable.
    assert codec_key(sent) in decodable
    assert count(bob_sink, "track-unavailable") == 0
    assert count(alice_sink, "offer") == offers_to_alice + 1  # stable: no further offers

    await rooms.leave(bob, "leave")
    await settle()
    assert count(alice_sink, "offer") == offers_to_alice + 2
    assert offered_video(alice_sink, "1")[0] == "H264"  # the restriction is lifted


async def test_a_subscriber_that_decodes_nothing_sendable_is_told(rooms: RoomService) -> None:
    alice_sink, bob_sink = RecordingSink(), RecordingSink()
    alice = await join(rooms, "alice", alice_sink)
    # Chromium with setCodecPreferences([H.264]) only: it can send nothing else.
    alice.handle_answer(
        answer_to(alice_sink.last("offer")["sdp"], publish={"0": 71, "1": 72}, video=["H264"])
    )
    await settle()
    offers_to_alice = count(alice_sink, "offer")
    bob = await join(rooms, "bob", bob_sink)
    bob.handle_answer(answer_to(bob_sink.last("offer")["sdp"], video=["VP8", "VP9"]))
    await settle()
    camera = alice.published["1"]
    told = [p for t, p in bob_sink.sent if t == "track-unavailable"]
    assert told == [
        {
            "trackId": camera,
            "kind": "video",
            "sessionId": "alice",
            "userId": "alice",
            "unavailable": True,
            "reason": "unsupported-codec",
            "codecs": ["video/H264"],
        }
    ]
    assert count(alice_sink, "offer") == offers_to_alice  # nothing to steer to
    assert count(alice_sink, "track-unavailable") == 0


def with_msid(sdp: str, stream: str) -> str:
    """Alice's description with ``a=msid`` on the m-lines she sends (a browser's stream id)."""
    desc = SessionDescription.parse(sdp)
    for media in desc.media:
        if media.ssrcs:
            media.msid = (stream, f"track-{media.mid}")
    return str(desc)


def backup_offer(answer: str, camera_mid: str, codec: str, ssrc: int) -> str:
    """Alice's SDK adding a backup stream: her last answer turned into an offer, plus a
    send-only m-line in the camera's stream that lists only ``codec`` (with its RTX)."""
    desc = SessionDescription.parse(answer)
    for media in desc.media:
        media.setup = "actpass"
    camera = next(m for m in desc.media if m.mid == camera_mid)
    extra = copy.deepcopy(camera)
    extra.mid = str(max(int(m.mid or 0) for m in desc.media) + 1)
    kept = [c for c in camera.codecs if c.name.lower() == codec.lower()]
    pts = {c.payload_type for c in kept}
    rtx = [c for c in camera.codecs if c.name.lower() == "rtx" and int(c.fmtp["apt"]) in pts]
    extra.codecs = kept + rtx
    extra.formats = [str(c.payload_type) for c in extra.codecs]
    extra.direction = "sendonly"
    extra.ssrcs = {ssrc: {"cname": "client"}}
    assert camera.msid is not None
    extra.msid = (camera.msid[0], "backup-clone")
    desc.media.append(extra)
    return str(desc)


@dataclass
class ConflictRoom:
    """alice publishing a VP8 camera (her SDK's msid stream ``alice-stream``), a VP8-only and an
    H.264-only subscriber: no single codec fits both."""

    alice: Participant
    vp8: Participant
    h264: Participant
    alice_sink: RecordingSink
    vp8_sink: RecordingSink
    h264_sink: RecordingSink
    #: alice's answer (to build her backup offer from) and her camera's track id
    answer: str
    camera: str


async def conflict_room(rooms: RoomService, h264_answer: Callable[[str], str]) -> ConflictRoom:
    """The room of ``ConflictRoom``; ``h264_answer`` makes the H.264 subscriber's answer from
    our offer."""
    alice_sink, vp8_sink, h264_sink = RecordingSink(), RecordingSink(), RecordingSink()
    alice = await join(rooms, "alice", alice_sink)
    answer = with_msid(
        answer_to(alice_sink.last("offer")["sdp"], publish={"0": 71, "1": 72},
                  video=["VP8", "H264"]),
        "alice-stream",
    )  # fmt: skip
    alice.handle_answer(answer)
    await settle()
    camera = alice.published["1"]
    vp8 = await join(rooms, "vp8", vp8_sink)
    vp8.handle_answer(answer_to(vp8_sink.last("offer")["sdp"], video=["VP8"]))
    h264 = await join(rooms, "h264", h264_sink)
    h264.handle_answer(h264_answer(h264_sink.last("offer")["sdp"]))
    await settle()
    return ConflictRoom(alice, vp8, h264, alice_sink, vp8_sink, h264_sink, answer, camera)


@pytest.mark.parametrize(("leaving", "late"), [("h264", False), ("vp8", True)])
async def test_a_backup_stream_serves_the_subscriber_no_single_codec_fits(
    rooms: RoomService, leaving: str, late: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An H.264-only and a VP8-only subscriber of a VP8 camera: the publisher is asked for a
    backup stream in H.264 (``publish-backup``); the m-line its SDK adds is tied to the camera,
    not announced; the H.264 subscriber is fed from it on its camera m-line (no renegotiation)
    and never told ``codec-conflict`` — or, when the backup comes later than ``BACKUP_GRACE``,
    told and then told the track is available again. When either leaves, the backup is no longer
    asked for (without the VP8 one, the camera itself is steered to H.264 and feeds the other), and
    once the SDK removes its m-line the backup producer is closed."""
    if late:
        monkeypatch.setattr(participant_module, "BACKUP_GRACE", 0.01)
    room = await conflict_room(rooms, lambda sdp: answer_to(sdp, video=["H264"]))
    alice, vp8, h264 = room.alice, room.vp8, room.h264
    alice_sink, vp8_sink, h264_sink = room.alice_sink, room.vp8_sink, room.h264_sink
    answer, camera = room.answer, room.camera
    assert alice_sink.last("publish-backup") == {
        "trackId": camera, "mid": "1", "codec": "video/H264", "active": True,
    }  # fmt: skip
    if late:  # no backup within the grace: told
        await asyncio.sleep(0.05)
        await settle()
        assert h264_sink.last("track-unavailable")["reason"] == "codec-conflict"
    else:  # a backup is on its way: not told (yet)
        assert count(h264_sink, "track-unavailable") == 0
    assert camera in h264.consumers  # the camera's own consumer (its VP8 is dropped)
    offers = {p.session_id: count(s, "offer") for p, s in ((vp8, vp8_sink), (h264, h264_sink))}

    alice.handle_offer(backup_offer(answer, "1", "H264", 73))
    await settle()
    assert list(alice.published) == ["0", "1"]  # not a track of the room
    backup = alice.backups[camera]
    assert backup.mid == "2" and not backup.producer.closed
    assert camera not in h264.consumers
    fed = h264.consumers[backup.producer.id]
    assert fed.ssrc == h264._send_ssrcs[camera][0]  # the SSRC its camera m-line announced
    told = [p["unavailable"] for t, p in h264_sink.sent if t == "track-unavailable" and p]
    assert told == ([True, False] if late else [])
    QualityMonitor(rooms, interval=5.0).run(5.0)  # every session at once
    for sink in (alice_sink, vp8_sink, h264_sink):  # sent as built: byte for byte the parsed one
        sent = sink.last("stats")
        assert json.dumps(sent) == json.dumps(Stats.parse(sent).to_json())
    video = [r for r in h264_sink.last("stats")["receiving"] if r["kind"] == "video"]
    assert [(r["trackId"], r["sessionId"]) for r in video] == [(camera, "alice")]
    assert [p["mid"] for p in alice_sink.last("stats")["published"]] == ["0", "1"]
    assert moderation.set_muted(rooms, "alice", camera, True)
    assert fed.paused  # an operator's mute of the camera mutes its backup's copies too
    assert moderation.set_muted(rooms, "alice", camera, False)
    assert not fed.paused
    assert camera in vp8.consumers and backup.producer.id not in vp8.consumers  # VP8: camera
    for participant, sink in ((vp8, vp8_sink), (h264, h264_sink)):
        assert count(sink, "offer") == offers[participant.session_id]  # no renegotiation
        assert all(t["trackId"] != backup.producer.id for t in sink.last("tracks")["tracks"])

    await rooms.leave(h264 if leaving == "h264" else vp8, "leave")
    await settle()
    assert alice_sink.last("publish-backup")["active"] is False
    assert count(alice_sink, "publish-backup") == 2
    if leaving == "vp8":
        assert set(offered_video(alice_sink, "1")) == {"H264"}  # steered: all decode H.264
        assert camera in h264.consumers and backup.producer.id not in h264.consumers
        assert count(h264_sink, "track-unavailable") == (2 if late else 0)
    # Alice's SDK stops the transceiver: her next offer rejects that m-line.
    if alice.negotiator.state == "have-local-offer":  # steered (vp8 left): she answers first
        alice.handle_answer(
            answer_to(alice_sink.last("offer")["sdp"], publish={"0": 71, "1": 72, "2": 73},
                      video=["VP8", "H264"])
        )  # fmt: skip
        await settle()
        assert alice.backups[camera] is backup  # still published
    desc = SessionDescription.parse(backup_offer(answer, "1", "H264", 73))
    desc.media[-1].port = 0
    alice.handle_offer(str(desc))
    await settle()
    assert camera not in alice.backups and backup.producer.closed


def only_profile(answer: str, profile: str) -> str:
    """A browser answer that accepts H.264 in one profile only (``profile-level-id``)."""
    desc = SessionDescription.parse(answer)
    for media in desc.media:
        if media.kind != "video" or media.port == 0:
            continue
        kept = [c for c in media.codecs if c.fmtp.get("profile-level-id") == profile]
        pts = {c.payload_type for c in kept}
        rtx = [c for c in media.codecs if c.name.lower() == "rtx" and int(c.fmtp["apt"]) in pts]
        media.codecs = kept + rtx
        media.formats = [str(c.payload_type) for c in media.codecs]
    return str(desc)


async def test_a_backup_sent_in_another_h264_profile_is_restricted_to_the_decoded_one(
    rooms: RoomService,
) -> None:
    room = await conflict_room(rooms, lambda sdp: only_profile(answer_to(sdp), "4d001f"))
    alice, h264, alice_sink, h264_sink = room.alice, room.h264, room.alice_sink, room.h264_sink
    answer, camera = room.answer, room.camera
    assert alice_sink.last("publish-backup")["codec"] == "video/H264"
    offers = count(alice_sink, "offer")
    alice.handle_offer(backup_offer(answer, "1", "H264", 73))  # every H.264 profile
    await settle()
    backup = alice.backups[camera]
    sent = alice.negotiator.sending_codec(backup.mid)
    assert sent is not None and sent.fmtp["profile-level-id"] == "42e01f"  # our first
    assert count(h264_sink, "track-unavailable") == 0  # not served yet, but coming
    assert count(alice_sink, "offer") == offers + 1  # restricted to what h264 decodes
    desc = SessionDescription.parse(alice_sink.last("offer")["sdp"])
    profiles = {c.fmtp.get("profile-level-id") for c in _video(desc, backup.mid) if c.name != "rtx"}
    assert profiles == {"4d001f"}
    alice.handle_answer(
        answer_to(alice_sink.last("offer")["sdp"], publish={"0": 71, "1": 72, "2": 73},
                  video=["VP8", "H264"])
    )  # fmt: skip
    await settle()
    assert backup.producer.id in h264.consumers
    assert count(h264_sink, "track-unavailable") == 0
