"""SessionDescription against real browser SDP (tests/fixtures/sdp, see its README)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from zvonok.media.sdp.description import (
    HeaderExtension,
    MediaDescription,
    Rid,
    RtpCodec,
    SessionDescription,
    SsrcGroup,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sdp"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.sdp") if not p.stem.endswith("_invalid"))
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
ORIENTATION = "urn:3gpp:video-orientation"


SIMULCAST_CASES = ("offer_simulcast", "answer_simulcast_reoffer", "offer_simulcast_paused")


def load(name: str) -> str:
    return (FIXTURES / f"{name}.sdp").read_bytes().decode()


def parse(name: str) -> SessionDescription:
    return SessionDescription.parse(load(name))


def sections(text: str) -> list[Counter[str]]:
    out: list[Counter[str]] = [Counter()]
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            out.append(Counter())
        if line:
            out[-1][line] += 1
    return out


def test_every_case_was_captured() -> None:
    cases = ["audio_video", "audio_only", "recvonly", "screenshare"]
    wanted = {f"{b}_offer_{c}" for b in ("chromium", "firefox") for c in cases}
    wanted |= {"chromium_answer_to_server_offer", "firefox_answer_to_server_offer"}
    wanted |= {"aiortc_offer_audio_video", "server_offer_example"}
    wanted |= {f"{b}_{c}" for b in ("chromium", "firefox") for c in SIMULCAST_CASES}
    assert wanted <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name: str) -> None:
    text = load(name)
    desc = SessionDescription.parse(text)
    built = str(desc)
    assert SessionDescription.parse(built) == desc
    assert sections(built) == sections(text)  # every line kept, per section
    assert built.endswith("\r\n") and "\n" not in built.replace("\r\n", "")
    assert str(SessionDescription.parse(built)) == built


@pytest.mark.parametrize("name", NAMES)
def test_bare_newlines_accepted(name: str) -> None:
    text = load(name)
    assert SessionDescription.parse(text.replace("\r\n", "\n")) == SessionDescription.parse(text)


def test_chromium_offer_audio_video() -> None:
    desc = parse("chromium_offer_audio_video")
    assert desc.origin.session_id == "7922071052305032715"
    assert desc.origin.session_version == 2
    assert desc.bundle == [["0", "1"]]
    assert desc.extmap_allow_mixed and not desc.ice_lite
    assert desc.msid_semantic == " WMS 241d70c0-5c08-4108-b101-f20f1cd25fe9"
    audio, video = desc.media
    assert (audio.kind, audio.mid, audio.direction, audio.port) == ("audio", "0", "sendrecv", 60498)
    assert audio.protocol == "UDP/TLS/RTP/SAVPF"
    assert audio.connection == ("IN", "IP4", "127.0.0.1")
    assert (audio.ice_ufrag, audio.ice_pwd) == ("w4uw", "LvH6uJaMkXvoaY5OTjBSBuJX")
    assert audio.ice_options == ["trickle"] and audio.setup == "actpass"
    assert audio.fingerprints == [
        (
            "sha-256",
            "7F:DF:29:03:1F:58:5F:C3:FD:17:A9:2E:08:E1:14:BE:"
            "46:07:A5:45:40:35:B5:AB:E2:8A:82:E0:50:BB:8C:BA",
        )
    ]
    assert audio.rtcp_mux and audio.rtcp_rsize
    assert [(c.payload_type, c.name) for c in audio.codecs] == [
        (111, "opus"),
        (63, "red"),
        (9, "G722"),
        (0, "PCMU"),
        (8, "PCMA"),
        (13, "CN"),
        (110, "telephone-event"),
        (126, "telephone-event"),
    ]
    opus = audio.codecs[0]
    assert (opus.clock_rate, opus.channels, opus.rtcp_fb) == (48000, 2, ["transport-cc"])
    assert opus.fmtp == {"minptime": "10", "useinbandfec": "1"}
    assert audio.codec_by_pt(63) == RtpCodec(63, "red", 48000, 2, {"111/111": ""}, [])
    assert [(e.id, e.uri) for e in audio.extensions][0] == (1, AUDIO_LEVEL)
    assert audio.ssrcs == {
        2003411531: {
            "cname": "gSeknSBnj2SgxVQE",
            "msid": "241d70c0-5c08-4108-b101-f20f1cd25fe9 cbea2ef9-f8ca-4b2a-974e-ab384e7b5ef7",
        }
    }
    assert audio.msid == (
        "241d70c0-5c08-4108-b101-f20f1cd25fe9",
        "cbea2ef9-f8ca-4b2a-974e-ab384e7b5ef7",
    )
    assert audio.ssrc_of_media() == 2003411531 and audio.rtx_ssrc() is None
    assert ("rtcp", "9 IN IP4 0.0.0.0") in audio.other
    assert [str(c) for c in audio.candidates] == [
        "candidate:1528486421 1 udp 2122260223 127.0.0.1 60498 typ host"
        " generation 0 network-id 1 network-cost 50",
        "candidate:2779778689 1 tcp 1518280447 127.0.0.1 9 typ host"
        " tcptype active generation 0 network-id 1 network-cost 50",
    ]
    assert not audio.end_of_candidates  # Chrome never writes it
    assert video.mid == "1"
    assert video.ssrc_groups == [SsrcGroup("FID", [819145333, 3273386877])]
    assert (video.ssrc_of_media(), video.rtx_ssrc()) == (819145333, 3273386877)
    assert video.rtx_apt()[97] == 96 and video.rtx_apt()[103] == 102
    assert HeaderExtension(14, TOFFSET) in video.extensions
    assert HeaderExtension(13, ORIENTATION) in video.extensions
    h264 = video.codec_by_pt(102)
    assert h264 is not None and h264.fmtp["profile-level-id"] == "42001f"
    assert h264.rtcp_fb == ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]


def test_firefox_offer_audio_video() -> None:
    desc = parse("firefox_offer_audio_video")
    assert desc.origin.username == "mozilla...THIS_IS_SDPARTA-99.0"
    assert desc.msid_semantic == "WMS *"
    assert desc.ice_options == ["trickle"]
    assert desc.fingerprints[0][1].startswith("56:D1:F2:66")
    assert ("sendrecv", None) in desc.other  # Firefox writes a session-level direction
    audio, video = desc.media
    assert audio.fingerprints == [] and audio.setup == "actpass"
    assert audio.ice_ufrag == "d2733e22"
    assert [(c.payload_type, c.name, c.channels) for c in audio.codecs] == [
        (109, "opus", 2),
        (9, "G722", 1),
        (0, "PCMU", None),
        (8, "PCMA", None),
        (101, "telephone-event", None),
    ]
    assert audio.codec_by_pt(101) == RtpCodec(101, "telephone-event", 8000, None, {"0-15": ""})
    assert HeaderExtension(2, "urn:ietf:params:rtp-hdrext:csrc-audio-level", "recvonly") in (
        audio.extensions
    )
    assert audio.end_of_candidates and len(audio.candidates) == 8
    ipv6 = audio.candidates[1]
    assert (ipv6.host, ipv6.port, ipv6.transport, ipv6.component) == ("::1", 58567, "UDP", 1)
    assert [c.component for c in audio.candidates].count(2) == 4  # RTCP candidates too
    assert [(c.payload_type, c.name) for c in video.codecs][:4] == [
        (120, "VP8"),
        (124, "rtx"),
        (121, "VP9"),
        (125, "rtx"),
    ]
    assert video.codec_by_pt(120) is not None
    assert video.rtx_apt() == {124: 120, 125: 121, 100: 99, 119: 122}
    assert (video.ssrc_of_media(), video.rtx_ssrc()) == (279798526, 525659534)
    assert video.extensions[0] == HeaderExtension(3, MID)


def test_firefox_session_values_are_inherited() -> None:
    desc = parse("firefox_offer_audio_video").with_session_defaults()
    for media in desc.media:
        assert media.fingerprints == parse("firefox_offer_audio_video").fingerprints
    assert parse("firefox_offer_audio_video").media[0].fingerprints == []


def test_recvonly_offers() -> None:
    chrome = parse("chromium_offer_recvonly")
    assert [m.direction for m in chrome.media] == ["recvonly", "recvonly"]
    assert [m.ssrcs for m in chrome.media] == [{}, {}]
    assert chrome.media[0].ssrc_of_media() is None and chrome.media[1].msid is None
    flexfec = chrome.media[1].codec_by_pt(49)
    assert flexfec is not None and flexfec.name == "flexfec-03"
    assert flexfec.fmtp == {"repair-window": "10000000"}
    firefox = parse("firefox_offer_recvonly")
    assert [m.direction for m in firefox.media] == ["recvonly", "recvonly"]
    assert firefox.media[0].ssrcs == {
        1725071489: {"cname": "{722085ec-c4b3-46fb-b39c-45a2c1a093d1}"}
    }


def test_screenshare_reoffers() -> None:
    chrome = parse("chromium_offer_screenshare")
    assert chrome.origin.session_version == 3
    assert chrome.bundle == [["0", "1", "2"]]
    third = chrome.media[2]
    assert (third.kind, third.mid, third.port, third.direction) == ("video", "2", 9, "sendrecv")
    assert third.candidates == []
    assert (third.ssrc_of_media(), third.rtx_ssrc()) == (3430766979, 3478088613)
    firefox = parse("firefox_offer_screenshare")
    assert firefox.origin.session_version == 1
    assert [m.port for m in firefox.media] == [54946, 9, 0]
    assert ("bundle-only", None) in firefox.media[2].other
    assert firefox.media[2].msid == (
        "{46079a06-005b-407b-b62e-0a5d49902d0a}",
        "{9e53b365-bf25-4d55-8151-53dc442d58c1}",
    )


def test_server_offer_example() -> None:
    desc = parse("server_offer_example")
    assert desc.ice_lite and desc.bundle == [["0", "1", "2"]]
    assert [m.direction for m in desc.media] == ["recvonly", "recvonly", "sendonly"]
    send = desc.media[2]
    assert send.msid == ("zvonok-alice", "zvonok-alice-camera")
    assert (send.ssrc_of_media(), send.rtx_ssrc()) == (1001, 1002)
    assert send.rtx_apt() == {97: 96}
    assert [str(c) for c in send.candidates] == [
        "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"
    ]
    assert [c.payload_type for c in desc.media[1].codecs] == list(range(96, 110))


def test_chromium_answer_to_server_offer() -> None:
    desc = parse("chromium_answer_to_server_offer")
    assert not desc.ice_lite
    assert [m.direction for m in desc.media] == ["sendonly", "sendonly", "recvonly"]
    assert [m.setup for m in desc.media] == ["active"] * 3
    audio, video, recv = desc.media
    assert [c.payload_type for c in audio.codecs] == [111, 9, 0, 8]
    assert [e.id for e in audio.extensions] == [1, 2, 4]
    # Chrome 156 keeps our payload types and ids; it drops only H.264 640c1f (108/109).
    assert [c.payload_type for c in video.codecs] == list(range(96, 108))
    assert [(e.id, e.uri) for e in video.extensions] == [
        (14, TOFFSET),
        (2, ABS_SEND_TIME),
        (13, ORIENTATION),
        (4, MID),
    ]
    assert (video.ssrc_of_media(), video.rtx_ssrc()) == (219705090, 2138847974)
    assert recv.ssrcs == {} and [c.payload_type for c in recv.codecs] == [96, 97]


def test_firefox_answer_to_server_offer() -> None:
    desc = parse("firefox_answer_to_server_offer")
    assert [m.direction for m in desc.media] == ["sendonly", "sendonly", "recvonly"]
    audio, video, recv = desc.media
    assert [e.uri for e in audio.extensions] == [AUDIO_LEVEL, MID]
    assert [c.payload_type for c in video.codecs] == [96, 97, 98, 99]  # no H.264 here
    assert (video.ssrc_of_media(), video.rtx_ssrc()) == (4032669257, 3335160319)
    assert recv.ssrc_of_media() == 1933323799  # Firefox names an SSRC even when receiving
    assert desc.with_session_defaults().media[2].fingerprints == desc.fingerprints


def test_aiortc_offer() -> None:
    desc = parse("aiortc_offer_audio_video")
    audio, video = desc.media
    assert [f[0] for f in audio.fingerprints] == ["sha-256", "sha-384", "sha-512"]
    assert [(c.payload_type, c.name) for c in audio.codecs][0] == (96, "opus")
    assert [e.uri for e in audio.extensions] == [MID, AUDIO_LEVEL]
    assert audio.candidates[0].host == "127.0.0.1" and audio.end_of_candidates
    assert (video.ssrc_of_media(), video.rtx_ssrc()) == (1897464124, 750578895)


INVALID = {
    "chromium_offer_audio_video": (
        "line 8: bad m= line 'm=audio x UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126'"
    ),
    "chromium_offer_audio_only": "line 11: candidate port 99999 not in 0..65535",
    "chromium_offer_recvonly": "line 64: bad a=rtpmap value '96 VP8'",
    "chromium_offer_screenshare": "line 161: bad a=ssrc-group value 'FID 2515388843 abc'",
    "chromium_answer_to_server_offer": (
        "line 15: bad a=fingerprint value 'sha-256 D6;5E:24:89:7E:6F:AE:FF:A1:07:D3:04:25:C2"
        ":D0:B9:D9:BE:29:30:3C:97:68:...'"
    ),
    "chromium_offer_simulcast": "line 164: bad a=rid value 'h! send'",
    "firefox_offer_audio_video": "line 60: extmap id '300' not in 1..255",
    "firefox_offer_audio_only": "line 12: candidate has 'type' where 'typ' belongs",
    "firefox_offer_recvonly": "line 43: bad a=setup value 'sideways'",
    "firefox_offer_screenshare": (
        "line 87: a=rtpmap for payload type 55, which the m= line does not list"
    ),
    "firefox_answer_to_server_offer": "line 12: candidate component 0 not in 1..256",
    "aiortc_offer_audio_video": "line 1: SDP must start with 'v=0', not 'v=1'",
    "server_offer_example": "line 11: bad a=ice-ufrag value 'zv:nk'",
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_twin(name: str) -> None:
    broken = load(f"{name}_invalid").splitlines()
    good = load(name).splitlines()
    assert sum(a != b for a, b in zip(broken, good, strict=True)) == 1
    with pytest.raises(ValueError, match=f"^{re.escape(INVALID[name])}$"):
        SessionDescription.parse(load(f"{name}_invalid"))


MINIMAL = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty SDP"),
        ("\r\n\r\n", "empty SDP"),
        ("v=0\r\ns=-\r\n", "line 2: SDP has no o= line"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n", "line 2: SDP has no s= line"),
        ("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n", "line 2: bad o= line 'o=- x 1 IN IP4 1.2.3.4'"),
        (MINIMAL + "x=1\r\n", "line 5: unknown line type 'x='"),
        (MINIMAL + "v=0\r\n", "line 5: duplicate v= line"),
        (MINIMAL + "s=again\r\n", "line 5: duplicate s= line"),
        (MINIMAL + "hello\r\n", "line 5: not a <type>=<value> line: 'hello'"),
        (MINIMAL + "c=IN IP4\r\n", "line 5: bad c= line 'c=IN IP4'"),
        (MINIMAL + "a=\r\n", "line 5: bad attribute name ''"),
        (MINIMAL + "m=audio 9 RTP/AVP\r\n", "line 5: bad m= line 'm=audio 9 RTP/AVP'"),
        (MINIMAL + "m=audio 70000 RTP/AVP 0\r\n", "line 5: bad m= line 'm=audio 70000 RTP/AVP 0'"),
        (
            MINIMAL + "m=audio 9 RTP/AVP 0 x\r\n",
            "line 5: bad m= line 'm=audio 9 RTP/AVP 0 x': payload types are 0..127",
        ),
        (MINIMAL + "m=video 9 RTP/AVP 96\r\n", "line 5: payload type 96 has no a=rtpmap"),
        (MINIMAL + AUDIO + "a=mid:0\r\na=mid:1\r\n", "line 8: duplicate a=mid"),
        (MINIMAL + AUDIO + "a=sendonly\r\na=recvonly\r\n", "line 8: more than one direction"),
        (MINIMAL + AUDIO + "a=rtpmap:111 opus/48000\r\n", "line 7: duplicate a=rtpmap for"),
        (MINIMAL + AUDIO + "a=fmtp:111 a=1\r\na=fmtp:111 b=2\r\n", "line 8: duplicate a=fmtp"),
        (MINIMAL + AUDIO + "a=rtpmap:111 opus/0\r\n", "line 7: duplicate a=rtpmap"),
        (MINIMAL + AUDIO + "a=ssrc:4294967296 cname:x\r\n", "line 7: ssrc '4294967296' not in"),
        (MINIMAL + AUDIO + "a=extmap:1 a\r\na=extmap:1 b\r\n", "line 8: duplicate extmap id 1"),
        (MINIMAL + AUDIO + "a=extmap:1/up x\r\n", "line 7: bad extmap direction 'up'"),
        (MINIMAL + AUDIO + "a=msid:\r\n", "line 7: bad a=msid value ''"),
        (MINIMAL + AUDIO + "a=rid:h sideways\r\n", "line 7: bad a=rid value 'h sideways'"),
        (MINIMAL + AUDIO + "a=candidate\r\n", "line 7: a=candidate needs a value"),
        (MINIMAL + AUDIO + "t=0 0\r\n", "line 7: t= line inside a media section"),
        (MINIMAL + "a=ice-ufrag:a\r\na=ice-ufrag:b\r\n", "line 6: duplicate a=ice-ufrag"),
        (MINIMAL + "a=group:\r\n", "line 5: bad a=group value ''"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        SessionDescription.parse(text)


def test_clock_rate_zero_is_refused() -> None:
    text = MINIMAL + "m=audio 9 RTP/AVP 96\r\na=rtpmap:96 opus/0\r\n"
    with pytest.raises(ValueError, match=r"^line 6: clock rate '0' not in 1\.\.4294967295$"):
        SessionDescription.parse(text)


def test_size_and_media_caps() -> None:
    with pytest.raises(ValueError, match="^SDP longer than 131072 characters$"):
        SessionDescription.parse(MINIMAL + "a=x:" + "y" * 131072 + "\r\n")
    many = MINIMAL + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" * 257
    with pytest.raises(ValueError, match="^line 261: more than 256 m= lines$"):
        SessionDescription.parse(many)


def test_static_payload_types_need_no_rtpmap() -> None:
    desc = SessionDescription.parse(MINIMAL + "m=audio 9 RTP/AVP 0 8\r\n")
    assert [(c.name, c.clock_rate) for c in desc.media[0].codecs] == [
        ("PCMU", 8000),
        ("PCMA", 8000),
    ]
    rejected = SessionDescription.parse(MINIMAL + "m=video 0 RTP/AVP 96\r\n")
    assert rejected.media[0].codecs == [] and rejected.media[0].formats == ["96"]


SIMULCAST = MINIMAL + (
    "a=group:LS 0 1\r\n"
    "b=AS:1000\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "b=TIAS:500000\r\n"
    "a=mid:0\r\n"
    "a=extmap:9/sendonly urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "a=rtcp-fb:* nack\r\n"
    "a=rid:h send\r\n"
    "a=rid:l send pt=96;max-width=320\r\n"
    "a=simulcast:send h;l\r\n"
    "a=msid:- track\r\n"
    "a=msid:second track\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "a=mid:1\r\n"
    "a=sctp-port:5000\r\n"
    "a=max-message-size:262144\r\n"
)


def test_simulcast_datachannel_and_extra_lines() -> None:
    desc = SessionDescription.parse(SIMULCAST)
    assert ("group", "LS 0 1") in desc.other and desc.bundle == []
    assert desc.extra_lines == [("b", "AS:1000")]
    video, data = desc.media
    assert video.extra_lines == [("b", "TIAS:500000")]
    assert video.rids == [Rid("h", "send"), Rid("l", "send", "pt=96;max-width=320")]
    assert video.simulcast == "send h;l"
    assert video.extensions == [
        HeaderExtension(9, "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "sendonly")
    ]
    assert video.msid == ("-", "track") and ("msid", "second track") in video.other
    assert ("rtcp-fb", "* nack") in video.other
    assert (data.sctp_port, data.max_message_size, data.codecs) == (5000, 262144, [])
    assert desc.media_by_mid("1") is data and desc.media_by_mid("9") is None
    assert sections(str(desc)) == sections(SIMULCAST)


def test_fmtp_text_follows_changes() -> None:
    desc = SessionDescription.parse(MINIMAL + AUDIO + "a=fmtp:111 minptime=10; useinbandfec=1\r\n")
    opus = desc.media[0].codecs[0]
    assert opus.fmtp_text() == "minptime=10; useinbandfec=1"  # as written
    opus.fmtp["stereo"] = "1"
    assert opus.fmtp_text() == "minptime=10;useinbandfec=1;stereo=1"


def test_build_from_values() -> None:
    media = MediaDescription("audio", 9, "UDP/TLS/RTP/SAVPF", ["111"], mid="a", rtcp_mux=True)
    media.codecs.append(RtpCodec(111, "opus", 48000, 2, {"minptime": "10"}))
    media.ssrcs[5] = {"cname": "c"}
    desc = SessionDescription(session_name="zvonok", bundle=[["a"]], ice_lite=True, media=[media])
    assert str(desc) == (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=zvonok\r\nt=0 0\r\n"
        "a=ice-lite\r\na=group:BUNDLE a\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\na=rtcp-mux\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10\r\na=ssrc:5 cname:c\r\n"
    )
    assert SessionDescription.parse(str(desc)) == desc
    assert str(media) == str(desc).split("m=", 1)[1].join(["m=", ""])


def test_empty_bundle_group_round_trips() -> None:
    """``a=group:BUNDLE`` with no mids (every m-line rejected) is written back without a stray
    space; found by the fresh-seed fuzz run (corpus ``1967984228-crash-fe88…``)."""
    desc = SessionDescription.parse(MINIMAL + "a=group:BUNDLE\r\n" + AUDIO)
    assert desc.bundle == [[]]
    assert "a=group:BUNDLE\r\n" in str(desc)
    assert SessionDescription.parse(str(desc)) == desc


def test_out_of_order_typed_lines_are_kept_in_rfc_order() -> None:
    """``p=`` before ``e=`` (RFC 4566 §5 wants e, p) is accepted, stored and written in RFC order,
    so the text parses back equal; found by a fuzz campaign."""
    text = MINIMAL.replace("t=0 0\r\n", "p=+1 555\r\ne=a@b.example\r\nt=0 0\r\n") + AUDIO
    desc = SessionDescription.parse(text)
    assert desc.extra_lines[:2] == [("e", "a@b.example"), ("p", "+1 555")]
    assert SessionDescription.parse(str(desc)) == desc


def test_ssrc_of_media_skips_fid_secondary_listed_first() -> None:
    text = MINIMAL + AUDIO + "a=ssrc:2 cname:x\r\na=ssrc:1 cname:x\r\na=ssrc-group:FID 1 2\r\n"
    media = SessionDescription.parse(text).media[0]
    assert (media.ssrc_of_media(), media.rtx_ssrc()) == (1, 2)
