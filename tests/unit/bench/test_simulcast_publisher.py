"""``zvonok bench --simulcast``: the generator's simulcast publisher without a server.

Its offer (Chrome's shape: rtp-stream-id extension, ``a=rid:<id> send``, ``a=simulcast:send
q;h;f``, no video a=ssrc), its answer to a server offer that repeats its m-line (rids again), the
one-byte rid element next to the other extensions, which packets of a frame each layer sends, and
the packets themselves (decrypted: one SSRC and sequence space per layer, the rid in each, the
marker on each layer's last packet), counted at a subscriber: only the top layer is delivered,
the lower layers apart.
"""

from __future__ import annotations

import asyncio
import struct

from zvonok.bench.client import (
    HALF,
    QUARTER,
    VIDEO,
    BenchClient,
    MediaLeg,
    Meter,
    layer_packets,
)
from zvonok.bench.clip import Clip
from zvonok.bench.sdp import (
    RID_URI,
    SIMULCAST_RIDS,
    LocalMedia,
    OfferedMedia,
    OfferInfo,
    build_answer,
    build_offer,
    parse_offer,
)
from zvonok.media.packets.rtp import read_extension
from zvonok.media.sdp.description import SessionDescription
from zvonok.media.sdp.simulcast import send_rids
from zvonok.media.transport.dtls import DtlsCertificate
from zvonok.media.transport.srtp import AES128_CM_SHA1_80, SrtpSession

LOCAL = LocalMedia("abcd", "p" * 32, "AA:BB", 40000, "c3", "bench-3")
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
KEY = bytes(range(30))


def _m_line(lines: list[str], mid: str) -> list[str]:
    """The lines of the m-section whose a=mid is ``mid``."""
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        if sections:
            sections[-1].append(line)
    return next(s for s in sections if f"a=mid:{mid}" in s)


def test_offer_sends_video_in_three_rids_like_chrome() -> None:
    sdp = build_offer(LOCAL, {"0": ("audio", 11), "1": ("video", 22)}, {"1": SIMULCAST_RIDS})
    lines = sdp.split("\r\n")
    video, audio = _m_line(lines, "1"), _m_line(lines, "0")
    assert f"a=extmap:10 {RID_URI}" in video
    assert [ln for ln in video if ln.startswith("a=rid:")] == [
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send",
    ]
    assert "a=simulcast:send q;h;f" in video
    assert "a=sendonly" in video and "a=msid:bench-3 bench-3-video" in video
    assert not any(ln.startswith("a=ssrc:") for ln in video)  # learnt from the rid extension
    assert "a=ssrc:11 cname:c3" in audio and not any(RID_URI in ln for ln in audio)
    info = parse_offer(sdp)
    assert info.media[1].simulcast == "send q;h;f"
    assert info.media[1].rids == ["q send", "h send", "f send"]
    assert info.media[1].extensions[RID_URI] == 10


def test_offer_is_accepted_by_the_servers_sdp_parser() -> None:
    local = LocalMedia("abcd", "p" * 32, ":".join(["AB"] * 32), 40000, "c3", "bench-3")
    sdp = build_offer(local, {"0": ("audio", 11), "1": ("video", 22)}, {"1": SIMULCAST_RIDS})
    video = SessionDescription.parse(sdp).media[1]
    assert send_rids(video) == SIMULCAST_RIDS


# A server re-offer after the publisher's own offer: its m-lines again (recvonly, the simulcast
# one with a=rid recv / a=simulcast:recv) and one the server sends it (another publisher's video).
REOFFER = "\r\n".join(
    [
        "v=0",
        "o=- 7 3 IN IP4 0.0.0.0",
        "s=zvonok",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=ice-ufrag:srv1",
        "a=ice-pwd:" + "s" * 24,
        "a=setup:actpass",
        "a=recvonly",
        "a=extmap:4 " + MID_URI,
        "a=rtpmap:111 opus/48000/2",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=mid:1",
        "a=recvonly",
        "a=extmap:4 " + MID_URI,
        "a=extmap:10 " + RID_URI,
        "a=rtpmap:96 VP8/90000",
        "a=rid:q recv",
        "a=rid:h recv",
        "a=rid:f recv",
        "a=simulcast:recv q;h;f",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=mid:2",
        "a=sendonly",
        "a=extmap:4 " + MID_URI,
        "a=rtpmap:96 VP8/90000",
        "a=ssrc:999 cname:other",
        "",
    ]
)


