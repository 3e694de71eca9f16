"""Simulcast (RFC 8853/8851/8852) and transport-wide CC negotiation against real browser SDP.

The fixtures ``<browser>_offer_simulcast.sdp`` are Chromium's and Firefox ESR's offers for audio
plus a 3-layer video (rids q, h, f); ``<browser>_answer_simulcast_reoffer.sdp`` their answers to
zvonok's re-offer after zvonok answered that offer (tests/fixtures/sdp/README.md: both browsers
accepted zvonok's answer and re-offer and kept their three encodings).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zvonok.media.sdp.codecs import RECEIVE_ONLY_EXTENSIONS, TWCC_URI
from zvonok.media.sdp.description import MediaDescription, Rid, RtpCodec, SessionDescription
from zvonok.media.sdp.negotiation import (
    NOT_FORWARDED,
    LocalParameters,
    NegotiationResult,
    SendTrack,
    SessionNegotiator,
)
from zvonok.media.sdp.simulcast import (
    REPAIRED_RID_URI,
    RID_URI,
    parse_simulcast,
    receive_attributes,
    send_rids,
)

from ..sdp_answers import answer_to

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sdp"
BROWSERS = ["chromium", "firefox"]
LOCAL = LocalParameters(
    ice_ufrag="srvufrag",
    ice_pwd="serverpasswordserverpassword",
    fingerprint=("sha-256", ":".join(["AB"] * 32)),
    candidates=["candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"],
)
#: The publisher's ids of rid, repaired rid and transport-cc in each capture.
IDS = {"chromium": (10, 11, 3), "firefox": (9, 10, 7)}


def load(name: str) -> str:
    return (FIXTURES / f"{name}.sdp").read_bytes().decode()


def local_for(restart: bool) -> LocalParameters:
    return LOCAL


def answer(offer: str) -> tuple[SessionDescription, NegotiationResult, SessionNegotiator]:
    neg = SessionNegotiator()
    text, result = neg.apply_offer(offer, [], local_for)
    return SessionDescription.parse(text), result, neg


def video(desc: SessionDescription) -> MediaDescription:
    return next(m for m in desc.media if m.kind == "video")


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# ---------------------------------------------------------------------- the captures
def test_captured_offers() -> None:
    chrome = video(SessionDescription.parse(load("chromium_offer_simulcast")))
    assert chrome.direction == "sendonly"
    assert chrome.rids == [Rid("q", "send"), Rid("h", "send"), Rid("f", "send")]
    assert chrome.simulcast == "send q;h;f"
    assert chrome.ssrcs == {} and chrome.ssrc_groups == []  # Chrome names no SSRC per rid
    firefox = video(SessionDescription.parse(load("firefox_offer_simulcast")))
    assert firefox.rids == chrome.rids and firefox.simulcast == "send q;h;f"
    assert len(firefox.ssrcs) == 6 and len(firefox.ssrc_groups) == 3  # not tied to rids
    assert {(e.id, e.direction) for e in firefox.extensions if e.uri == RID_URI} == {
        (9, "sendonly")
    }


@pytest.mark.parametrize("browser", BROWSERS)
def test_simulcast_offer_answered(browser: str) -> None:
    offer = load(f"{browser}_offer_simulcast")
    desc, result, _ = answer(offer)
    audio, vid = desc.media
    assert vid.direction == "recvonly"
    assert vid.rids == [Rid("q", "recv"), Rid("h", "recv"), Rid("f", "recv")]
    assert vid.simulcast == "recv q;h;f"
    assert audio.rids == [] and audio.simulcast is None
    rid, rrid, twcc = IDS[browser]
    ext = {e.uri: (e.id, e.direction) for e in vid.extensions}
    flipped = "recvonly" if browser == "firefox" else None  # Firefox offers them /sendonly
    assert ext[RID_URI] == (rid, flipped) and ext[REPAIRED_RID_URI] == (rrid, flipped)
    assert ext[TWCC_URI] == (twcc, None)
    assert TWCC_URI in {e.uri for e in audio.extensions}
    assert all("transport-cc" in c.rtcp_fb for c in vid.codecs if c.name != "rtx")
    assert "transport-cc" in audio.codecs[0].rtcp_fb  # opus
    assert vid.ssrcs == {} and vid.msid is None  # we send nothing on it
    track = result.published[vid.mid or ""]
    assert track.rids == ("q", "h", "f")
    assert track.ssrc is None and track.rtx_ssrc is None  # learnt from the rid extension
    assert (track.extensions[RID_URI], track.extensions[REPAIRED_RID_URI]) == (rid, rrid)
    assert track.extensions[TWCC_URI] == twcc
    sound = result.published[audio.mid or ""]
    assert (
        sound.rids == () and sound.ssrc == SessionDescription.parse(offer).media[0].ssrc_of_media()
    )
    assert sound.extensions[TWCC_URI] == twcc


@pytest.mark.parametrize("browser", BROWSERS)
def test_same_offer_again_answers_the_same(browser: str) -> None:
    offer = load(f"{browser}_offer_simulcast")
    neg = SessionNegotiator()
    first, _ = neg.apply_offer(offer, [], local_for)
    second, result = neg.apply_offer(offer, [], local_for)
    version = re.compile(r"^o=- (\d+) \d+ ", re.M)
    assert version.sub("o=- \\1 V ", first) == version.sub("o=- \\1 V ", second)
    assert result.published["1"].rids == ("q", "h", "f")


def subscribed() -> SendTrack:
    """The track the capture's re-offer sends (capture.py ``subscribed_track``)."""
    vp8 = RtpCodec(96, "VP8", 90000, None, {}, [])
    return SendTrack("zvonok-bob-camera", "zvonok-bob", "video", [vp8], 2001, 2002, "zvonok-bob")


