"""The pure parts of the Janus comparison target: the publisher's SDP offer, the Janus API
messages and their parsing, and the configuration written for our own Janus (no Janus needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zvonok.bench import janus
from zvonok.bench.runner import summary
from zvonok.bench.sdp import LocalMedia, build_answer, build_offer, parse_offer

LOCAL = LocalMedia("abcd", "p" * 32, "AA:BB", 40000, "c3", "u0-3")


def test_offer_is_sendonly_opus_and_vp8_bundled_with_actpass() -> None:
    sdp = build_offer(LOCAL, {"0": ("audio", 1111), "1": ("video", 2222)})
    assert sdp.endswith("\r\n")
    lines = sdp.split("\r\n")
    assert "a=group:BUNDLE 0 1" in lines
    assert lines.count("a=setup:actpass") == 2
    assert lines.count("a=rtcp-mux") == 2
    assert lines.count("a=sendonly") == 2
    assert "a=ssrc:1111 cname:c3" in lines and "a=ssrc:2222 cname:c3" in lines
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 111" in lines
    assert "m=video 9 UDP/TLS/RTP/SAVPF 96" in lines
    assert "a=rtcp-fb:96 nack pli" in lines and "a=rtcp-fb:96 ccm fir" in lines
    # read back with the generator's own parser (as Janus would see it)
    info = parse_offer(sdp)
    assert (info.ice_ufrag, info.ice_pwd, info.address) == ("abcd", "p" * 32, ("127.0.0.1", 40000))
    assert info.setup == "actpass"
    assert [(m.kind, m.mid, m.direction) for m in info.media] == [
        ("audio", "0", "sendonly"),
        ("video", "1", "sendonly"),
    ]
    audio, video = info.media
    assert audio.payload_type("opus") == 111 and video.payload_type("VP8") == 96
    assert audio.extensions == {
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level": 1,
        "urn:ietf:params:rtp-hdrext:sdes:mid": 4,
    }
    assert video.extensions["http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"] == 2


def test_audio_only_offer_and_unknown_kind() -> None:
    sdp = build_offer(LOCAL, {"0": ("audio", 5)})
    assert "m=video" not in sdp and "a=group:BUNDLE 0\r\n" in sdp
    with pytest.raises(ValueError):
        build_offer(LOCAL, {"0": ("application", 5)})


# An answer shaped like a VideoRoom publisher answer (written for this test).
ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=VideoRoom 1234",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=ice-lite",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 127.0.0.1",
        "a=recvonly",
        "a=mid:0",
        "a=rtcp-mux",
        "a=ice-ufrag:JnUs",
        "a=ice-pwd:secretsecretsecret",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 00:11",
        "a=setup:active",
        "a=rtpmap:111 opus/48000/2",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=candidate:1 1 udp 2015363327 127.0.0.1 20123 typ host",
        "a=end-of-candidates",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 127.0.0.1",
        "a=recvonly",
        "a=mid:1",
        "a=rtcp-mux",
        "a=setup:active",
        "a=rtpmap:96 VP8/90000",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "",
    ]
)


def test_answer_gives_address_role_and_extensions() -> None:
    info = parse_offer(ANSWER)
    assert info.address == ("127.0.0.1", 20123)
    assert info.setup == "active"  # Janus is the DTLS client: our publisher leg serves
    assert [m.direction for m in info.media] == ["recvonly", "recvonly"]
    assert info.media[1].payload_type("vp8") == 96
    assert info.media[1].extensions == {"urn:ietf:params:rtp-hdrext:sdes:mid": 4}


def test_renegotiated_offer_without_candidates_keeps_the_address() -> None:
    text = ANSWER.replace("a=candidate:1 1 udp 2015363327 127.0.0.1 20123 typ host\r\n", "")
    with pytest.raises(ValueError):
        parse_offer(text)
    assert parse_offer(text, fallback_address=("127.0.0.1", 9)).address == ("127.0.0.1", 9)


def test_subscriber_answer_to_a_janus_offer_is_recvonly_active() -> None:
    offer = ANSWER.replace("a=recvonly", "a=sendonly").replace("a=setup:active", "a=setup:actpass")
    answer = build_answer(parse_offer(offer), LOCAL, {})
    lines = answer.split("\r\n")
    assert lines.count("a=recvonly") == 2 and lines.count("a=setup:active") == 2
    assert "a=sendonly" not in lines


def test_requests() -> None:
    assert janus.janus_request("create") == {"janus": "create"}
    assert janus.janus_request("attach", session=7, plugin=janus.PLUGIN) == {
        "janus": "attach",
        "session_id": 7,
        "plugin": "janus.plugin.videoroom",
    }
    message = janus.janus_request("message", session=7, handle=9, body=janus.start_body())
    assert message == {"janus": "message", "session_id": 7, "handle_id": 9,
                       "body": {"request": "start"}}  # fmt: skip
    assert janus.janus_request("keepalive", session=7) == {"janus": "keepalive", "session_id": 7}


def test_videoroom_bodies() -> None:
    room = janus.create_room_body(42, 22)
    assert room["request"] == "create" and room["room"] == 42 and room["publishers"] == 22
    assert room["audiocodec"] == "opus" and room["videocodec"] == "vp8"
    assert room["notify_joining"] is False and room["fir_freq"] == 0
    assert janus.publisher_join_body(42, "u0-1") == {
        "request": "join", "ptype": "publisher", "room": 42, "display": "u0-1",
    }  # fmt: skip
    assert janus.publish_body() == {"request": "publish"}
    assert janus.subscriber_join_body(42, [5, 6]) == {
        "request": "join", "ptype": "subscriber", "room": 42,
        "streams": [{"feed": 5}, {"feed": 6}],
    }  # fmt: skip
    assert janus.update_body([8]) == {"request": "update", "subscribe": [{"feed": 8}]}
    assert janus.jsep("offer", "v=0") == {"type": "offer", "sdp": "v=0", "trickle": False}


def test_replies() -> None:
    success: dict[str, Any] = {"janus": "success", "transaction": "t", "data": {"id": 123}}
    assert janus.reply_error(success) is None
    assert janus.reply_id(success) == 123
    with pytest.raises(janus.JanusError):
        janus.reply_id({"janus": "success"})
    error = {"janus": "error", "error": {"code": 458, "reason": "No such session"}}
    assert janus.reply_error(error) == "janus error 458: No such session"
    event: dict[str, Any] = {
        "janus": "event",
        "sender": 9,
        "plugindata": {"plugin": janus.PLUGIN, "data": {"videoroom": "joined", "id": 77}},
        "jsep": {"type": "answer", "sdp": "v=0\r\n"},
    }
    assert janus.reply_error(event) is None
    assert janus.plugin_data(event)["id"] == 77
    assert janus.reply_sdp(event, "answer") == "v=0\r\n"
    assert janus.reply_sdp(event, "offer") is None
    assert janus.reply_sdp(success, "answer") is None
    refused = {"janus": "event", "plugindata": {"plugin": janus.PLUGIN, "data": {
        "videoroom": "event", "error_code": 428, "error": "No such feed"}}}  # fmt: skip
    assert janus.reply_error(refused) == "videoroom error 428: No such feed"
    assert janus.plugin_data({"janus": "ack"}, check=False) == {}
    with pytest.raises(janus.JanusError):
        janus.plugin_data({"janus": "ack"})


def test_version() -> None:
    info = {"janus": "server_info", "version": 1102, "version_string": "1.1.2"}
    assert janus.version_of(info) == "1.1.2"
    assert janus.version_of({"janus": "error"}) == ""


def test_config_is_loopback_ice_lite_videoroom_and_websockets_only(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for sub, name in (("plugins", janus.VIDEOROOM_SO), ("transports", janus.WEBSOCKETS_SO)):
        (lib / sub).mkdir(parents=True)
        (lib / sub / name).write_bytes(b"")
        (lib / sub / "libjanus_other.so").write_bytes(b"")
    root = tmp_path / "run"
    main = janus.write_config(root, lib, 18188, "192.0.2.2")
    assert main == root / "conf" / "janus.jcfg"
    assert sorted(p.name for p in (root / "plugins").iterdir()) == [janus.VIDEOROOM_SO]
    assert sorted(p.name for p in (root / "transports").iterdir()) == [janus.WEBSOCKETS_SO]
    assert (root / "plugins" / janus.VIDEOROOM_SO).resolve() == lib / "plugins" / janus.VIDEOROOM_SO
    text = main.read_text()
    for line in ("ice_lite = true", "ice_tcp = false", 'ice_enforce_list = "192.0.2.2"',
                 "full_trickle = false", f'log_to_file = "{root}/janus.log"',
                 "log_to_stdout = false", f"debug_level = {janus.DEBUG_LEVEL}"):  # fmt: skip
        assert line in text
    assert "stun_server" not in text and "turn_server" not in text
    ws = (root / "conf" / "janus.transport.websockets.jcfg").read_text()
    assert "ws_port = 18188" in ws and 'ws_ip = "127.0.0.1"' in ws and "wss = false" in ws
    assert "admin_ws = false" in ws
    assert (root / "conf" / "janus.plugin.videoroom.jcfg").exists()
    assert text.count("{") == text.count("}")


def test_summary_names_the_server() -> None:
    result: dict[str, Any] = {
        "scenario": "mesh-4", "server": "janus 1.1.2", "participants": 4, "rooms": 1,
        "duration_s": 3.0, "server_cpu_percent": 1.0, "server_cpu_user_s": 0.01,
        "server_cpu_system_s": 0.02, "cpu_us_per_delivered_packet": 20.0,
        "delivered_per_s": 1700.0, "delivery_ratio": {"audio": 1.0, "video": 1.0},
        "pacing": True, "join_ms": {"count": 1, "p50": 100.0, "max": 100.0},
        "latency_ms": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.4},
        "sfu_latency_ms": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.4},
        "server_rss_mb": 20.0, "server_rss_per_session_kb": 100.0,
        "generator_cpu_percent": 5.0,
        "generator_loop_lag_ms": {"p50": 0.1, "p99": 0.2, "max": 0.3}, "errors": [],
    }  # fmt: skip
    assert summary(result).startswith("mesh-4 on janus 1.1.2: 4 participants")
    assert "server RSS 20.0 MB (100.0 kB/session)" in summary(result)  # no empty-node figure
    result["server_rss_empty_mb"] = 18.5
    assert "server RSS 20.0 MB (empty node 18.5 MB, 100.0 kB/session)" in summary(result)


def test_offer_candidate_on_the_given_host() -> None:
    local = LocalMedia("abcd", "p" * 32, "AA:BB", 40000, "c3", "u0-3", "192.0.2.2")
    sdp = build_offer(local, {"0": ("audio", 1)})
    assert "a=candidate:1 1 udp 2130706431 192.0.2.2 40000 typ host\r\n" in sdp
    assert parse_offer(sdp, hosts=("192.0.2.2",)).address == ("192.0.2.2", 40000)
    with pytest.raises(ValueError):
        parse_offer(sdp)  # loopback only by default


def test_media_leg_answers_the_peers_check_with_our_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aioice import stun

    from zvonok.bench.client import MediaLeg, Meter
    from zvonok.bench.clip import Clip
    from zvonok.media.transport.dtls import DtlsCertificate

    leg = MediaLeg(
        index=0, name="t", meter=Meter(), clip=Clip([], []),
        certificate=DtlsCertificate.generate(), publish=(False, False), speak=False, receivers=0,
    )  # fmt: skip
    leg.offer = parse_offer(ANSWER)
    sent: list[bytes] = []
    monkeypatch.setattr(leg, "_sendto", sent.append)
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{leg.ufrag}:JnUs"
    request.attributes["ICE-CONTROLLED"] = 1
    request.add_message_integrity(leg.pwd.encode())
    request.add_fingerprint()
    leg.datagram_received(bytes(request), 0)
    assert not leg.ice_ok  # a request from the peer is not an answer to our check
    (data,) = sent
    response = stun.parse_message(data)
    # MESSAGE-INTEGRITY (RFC 5389 §15.4) over everything before it, keyed with our password
    pos = 20
    while int.from_bytes(data[pos : pos + 2], "big") != 0x0008:
        pos += 4 + (int.from_bytes(data[pos + 2 : pos + 4], "big") + 3) // 4 * 4
    integrity = stun.message_integrity(data[:pos], leg.pwd.encode())
    assert response.attributes["MESSAGE-INTEGRITY"] == integrity
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("127.0.0.1", 20123)
    answer = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id)
    leg.datagram_received(bytes(answer), 0)
    assert leg.ice_ok
