"""Server-side offer/answer: real browser offers answered, our offers answered, stability rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from zvonok.media.sdp.codecs import codec_key
from zvonok.media.sdp.description import RtpCodec, SessionDescription
from zvonok.media.sdp.negotiation import LocalParameters, SendTrack, SessionNegotiator

from ..sdp_answers import answer_to

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sdp"
LOCAL = LocalParameters(
    ice_ufrag="srvufrag",
    ice_pwd="serverpasswordserverpassword",
    fingerprint=("sha-256", ":".join(["AB"] * 32)),
    candidates=["candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"],
)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def local_for(restart: bool) -> LocalParameters:
    if restart:
        return LocalParameters("newufrag", "newpasswordnewpasswordnew", LOCAL.fingerprint, [])
    return LOCAL


def vp8_track(track_id: str = "t1", ssrc: int = 1111) -> SendTrack:
    return SendTrack(
        track_id=track_id,
        stream_id="alice-1",
        kind="video",
        codecs=[RtpCodec(120, "VP8", 90000, None, {"max-fs": "12288"}, ["nack"])],
        ssrc=ssrc,
        rtx_ssrc=ssrc + 1,
        cname="alice-1",
    )


def test_first_offer_is_two_recvonly_lines() -> None:
    neg = SessionNegotiator()
    desc = SessionDescription.parse(neg.create_offer([], LOCAL))
    assert desc.ice_lite
    assert [(m.kind, m.direction) for m in desc.media] == [
        ("audio", "recvonly"),
        ("video", "recvonly"),
    ]
    assert desc.bundle == [[m.mid for m in desc.media]]
    for media in desc.media:
        assert media.setup == "actpass" and media.rtcp_mux
        assert media.fingerprints == [LOCAL.fingerprint]
        assert [str(c) for c in media.candidates] == list(LOCAL.candidates)
    assert [c.name for c in desc.media[0].codecs][0] == "opus"
    assert [c.name for c in desc.media[1].codecs][0] == "VP8"
    assert neg.state == "have-local-offer"


def test_answer_publishes_tracks() -> None:
    neg = SessionNegotiator()
    offer = neg.create_offer([], LOCAL)
    result = neg.apply_answer(answer_to(offer, publish={"0": 10, "1": 20}))
    assert neg.state == "stable"
    assert {m: t.ssrc for m, t in result.published.items()} == {"0": 10, "1": 20}
    assert result.ice_ufrag == "cliufrag"
    assert result.published["1"].codecs[96].name == "VP8"


@pytest.mark.parametrize("browser", ["chromium", "firefox", "aiortc"])
def test_client_offer_answered(browser: str) -> None:
    neg = SessionNegotiator()
    offer = fixture(f"{browser}_offer_audio_video.sdp")
    answer_text, result = neg.apply_offer(offer, [], local_for)
    answer = SessionDescription.parse(answer_text)
    offered = SessionDescription.parse(offer)
    assert [m.mid for m in answer.media] == [m.mid for m in offered.media]
    for sent, got in zip(offered.media, answer.media, strict=True):
        # Nothing to send yet: each sendrecv m-line is vacant (a placeholder with SSRCs).
        assert sent.direction in (None, "sendrecv") and got.direction == "sendrecv"
        assert got.msid == ("-", f"vacant-{got.mid}") and got.ssrc_of_media() is not None
        assert got.setup == "passive"
        assert {c.payload_type for c in got.codecs} <= {c.payload_type for c in sent.codecs}
        assert all(c.name.lower() not in ("red", "ulpfec", "telephone-event") for c in got.codecs)
    assert set(result.published) == {m.mid for m in offered.media}
    assert result.sending == {} and result.refused == frozenset()
    for media in offered.media:
        assert result.published[media.mid or ""].ssrc == media.ssrc_of_media()
    assert answer.media[0].codecs[0].name.lower() == "opus"


def send_track(track_id: str, kind: str, codecs: list[RtpCodec], ssrc: int) -> SendTrack:
    return SendTrack(track_id, "pub", kind, codecs, ssrc, ssrc + 1, "pub")


def test_a_later_track_fills_a_vacant_m_line_with_its_ssrcs() -> None:
    """An offer-only client learns the SSRCs of its vacant m-lines from our answer; a track that
    appears later is sent there at once (no renegotiation) with those SSRCs, also in our
    outstanding offer, and our next offer names it in the same m-line."""
    neg = SessionNegotiator()
    offer = fixture("chromium_offer_audio_video.sdp")
    answer = SessionDescription.parse(neg.apply_offer(offer, [], local_for)[0])
    held = {m.kind: (m.ssrc_of_media(), m.rtx_ssrc()) for m in answer.media}
    pending = neg.create_offer([], LOCAL)  # outstanding and never answered (offer-only)
    assert SessionDescription.parse(pending).media[1].msid == ("-", "vacant-1")
    vp8 = RtpCodec(100, "VP8", 90000, None, {}, [])
    h265 = RtpCodec(101, "H265", 90000, None, {}, [])
    assert neg.fill_vacant(send_track("t-h265", "video", [h265], 500)) is None  # no codec
    placed = neg.fill_vacant(send_track("t-cam", "video", [vp8], 500))
    assert placed is not None and (placed.ssrc, placed.rtx_ssrc) == held["video"]
    assert neg.fill_vacant(send_track("t-cam2", "video", [vp8], 600)) is None  # full now
    assert neg.placed_track_ids() == {"t-cam"}
    assert set(neg.sending) == {"t-cam"} and neg.sending["t-cam"].mid == "1"
    assert neg.current_slots[1].send == placed  # the outstanding offer carries it too
    neg.rollback()
    again = SessionDescription.parse(neg.create_offer([placed], LOCAL))
    assert len(again.media) == 2 and again.media[1].msid == ("pub", "t-cam")
    assert again.media[1].ssrc_of_media() == held["video"][0]
    assert again.media[0].msid == ("-", "vacant-0")  # audio is still vacant


def test_screen_share_offer_publishes_three_tracks() -> None:
    neg = SessionNegotiator()
    _, result = neg.apply_offer(fixture("chromium_offer_screenshare.sdp"), [], local_for)
    assert [t.kind for t in result.published.values()] == ["audio", "video", "video"]


def test_payload_types_stay_stable_after_client_offer() -> None:
    neg = SessionNegotiator()
    offer = fixture("firefox_offer_audio_video.sdp")
    neg.apply_offer(offer, [], local_for)
    firefox_vp8 = next(
        c.payload_type for c in SessionDescription.parse(offer).media[1].codecs if c.name == "VP8"
    )
    ours = SessionDescription.parse(neg.create_offer([vp8_track()], LOCAL))
    sent = ours.media[2]
    assert sent.direction == "sendonly"
    assert [c.payload_type for c in sent.codecs if c.name == "VP8"] == [firefox_vp8]
    assert sent.ssrc_of_media() == 1111 and sent.rtx_ssrc() == 1112
    assert sent.msid == ("alice-1", "t1")
    ids = {e.uri: e.id for m in ours.media for e in m.extensions}
    offered_ids = {e.uri: e.id for m in SessionDescription.parse(offer).media for e in m.extensions}
    for uri, ext_id in ids.items():
        if uri in offered_ids:
            assert offered_ids[uri] == ext_id


def test_glare_refused_and_offers_serialized() -> None:
    neg = SessionNegotiator()
    neg.create_offer([], LOCAL)
    with pytest.raises(ValueError, match="glare"):
        neg.apply_offer(fixture("chromium_offer_audio_video.sdp"), [], local_for)
    with pytest.raises(RuntimeError, match="outstanding"):
        neg.create_offer([], LOCAL)


def test_removed_track_stops_mline_then_recycles_it() -> None:
    neg = SessionNegotiator()
    neg.apply_answer(answer_to(neg.create_offer([vp8_track("a")], LOCAL)))
    first = SessionDescription.parse(neg.create_offer([], LOCAL))
    assert first.media[2].port == 0 and first.media[2].mid not in first.bundle[0]
    neg.apply_answer(answer_to(str(first), reject={first.media[2].mid or ""}))
    second = SessionDescription.parse(neg.create_offer([vp8_track("b", 3333)], LOCAL))
    assert len(second.media) == 3
    assert second.media[2].port != 0 and second.media[2].mid != first.media[2].mid
    assert second.media[2].msid == ("alice-1", "b")
    vp8 = [c.payload_type for m in second.media for c in m.codecs if c.name == "VP8"]
    assert len(set(vp8)) == 1


def test_accepted_send_reports_codecs_and_refusals() -> None:
    neg = SessionNegotiator()
    offer = neg.create_offer([vp8_track("a"), vp8_track("b", 5555)], LOCAL)
    mids = [m.mid for m in SessionDescription.parse(offer).media]
    result = neg.apply_answer(answer_to(offer, reject={mids[3] or ""}))
    assert set(result.sending) == {"a"}
    assert result.refused == frozenset({"b"})
    accepted = result.sending["a"]
    assert [c.name for c in accepted.codecs] == ["VP8"]
    assert list(accepted.rtx.values()) == [accepted.codecs[0].payload_type]
    assert codec_key(accepted.codecs[0]) == codec_key(vp8_track().codecs[0])


def test_ice_restart_detected() -> None:
    neg = SessionNegotiator()
    offer = fixture("chromium_offer_audio_video.sdp")
    neg.apply_offer(offer, [], local_for)
    restarted = offer.replace("a=ice-ufrag:w4uw", "a=ice-ufrag:zzzz")
    answer, result = neg.apply_offer(restarted, [], local_for)
    assert result.ice_restart and "a=ice-ufrag:newufrag" in answer


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("garbage", "line 1"),
        (
            fixture("chromium_offer_audio_video.sdp").replace("a=setup:actpass", "a=setup:passive"),
            "setup:passive",
        ),
        (fixture("chromium_offer_audio_video.sdp").replace("a=rtcp-mux\n", ""), "rtcp-mux"),
    ],
)
def test_bad_offers(text: str, message: str) -> None:
    neg = SessionNegotiator()
    with pytest.raises(ValueError, match=message):
        neg.apply_offer(text, [], local_for)
    assert neg.state == "stable" and neg.slots == []


def test_answer_without_offer_refused() -> None:
    with pytest.raises(ValueError, match="no offer is outstanding"):
        SessionNegotiator().apply_answer(fixture("chromium_answer_to_server_offer.sdp"))


def test_firefox_bundle_only_mlines_are_not_rejected() -> None:
    offer = fixture("firefox_offer_audio_video.sdp")
    desc = SessionDescription.parse(offer)
    video = desc.media[1]
    video.port = 0
    video.other.append(("bundle-only", None))
    video.ice_ufrag = video.ice_pwd = None
    video.candidates = []
    neg = SessionNegotiator()
    answer, result = neg.apply_offer(str(desc), [], local_for)
    assert set(result.published) == {"0", "1"}
    assert SessionDescription.parse(answer).media[1].port != 0


def test_rollback_frees_the_withdrawn_offers_mids() -> None:
    neg = SessionNegotiator()
    neg.create_offer([], LOCAL)
    neg.rollback()
    _, result = neg.apply_offer(fixture("chromium_offer_audio_video.sdp"), [], local_for)
    assert set(result.published) == {"0", "1"}


def test_offer_with_no_supported_codec_is_refused() -> None:
    offer = fixture("chromium_offer_audio_video.sdp")
    desc = SessionDescription.parse(offer)
    for media in desc.media:
        for codec in media.codecs:
            codec.name = "AV1" if media.kind == "video" else "iLBC"
    with pytest.raises(ValueError, match="no codec zvonok supports"):
        SessionNegotiator().apply_offer(str(desc), [], local_for)


def _pt_table(*texts: str) -> dict[int, tuple[object, ...]]:
    """payload type -> codec across descriptions; fails on one type naming two codecs."""
    table: dict[int, tuple[object, ...]] = {}
    for text in texts:
        for media in SessionDescription.parse(text).media:
            for codec in media.codecs:
                key = ("rtx",) if codec.name.lower() == "rtx" else codec_key(codec)
                assert table.setdefault(codec.payload_type, key) == key, (
                    f"payload type {codec.payload_type} is both {table[codec.payload_type]} "
                    f"and {key}"
                )
    return table


def test_withdrawn_offer_leaves_no_payload_type_behind() -> None:
    """The aiortc case: our offer (VP8 forwarded at our PT) is withdrawn and the client's offer
    (opus at 96, VP8 at 97) answered; the answer and every later offer use the client's PTs."""
    neg = SessionNegotiator()
    ours = neg.create_offer([vp8_track()], LOCAL)
    withdrawn = _pt_table(ours)
    neg.rollback()
    client = fixture("aiortc_offer_audio_video.sdp")
    answer, _ = neg.apply_offer(client, [vp8_track()], local_for)
    later = neg.create_offer([vp8_track(), vp8_track("t2", 2222)], LOCAL)
    table = _pt_table(client, answer, later)
    assert table[96] == codec_key(RtpCodec(96, "opus", 48000, 2, {}, []))
    assert withdrawn[96] != table[96]  # the withdrawn offer had used 96 for something else
    vp8 = [
        c.payload_type
        for m in SessionDescription.parse(later).media
        for c in m.codecs
        if c.name == "VP8"
    ]
    assert vp8 and set(vp8) == {97}