def reoffered(browser: str) -> SessionNegotiator:
    """zvonok after answering the browser's simulcast offer and re-offering (as in the capture)."""
    neg = SessionNegotiator()
    neg.apply_offer(load(f"{browser}_offer_simulcast"), [], local_for)
    neg.create_offer([subscribed()], LOCAL)
    return neg


@pytest.mark.parametrize("browser", BROWSERS)
def test_server_reoffer_keeps_simulcast(browser: str) -> None:
    """Our later offers must ask for the same rids again: a remote offer without simulcast makes
    libwebrtc disable every encoding but the first, for good. The browser's captured answer to
    our re-offer keeps all three, and as a subscriber of the track we send in it, it accepts
    transport-cc (extension and feedback)."""
    neg = SessionNegotiator()
    neg.apply_offer(load(f"{browser}_offer_simulcast"), [], local_for)
    offer = SessionDescription.parse(neg.create_offer([subscribed()], LOCAL))
    reoffer, sent = offer.media[1], offer.media[2]
    assert reoffer.direction == "recvonly" and reoffer.simulcast == "recv q;h;f"
    assert [r.direction for r in reoffer.rids] == ["recv"] * 3
    assert sent.direction == "sendonly" and sent.rids == [] and sent.simulcast is None
    assert TWCC_URI in {e.uri for e in sent.extensions}
    assert not RECEIVE_ONLY_EXTENSIONS & {e.uri for e in sent.extensions}
    reply = load(f"{browser}_answer_simulcast_reoffer")
    result = neg.apply_answer(reply)
    assert result.published["1"].rids == ("q", "h", "f")
    assert result.published["1"].ssrc is None
    assert {RID_URI, REPAIRED_RID_URI, TWCC_URI} <= set(result.published["1"].extensions)
    accepted = result.sending["zvonok-bob-camera"]
    assert accepted.extensions[TWCC_URI] == IDS[browser][2]
    assert "transport-cc" in accepted.codecs[0].rtcp_fb
    assert SessionDescription.parse(reply).media[2].direction == "recvonly"


def test_a_browser_shaped_answer_keeps_simulcast() -> None:
    """``sdp_answers.answer_to`` (used by the rooms tests) answers our receive-simulcast m-line
    the way the browsers did: ``a=rid:<id> send`` and ``a=simulcast:send``."""
    neg = SessionNegotiator()
    neg.apply_offer(load("chromium_offer_simulcast"), [], local_for)
    reply = answer_to(neg.create_offer([], LOCAL), publish={"0": 10})
    assert video(SessionDescription.parse(reply)).simulcast == "send q;h;f"
    assert neg.apply_answer(reply).published["1"].rids == ("q", "h", "f")