def test_answer_repeats_the_simulcast_attributes_on_its_own_m_line() -> None:
    offer = parse_offer(REOFFER)
    assert offer.media[1].simulcast == "recv q;h;f"
    sending = {"0": ("audio", 11), "1": ("video", 22)}
    lines = build_answer(offer, LOCAL, sending, {"1": SIMULCAST_RIDS}).split("\r\n")
    audio, video, other = _m_line(lines, "0"), _m_line(lines, "1"), _m_line(lines, "2")
    assert "a=sendonly" in video and "a=simulcast:send q;h;f" in video
    assert [ln for ln in video if ln.startswith("a=rid:")] == [
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send",
    ]
    assert not any(ln.startswith("a=ssrc:") for ln in video)
    assert f"a=extmap:10 {RID_URI}" in video
    assert "a=sendonly" in audio and "a=ssrc:11 cname:c3" in audio
    assert "a=recvonly" in other and not any(ln.startswith(("a=rid", "a=sim")) for ln in other)
    # without simulcast the same offer gets the plain answer (an a=ssrc, no rids)
    plain = build_answer(offer, LOCAL, sending).split("\r\n")
    assert "a=ssrc:22 cname:c3" in _m_line(plain, "1")
    assert not any(ln.startswith("a=rid") for ln in plain)


def test_layers_cut_from_each_frame() -> None:
    frame = [bytes([i]) for i in range(5)]
    assert layer_packets(frame, VIDEO) == frame
    assert layer_packets(frame, HALF) == frame[:3]
    assert layer_packets(frame, QUARTER) == frame[:1]
    assert layer_packets(frame[:1], HALF) == layer_packets(frame[:1], QUARTER) == frame[:1]


def _leg(index: int, meter: Meter, clip: Clip, *, simulcast: bool = True) -> MediaLeg:
    return MediaLeg(
        index=index, name=f"p{index}", meter=meter, clip=clip,
        certificate=DtlsCertificate.generate(), publish=(True, True), speak=False, receivers=1,
        pacing=False, simulcast=simulcast,
    )  # fmt: skip


def test_rid_element_follows_the_other_extensions() -> None:
    leg = _leg(1, Meter(), Clip(video=[[b"x"]], audio=[]))
    leg.sending = {"1": ("video", 22)}
    leg.ext = {f"video:{MID_URI}": 4, f"video:{RID_URI}": 10}
    block = leg._extensions("video", "q")
    # RFC 8285 one-byte form: 0xBEDE, length in words; mid "1" (id 4), rid "q" (id 10), no pad
    assert block == struct.pack("!HH", 0xBEDE, 1) + bytes([0x40, ord("1"), 0xA0, ord("q")])
    assert leg._extensions("video") == struct.pack("!HH", 0xBEDE, 1) + b"\x40" + b"1" + bytes(2)


class _Sink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, address: object) -> int:
        self.sent.append(data)
        return len(data)


def test_each_layer_is_its_own_stream_and_only_the_top_one_is_expected() -> None:
    async def run() -> None:
        frame = [bytes([0x10]) + b"k" * 40] + [b"\x00" + bytes([i]) * 40 for i in range(4)]
        meter = Meter()
        meter.open()
        pub = _leg(1, meter, Clip(video=[frame], audio=[]))
        sink = _Sink()
        pub.srtp = SrtpSession(AES128_CM_SHA1_80, tx_master=KEY, rx_master=KEY)
        pub.sock = sink  # type: ignore[assignment]
        video = OfferedMedia("video", "1", "sendonly", ["96"], ["a=rtpmap:96 VP8/90000"])
        pub.offer = OfferInfo("u", "p" * 22, ("127.0.0.1", 9), [video])
        pub.sending = {"1": ("video", pub.ssrcs[VIDEO])}
        pub.ext = {f"video:{MID_URI}": 4, f"video:{RID_URI}": 10}
        task = asyncio.get_running_loop().create_task(pub._publish(0.0))
        await asyncio.sleep(0.05)  # the first frame at once, the second 33 ms later
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        rx = SrtpSession(AES128_CM_SHA1_80, tx_master=KEY, rx_master=KEY)
        by_rid: dict[str, list[tuple[int, int, bool, bytes]]] = {}
        for data in sink.sent:
            packet = rx.unprotect_rtp(data)
            rid = read_extension(packet, 10)
            assert rid is not None and read_extension(packet, 4) == b"1"
            seq, ssrc = (
                struct.unpack_from("!H", packet, 2)[0],
                struct.unpack_from("!I", packet, 8)[0],
            )
            by_rid.setdefault(rid.decode(), []).append((ssrc, seq, bool(packet[1] & 0x80), packet))
        assert sorted(by_rid) == ["f", "h", "q"]
        assert [len(by_rid[r]) for r in ("q", "h", "f")] == [2, 6, 10]  # two frames each
        ssrcs = {r: {p[0] for p in packets} for r, packets in by_rid.items()}
        assert all(len(s) == 1 for s in ssrcs.values())
        assert ssrcs["f"] == {pub.ssrcs[VIDEO]} and ssrcs["h"] == {pub.ssrcs[HALF]}
        assert ssrcs["q"] == {pub.ssrcs[QUARTER]}
        for packets in by_rid.values():  # consecutive numbers per layer, marker on frame ends
            seqs = [p[1] for p in packets]
            assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
            per_frame = len(packets) // 2
            assert [p[2] for p in packets] == ([False] * (per_frame - 1) + [True]) * 2
        # a subscriber expects and counts only the top layer; the others apart
        assert meter.sent[VIDEO] == 10 and meter.expected[VIDEO] == 10
        assert meter.layer_sent == {HALF: 6, QUARTER: 2}
        sub = _leg(2, meter, Clip(video=[], audio=[]), simulcast=False)
        sub.srtp = SrtpSession(AES128_CM_SHA1_80, tx_master=KEY, rx_master=KEY)
        sub.sources = {1}
        for data in sink.sent:
            sub.datagram_received(data, 1)
        assert meter.received[VIDEO] == 10 and meter.duplicates == [0, 0]
        assert meter.layer_received == {HALF: 6, QUARTER: 2}

    asyncio.run(run())