def test_withdrawn_offer_frees_its_extension_ids_and_mids() -> None:
    neg = SessionNegotiator()
    before = neg._reservations()
    neg.create_offer([vp8_track(), vp8_track("t2", 2222)], LOCAL)
    neg.rollback()
    assert neg._reservations() == before


def test_refused_client_offer_reserves_nothing() -> None:
    neg = SessionNegotiator()
    neg.apply_answer(answer_to(neg.create_offer([], LOCAL)))
    before = neg._reservations()
    desc = SessionDescription.parse(fixture("chromium_offer_screenshare.sdp"))
    desc.media[-1].rtcp_mux = False  # refused at the last m-line, after the others reserved
    with pytest.raises(ValueError, match="rtcp-mux"):
        neg.apply_offer(str(desc), [], local_for)
    assert neg._reservations() == before
    assert neg.state == "stable"


def test_stopped_mline_keeps_transport_attributes_for_strict_parsers() -> None:
    """aiortc refuses any m-section without ICE credentials, setup or rtcp-mux (even port 0)."""
    neg = SessionNegotiator()
    neg.apply_answer(answer_to(neg.create_offer([vp8_track("a")], LOCAL)))
    stopped = SessionDescription.parse(neg.create_offer([], LOCAL)).media[2]
    assert stopped.port == 0 and stopped.direction == "inactive"
    assert (stopped.ice_ufrag, stopped.ice_pwd) == (LOCAL.ice_ufrag, LOCAL.ice_pwd)
    assert stopped.setup == "actpass" and stopped.rtcp_mux
    assert stopped.fingerprints == [LOCAL.fingerprint]