def test_answer_without_simulcast_ends_it() -> None:
    """A client answering our re-offer without a=simulcast sends one plain stream (its a=ssrc)."""
    neg = reoffered("firefox")
    reply = edit(load("firefox_answer_simulcast_reoffer"), "a=simulcast:send q;h;f\r\n", "")
    track = neg.apply_answer(reply).published["1"]
    sent = video(SessionDescription.parse(reply))
    assert (track.rids, track.ssrc, track.rtx_ssrc) == ((), sent.ssrc_of_media(), sent.rtx_ssrc())
    assert track.ssrc is not None


def test_answer_may_not_add_rids() -> None:
    """RFC 8853 §5.3: an answer names only rids of the offer; others are ignored."""
    neg = reoffered("chromium")
    reply = load("chromium_answer_simulcast_reoffer")
    reply = edit(reply, "a=rid:f send\r\n", "a=rid:f send\r\na=rid:x send\r\n")
    reply = edit(reply, "a=simulcast:send q;h;f", "a=simulcast:send x;q;h;f")
    assert neg.apply_answer(reply).published["1"].rids == ("q", "h", "f")


def test_client_changing_its_rids_is_followed() -> None:
    offer = load("chromium_offer_simulcast")
    neg = SessionNegotiator()
    neg.apply_offer(offer, [], local_for)
    changed = edit(offer, "a=rid:q send\r\n", "a=rid:lo send\r\n")
    changed = edit(changed, "a=simulcast:send q;h;f", "a=simulcast:send lo;h")
    text, result = neg.apply_offer(changed, [], local_for)
    assert result.published["1"].rids == ("lo", "h")
    assert video(SessionDescription.parse(text)).simulcast == "recv lo;h"


# ---------------------------------------------------------------------- odd and broken offers
SIM = "a=simulcast:send q;h;f"


@pytest.mark.parametrize(
    ("old", "new", "rids"),
    [
        # a=simulcast names a rid with no a=rid line: that rid is dropped (RFC 8853 §5.1).
        ("a=rid:h send\r\n", "", ("q", "f")),
        # More than three layers: the first three are kept.
        (SIM, "a=simulcast:send q;h;f;x\r\na=rid:x send", ("q", "h", "f")),
        # The first alternative of each stream.
        (SIM, "a=simulcast:send q,h;f", ("q", "f")),
        # Restrictions are accepted (and not echoed).
        ("a=rid:h send", "a=rid:h send max-width=640;max-fps=15", ("q", "h", "f")),
        # A rid too long for a one-byte header element (and for libwebrtc) is dropped.
        ("a=rid:f send", "a=rid:abcdefghijklmnopq send", ("q", "h")),
        # The client wants to *receive* simulcast: we do not send it.
        (SIM, "a=simulcast:recv q;h;f", ()),
        # Both directions: only what the client sends counts.
        (SIM, "a=simulcast:recv r send h;f", ("h", "f")),
        # Without the rid header extension the streams cannot be told apart.
        ("a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n", "", ()),
        # Duplicates count once.
        (SIM, "a=simulcast:send q;q;h", ("q", "h")),
    ],
)
def test_odd_simulcast_offers(old: str, new: str, rids: tuple[str, ...]) -> None:
    offer = edit(load("chromium_offer_simulcast"), old, new)
    desc, result, _ = answer(offer)
    vid = video(desc)
    assert tuple(r.id for r in vid.rids) == rids
    assert vid.simulcast == ("recv " + ";".join(rids) if rids else None)
    if rids:
        assert result.published["1"].rids == rids
    else:
        # Chrome signals no a=ssrc for a rid m-line: nothing we could receive is published.
        assert "1" not in result.published


