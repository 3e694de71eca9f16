"""The supported codec table, codec_key matching across browsers, and the offer filter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zvonok.media.sdp.codecs import (
    SUPPORTED_EXTENSIONS,
    codec_key,
    filter_offer_codecs,
    h264_profile,
    is_supported,
    match_codec,
    supported_codecs,
)
from zvonok.media.sdp.description import MediaDescription, RtpCodec, SessionDescription

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sdp"
VIDEO_FB = ["nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"]
TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


def media(name: str, index: int) -> MediaDescription:
    text = (FIXTURES / f"{name}.sdp").read_bytes().decode()
    return SessionDescription.parse(text).media[index]


def h264(plid: str, mode: str = "1", pt: int = 102) -> RtpCodec:
    fmtp = {"packetization-mode": mode, "profile-level-id": plid}
    return RtpCodec(pt, "H264", 90000, None, fmtp)


def test_table() -> None:
    audio = supported_codecs("audio")
    assert [(c.payload_type, c.name, c.clock_rate, c.channels) for c in audio] == [
        (111, "opus", 48000, 2),
        (9, "G722", 8000, None),
        (0, "PCMU", 8000, None),
        (8, "PCMA", 8000, None),
    ]
    assert audio[0].fmtp == {"minptime": "10", "useinbandfec": "1"}
    assert all(c.rtcp_fb == ["transport-cc"] for c in audio)
    video = supported_codecs("video")
    assert [(c.payload_type, c.name) for c in video] == [
        (96, "VP8"), (97, "rtx"), (98, "VP9"), (99, "rtx"), (100, "VP9"), (101, "rtx"),
        (102, "H264"), (103, "rtx"), (104, "H264"), (105, "rtx"),
        (106, "H264"), (107, "rtx"), (108, "H264"), (109, "rtx"),
    ]  # fmt: skip
    assert [c.fmtp.get("profile-level-id") for c in video if c.name == "H264"] == [
        "42e01f",
        "42001f",
        "4d001f",
        "640c1f",
    ]
    assert all(c.fmtp["level-asymmetry-allowed"] == "1" for c in video if c.name == "H264")
    assert [c.fmtp["apt"] for c in video if c.name == "rtx"] == ["96", "98", "100", "102"] + [
        "104",
        "106",
        "108",
    ]
    assert all(c.rtcp_fb == VIDEO_FB for c in video if c.name != "rtx")
    assert supported_codecs("application") == []
    video[0].fmtp["x"] = "1"
    assert "x" not in supported_codecs("video")[0].fmtp  # copies


def test_extensions() -> None:
    assert dict(SUPPORTED_EXTENSIONS["audio"]) == {
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level": 1,
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 2,
        TWCC: 3,
        "urn:ietf:params:rtp-hdrext:sdes:mid": 4,
    }
    assert dict(SUPPORTED_EXTENSIONS["video"]) == {
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 2,
        TWCC: 3,
        "urn:ietf:params:rtp-hdrext:sdes:mid": 4,
        "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00": 9,
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id": 10,
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id": 11,
        "urn:3gpp:video-orientation": 13,
        "urn:ietf:params:rtp-hdrext:toffset": 14,
    }
    # One id per URI across kinds (one BUNDLE group); the ids are Chrome's own.
    # (the simulcast capture is the newer one: it also offers the layers allocation)
    chrome = media("chromium_offer_simulcast", 1)
    ids = {e.uri: e.id for e in chrome.extensions}
    assert all(ids[uri] == ext_id for uri, ext_id in SUPPORTED_EXTENSIONS["video"])


def test_codec_key() -> None:
    assert codec_key(h264("42e01f")) == ("h264", 90000, 1, "1", 0x42, 0xE0)
    assert codec_key(h264("42e01f")) == codec_key(h264("42E034", pt=126))  # level differs
    assert codec_key(h264("42e01f")) != codec_key(h264("42001f"))
    assert codec_key(h264("42e01f")) != codec_key(h264("42e01f", mode="0"))
    no_fmtp = RtpCodec(97, "h264", 90000)
    assert codec_key(no_fmtp) == ("h264", 90000, 1, "0", 0x42, 0x00)
    bad = h264("zz0000")
    assert codec_key(bad) == ("h264", 90000, 1, "1", "invalid", "zz0000") and not is_supported(bad)
    vp9 = RtpCodec(98, "VP9", 90000)
    assert codec_key(vp9) == ("vp9", 90000, 1, "0")
    assert codec_key(vp9) == codec_key(RtpCodec(121, "vp9", 90000, None, {"profile-id": "0"}))
    assert codec_key(RtpCodec(100, "VP9", 90000, None, {"profile-id": "2"}))[-1] == "2"
    firefox_g722 = RtpCodec(9, "G722", 8000, 1)
    assert codec_key(firefox_g722) == codec_key(RtpCodec(9, "G722", 8000))
    assert codec_key(RtpCodec(109, "OPUS", 48000, 2)) == ("opus", 48000, 2)


def test_h264_profile() -> None:
    assert h264_profile({"profile-level-id": "640c1f"}) == (0x64, 0x0C)
    assert h264_profile({}) == (0x42, 0x00)
    for bad in ["42e01", "42e01fa", "xyz123", "", "４２e01f"]:
        with pytest.raises(
            ValueError, match=f"^bad H.264 profile-level-id {re.escape(repr(bad))}$"
        ):
            h264_profile({"profile-level-id": bad})


def test_is_supported() -> None:
    chrome_audio = media("chromium_offer_audio_video", 0)
    verdict = {c.name: is_supported(c) for c in chrome_audio.codecs}
    assert verdict == {
        "opus": True,
        "red": False,
        "G722": True,
        "PCMU": True,
        "PCMA": True,
        "CN": False,
        "telephone-event": False,
    }
    chrome_video = media("chromium_offer_recvonly", 1)
    supported = {(c.payload_type, c.name) for c in chrome_video.codecs if is_supported(c)}
    assert supported == {
        (96, "VP8"), (98, "VP9"), (100, "VP9"), (102, "H264"), (108, "H264"), (116, "H264"),
    }  # fmt: skip
    assert not is_supported(RtpCodec(97, "rtx", 90000, None, {"apt": "96"}))
    assert is_supported(h264("640c34"))


def test_match_codec_across_browsers() -> None:
    chrome = media("chromium_offer_audio_video", 1).codecs
    firefox = media("firefox_offer_audio_video", 1).codecs
    vp8 = match_codec(firefox[0], chrome)
    assert vp8 is not None and (vp8.payload_type, vp8.name) == (96, "VP8")
    vp9 = match_codec(RtpCodec(121, "VP9", 90000), chrome)
    assert vp9 is not None and vp9.payload_type == 98
    h = match_codec(h264("42e01f", pt=126), chrome)
    assert h is not None and h.payload_type == 108
    assert match_codec(RtpCodec(99, "AV1", 90000), firefox[:2]) is None
    opus = match_codec(media("firefox_offer_audio_only", 0).codecs[0], supported_codecs("audio"))
    assert opus is not None and opus.payload_type == 111


def pts(codecs: list[RtpCodec]) -> list[tuple[int, str]]:
    return [(c.payload_type, c.name) for c in codecs]


def test_filter_chromium_offer() -> None:
    audio = filter_offer_codecs(media("chromium_offer_audio_video", 0))
    assert pts(audio) == [(111, "opus"), (9, "G722"), (0, "PCMU"), (8, "PCMA")]
    assert audio[0].rtcp_fb == ["transport-cc"] and audio[0].fmtp == {
        "minptime": "10",
        "useinbandfec": "1",
    }
    video = filter_offer_codecs(media("chromium_offer_audio_video", 1))
    assert pts(video) == [
        (96, "VP8"), (97, "rtx"), (98, "VP9"), (99, "rtx"), (100, "VP9"), (101, "rtx"),
        (102, "H264"), (103, "rtx"), (108, "H264"), (109, "rtx"), (116, "H264"), (117, "rtx"),
    ]  # fmt: skip
    assert video[0].rtcp_fb == ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    assert video[1].fmtp == {"apt": "96"} and video[1].rtcp_fb == []


def test_filter_firefox_offer() -> None:
    assert pts(filter_offer_codecs(media("firefox_offer_audio_video", 0))) == [
        (109, "opus"),
        (9, "G722"),
        (0, "PCMU"),
        (8, "PCMA"),
    ]
    assert pts(filter_offer_codecs(media("firefox_offer_audio_video", 1))) == [
        (120, "VP8"),
        (124, "rtx"),
        (121, "VP9"),
        (125, "rtx"),
    ]


def test_filter_applies_our_preference() -> None:
    m = MediaDescription("video", 9, "UDP/TLS/RTP/SAVPF", ["102", "103", "98", "96", "97"])
    m.codecs = [
        h264("42e01f"),
        RtpCodec(103, "rtx", 90000, None, {"apt": "102"}),
        RtpCodec(98, "VP9", 90000, None, {}, ["nack", "transport-cc"]),
        RtpCodec(96, "VP8", 90000),
        RtpCodec(97, "rtx", 90000, None, {"apt": "96"}),
    ]
    assert pts(filter_offer_codecs(m)) == [
        (96, "VP8"),
        (97, "rtx"),
        (98, "VP9"),
        (102, "H264"),
        (103, "rtx"),
    ]
    assert filter_offer_codecs(m)[2].rtcp_fb == ["nack", "transport-cc"]
    a = MediaDescription("audio", 9, "RTP/AVP", ["0", "111"])
    a.codecs = [RtpCodec(0, "PCMU", 8000), RtpCodec(111, "opus", 48000, 2, {}, ["nack"])]
    assert pts(filter_offer_codecs(a)) == [(111, "opus"), (0, "PCMU")]
    assert filter_offer_codecs(a)[0].rtcp_fb == []
    data = MediaDescription("application", 9, "UDP/DTLS/SCTP", ["webrtc-datachannel"])
    assert filter_offer_codecs(data) == []