SENDING_SECTION = """m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=mid:2
a=ice-ufrag:srvufrag
a=ice-pwd:serverpasswordserverpassword
a=fingerprint:sha-256 {fingerprint}
a=setup:actpass
a=rtcp-mux
a=rtcp-rsize
a=sendonly
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:13 urn:3gpp:video-orientation
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=fmtp:96 max-fs=12288
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=msid:alice-1 t1
a=ssrc-group:FID 1111 1112
a=ssrc:1111 cname:alice-1
a=ssrc:1111 msid:alice-1 t1
a=ssrc:1112 cname:alice-1
a=ssrc:1112 msid:alice-1 t1
a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host
a=end-of-candidates
""".replace("\n", "\r\n").format(fingerprint=LOCAL.fingerprint[1])


def test_server_sdp_is_written_by_the_one_sdp_writer() -> None:
    """The server's offers and answers are ``_model`` values written by ``str()``: each is a
    fixed point of parse + write, a stopped m-line included, in the server's attribute order."""
    neg = SessionNegotiator()
    offer = neg.create_offer([vp8_track()], LOCAL)
    head = "v=0\r\no=- {} 1 IN IP4 0.0.0.0\r\ns=zvonok\r\nt=0 0\r\na=ice-lite\r\n"
    assert offer.startswith(head.format(SessionDescription.parse(offer).origin.session_id))
    assert "a=group:BUNDLE 0 1 2\r\na=msid-semantic: WMS *\r\nm=audio" in offer
    assert offer.endswith(SENDING_SECTION)
    neg.apply_answer(answer_to(offer, reject={"1"}))
    again = neg.create_offer([vp8_track()], LOCAL)
    stopped = next(m for m in SessionDescription.parse(again).media if m.port == 0)
    assert stopped.direction == "inactive" and not stopped.candidates
    answer, _ = SessionNegotiator().apply_offer(
        fixture("chromium_offer_audio_video.sdp"), [vp8_track()], local_for
    )
    for sdp in (offer, again, answer):
        assert str(SessionDescription.parse(sdp)) == sdp