@pytest.mark.parametrize(
    ("streams", "answered"),
    [("q;~h;f", "recv q;~h;f"), ("~q;~h;~f", "recv ~q;~h;~f"), ("~q,h;f", "recv ~q;f")],
)
def test_paused_streams_are_kept_and_answered_paused(streams: str, answered: str) -> None:
    """A paused stream is a layer the page turned off (Chromium writes ``~`` for an encoding with
    ``active: false``): it stays a layer, answered paused, so the browser neither drops it for
    good (left out) nor turns it back on (answered unpaused)."""
    offer = edit(load("chromium_offer_simulcast"), SIM, f"a=simulcast:send {streams}")
    desc, result, neg = answer(offer)
    assert video(desc).simulcast == answered
    rids = tuple(r.id for r in video(desc).rids)
    assert result.published["1"].rids == rids
    assert neg.paused_layers("1") == {r.lstrip("~") for r in answered[5:].split(";") if "~" in r}


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("a=simulcast:send q;h!;f", "bad a=simulcast rid 'h!'"),
        ("a=simulcast:send", "bad a=simulcast value 'send'"),
        ("a=simulcast:sideways q", "bad a=simulcast direction 'sideways'"),
        ("a=simulcast:send q send h", "bad a=simulcast direction 'send'"),
        ("a=simulcast:send q;;h", "bad a=simulcast rid ''"),
        ("a=simulcast:send ~", "bad a=simulcast rid '~'"),
    ],
)
def test_malformed_simulcast_refuses_the_offer(new: str, message: str) -> None:
    neg = SessionNegotiator()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        neg.apply_offer(edit(load("chromium_offer_simulcast"), SIM, new), [], local_for)
    assert neg.slots == [] and neg.state == "stable"


def test_bad_rid_syntax_is_a_parse_error() -> None:
    """The ``_invalid`` twin (test_sdp.py checks it is one line off the capture)."""
    with pytest.raises(ValueError, match=r"^line 164: bad a=rid value 'h! send'$"):
        answer(load("chromium_offer_simulcast_invalid"))


# ---------------------------------------------------------------------- the grammar
def test_parse_simulcast() -> None:
    assert parse_simulcast("send q;h,~h2;f recv r") == {
        "send": [[("q", False)], [("h", False), ("h2", True)], [("f", False)]],
        "recv": [[("r", False)]],
    }
    assert parse_simulcast("recv 1_a-B") == {"recv": [[("1_a-B", False)]]}
    for bad in ["", "send", "send a b", "send a recv", "send a,", "send a;", "send ~~a", "send é"]:
        with pytest.raises(ValueError):
            parse_simulcast(bad)


def test_receive_attributes() -> None:
    assert receive_attributes(()) == ([], None)
    assert receive_attributes(("a", "b")) == ([Rid("a", "recv"), Rid("b", "recv")], "recv a;b")


def test_send_rids_on_a_plain_m_line() -> None:
    media = video(SessionDescription.parse(load("chromium_offer_audio_video")))
    assert send_rids(media) == ()


# ---------------------------------------------------------------------- transport-cc downstream
def vp8_track(track_id: str = "t1", ssrc: int = 1111) -> SendTrack:
    codec = SessionDescription.parse(load("chromium_offer_simulcast")).media[1].codecs[0]
    return SendTrack(track_id, "alice", "video", [codec], ssrc, ssrc + 1, "alice")


def test_server_offers_ask_subscribers_for_transport_feedback() -> None:
    """Our offers carry the transport-cc extension and rtcp-fb on every m-line (the client's and
    ours), so browsers number what they send us and send feedback on what we send them; the
    rid extensions only where the client may send."""
    neg = SessionNegotiator()
    offer = SessionDescription.parse(neg.create_offer([vp8_track()], LOCAL))
    audio, recv, send = offer.media
    for media in offer.media:
        assert TWCC_URI in {e.uri for e in media.extensions}
        assert all("transport-cc" in c.rtcp_fb for c in media.codecs if c.name != "rtx")
    assert {RID_URI, REPAIRED_RID_URI} <= {e.uri for e in recv.extensions}
    assert not RECEIVE_ONLY_EXTENSIONS & {e.uri for e in send.extensions}
    assert not RECEIVE_ONLY_EXTENSIONS & {e.uri for e in audio.extensions}
    result = neg.apply_answer(answer_to(str(offer)))
    assert result.sending["t1"].extensions[TWCC_URI] == 3
    assert "transport-cc" in result.sending["t1"].codecs[0].rtcp_fb


@pytest.mark.parametrize("browser", BROWSERS)
def test_answer_for_a_receiving_client_keeps_transport_cc(browser: str) -> None:
    """A client offering to receive (recvonly) gets our track with transport-cc, and no rid
    extensions (we never write them; the client would be told we do)."""
    neg = SessionNegotiator()
    text, result = neg.apply_offer(load(f"{browser}_offer_recvonly"), [vp8_track()], local_for)
    vid = video(SessionDescription.parse(text))
    assert vid.direction == "sendonly" and vid.simulcast is None
    uris = {e.uri for e in vid.extensions}
    assert TWCC_URI in uris and not RECEIVE_ONLY_EXTENSIONS & uris
    assert all("transport-cc" in c.rtcp_fb for c in vid.codecs if c.name != "rtx")
    assert TWCC_URI in result.sending["t1"].extensions