def test_a_receive_only_leg_has_no_rids() -> None:
    leg = MediaLeg(
        index=1, name="p1", meter=Meter(), clip=Clip(video=[], audio=[]),
        certificate=DtlsCertificate.generate(), publish=(False, False), speak=False, receivers=0,
        simulcast=True,
    )  # fmt: skip
    assert leg.rids == ()


def _client(meter: Meter, *, dynacast: bool) -> BenchClient:
    return BenchClient(
        index=1, url="ws://127.0.0.1:9/ws", token="t", room_id="r", meter=meter,
        clip=Clip(video=[], audio=[]), certificate=DtlsCertificate.generate(),
        publish=(True, True), speak=False, receivers=1, simulcast=True, dynacast=dynacast,
    )  # fmt: skip


def _layers(**active: bool) -> dict[str, object]:
    return {"trackId": "t1", "layers": [{"rid": r, "active": a} for r, a in active.items()]}


def test_publish_layers_are_counted_and_followed_only_with_dynacast() -> None:
    meter = Meter()
    ignoring, following = _client(meter, dynacast=False), _client(meter, dynacast=True)
    for client in (ignoring, following):
        client._publish_layers(_layers(q=True, h=False, f=True))
        client._publish_layers(_layers(q=True, h=False, f=True))  # no new turn-off
    assert meter.publish_layers == 4
    assert meter.layers_turned_off == {"h": 2}
    assert ignoring.leg.paused_rids == set() and following.leg.paused_rids == {"h"}
    following._publish_layers(_layers(q=True, h=True, f=True))  # wanted again: resumed
    assert following.leg.paused_rids == set()
    following._publish_layers({"layers": "junk"})  # a bad shape turns nothing off
    assert following.leg.paused_rids == set()


def test_a_paused_layer_is_not_sent() -> None:
    async def run() -> None:
        meter = Meter()
        meter.open()
        pub = _leg(1, meter, Clip(video=[[b"\x10a", b"\x00b", b"\x00c"]], audio=[]))
        sink = _Sink()
        pub.srtp = SrtpSession(AES128_CM_SHA1_80, tx_master=KEY, rx_master=KEY)
        pub.sock = sink  # type: ignore[assignment]
        video = OfferedMedia("video", "1", "sendonly", ["96"], ["a=rtpmap:96 VP8/90000"])
        pub.offer = OfferInfo("u", "p" * 22, ("127.0.0.1", 9), [video])
        pub.sending = {"1": ("video", pub.ssrcs[VIDEO])}
        pub.ext = {f"video:{RID_URI}": 10}
        pub.paused_rids = {"h"}
        task = asyncio.get_running_loop().create_task(pub._publish(0.0))
        await asyncio.sleep(0.01)  # the first frame only
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert meter.sent[VIDEO] == 3 and meter.layer_sent == {HALF: 0, QUARTER: 1}

    asyncio.run(run())


def test_an_ice_tcp_publisher_offers_its_active_tcp_candidate() -> None:
    local = LocalMedia("abcd", "p" * 32, "AA:BB", 0, "c3", "bench-3", tcp=True)
    lines = build_offer(local, {"1": ("video", 22)}, {"1": SIMULCAST_RIDS}).split("\r\n")
    assert "a=candidate:1 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active" in lines
    assert not any(" udp " in ln for ln in lines if ln.startswith("a=candidate"))