def test_stream_ids_are_never_forwarded() -> None:
    assert {RID_URI, REPAIRED_RID_URI, "urn:ietf:params:rtp-hdrext:sdes:mid"} <= NOT_FORWARDED
    assert TWCC_URI not in NOT_FORWARDED


def test_a_sendrecv_m_line_forwards_no_stream_ids_to_its_receiver() -> None:
    """Chromium's addTrack offers sendrecv; the track we send on that m-line is told no rid
    extension ids (its consumer must not write the publisher's rids)."""
    offer = load("chromium_offer_simulcast")
    at = offer.index("a=sendonly", offer.index("m=video"))
    offer = offer[:at] + "a=sendrecv" + offer[at + len("a=sendonly") :]
    text, result = SessionNegotiator().apply_offer(offer, [vp8_track()], local_for)
    vid = video(SessionDescription.parse(text))
    assert vid.direction == "sendrecv" and vid.simulcast == "recv q;h;f"
    assert RID_URI in {e.uri for e in vid.extensions}
    assert result.published["1"].rids == ("q", "h", "f")
    sent = result.sending["t1"].extensions
    assert TWCC_URI in sent and not RECEIVE_ONLY_EXTENSIONS & set(sent)


# ------------------------------------------------------------- layers turned off (dynacast)
def paused_round(browser: str) -> tuple[SessionNegotiator, str]:
    """The capture's sequence: offer, answer, our re-offer and its answer; then the page turned
    "f" off and re-offered (``<browser>_offer_simulcast_paused.sdp``)."""
    neg = reoffered(browser)
    neg.apply_answer(load(f"{browser}_answer_simulcast_reoffer"))
    return neg, load(f"{browser}_offer_simulcast_paused")


def test_chromium_marks_a_layer_it_turned_off() -> None:
    neg, offer = paused_round("chromium")
    assert video(SessionDescription.parse(offer)).simulcast == "send q;h;~f"
    text, result = neg.apply_offer(offer, [subscribed()], local_for)
    assert video(SessionDescription.parse(text)).simulcast == "recv q;h;~f"  # its own marks
    assert result.published["1"].rids == ("q", "h", "f")
    assert neg.paused_layers("1") == {"f"}
    # Without a wish our offers mark nothing paused: stale marks would undo what the page did.
    assert video(SessionDescription.parse(neg.create_offer([subscribed()], LOCAL))).simulcast == (
        "recv q;h;f"
    )


@pytest.mark.parametrize("browser", BROWSERS)
def test_the_servers_wish_is_what_we_write(browser: str) -> None:
    """``pause_layers``: the layers dynacast wants off are marked paused in our answers and
    offers whatever the client wrote (Firefox writes no marks at all); ``None`` lifts it."""
    neg, offer = paused_round(browser)
    assert neg.pause_layers("1", frozenset({"f", "zz"}))
    assert not neg.pause_layers("1", frozenset({"f", "zz"}))
    text, _ = neg.apply_offer(offer, [subscribed()], local_for)
    assert video(SessionDescription.parse(text)).simulcast == "recv q;h;~f"
    ours = neg.create_offer([subscribed()], LOCAL)
    assert video(SessionDescription.parse(ours)).simulcast == "recv q;h;~f"
    neg.rollback()
    assert neg.pause_layers("1", frozenset())
    ours = neg.create_offer([subscribed()], LOCAL)
    assert video(SessionDescription.parse(ours)).simulcast == "recv q;h;f"
    neg.rollback()
    assert neg.pause_layers("1", None) and not neg.pause_layers("1", None)
    assert not neg.pause_layers("1", None)


def test_a_wish_ends_with_the_simulcast_m_line() -> None:
    neg = SessionNegotiator()
    offer = load("chromium_offer_simulcast")
    neg.apply_offer(offer, [], local_for)
    neg.pause_layers("1", frozenset({"f"}))
    neg.apply_offer(edit(offer, SIM + "\r\n", ""), [], local_for)  # no simulcast any more
    text, _ = neg.apply_offer(offer, [], local_for)  # and back: the old wish is gone
    assert video(SessionDescription.parse(text)).simulcast == "recv q;h;f"
