"""RTCP: captured/hand-written fixtures, NACK packing, REMB, NTP helpers, fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.packets.rtcp import (
    NTP_EPOCH_OFFSET,
    Bye,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpPacket,
    RtcpUnknown,
    SdesChunk,
    SenderReport,
    SourceDescription,
    TransportFeedback,
    build_compound,
    nack_pairs,
    ntp_from_unix,
    ntp_middle,
    ntp_to_seconds,
    parse_compound,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rtp"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def round_trip(name: str) -> list[object]:
    data = load(name)
    packets = parse_compound(data)
    assert build_compound(packets) == data
    return list(packets)


def test_sender_report_with_sdes() -> None:
    sr, sdes = round_trip("aiortc_sr.bin")
    assert isinstance(sr, SenderReport) and isinstance(sdes, SourceDescription)
    assert sr.ssrc == 3714617811 and sr.rtp_timestamp == 1428485939
    assert (sr.packet_count, sr.octet_count, sr.reports) == (44, 4822, [])
    assert sr.ntp_timestamp == 17199161396095954261
    assert sdes.chunks[0].ssrc == sr.ssrc
    assert sdes.chunks[0].cname == "960c18fa-85cd-4d5e-bc10-36b074d798d2"


def test_receiver_report() -> None:
    (rr,) = round_trip("aiortc_rr.bin")
    assert isinstance(rr, ReceiverReport) and rr.ssrc == 2278947956
    assert rr.reports == [ReportBlock(3714617811, 0, 0, 26082, 130, 2989181710, 26456)]


def test_nack() -> None:
    (nack,) = round_trip("aiortc_nack.bin")
    assert nack == Nack(2278947956, 3714617811, [26092, 26093, 26095, 26109])


def test_pli_remb_bye() -> None:
    assert round_trip("aiortc_pli.bin") == [Pli(2278947956, 3714617811)]
    assert round_trip("aiortc_remb.bin") == [Remb(2278947956, 24312, [3714617811])]
    assert round_trip("aiortc_bye.bin") == [Bye([2223799259])]


def test_fir() -> None:
    assert round_trip("rfc_fir.bin") == [Fir(0xABCD, 0, [(0x12345678, 7)])]


def test_compound_sr_sdes_bye() -> None:
    sr, sdes, bye = round_trip("rfc_sr_sdes_bye.bin")
    assert isinstance(sr, SenderReport) and isinstance(sdes, SourceDescription)
    assert (sr.packet_count, sr.octet_count, sr.rtp_timestamp) == (100, 16000, 123456)
    assert sr.reports == [ReportBlock(0x9ABCDEF0, 64, -2, 0x12345, 32, 0xC5B68000, 0x10000)]
    assert sdes.chunks == [SdesChunk(0x12345678, [(1, b"zv@host")])]
    assert bye == Bye([0x12345678], b"bye!")


def test_opaque_packets() -> None:
    (twcc,) = round_trip("rfc_transport_cc.bin")
    assert twcc == TransportFeedback(0xABCD, 0x12345678, 1, 0x102, 0, [10, 11])
    (app,) = round_trip("rfc_app.bin")
    assert isinstance(app, RtcpUnknown) and app.packet_type == 204 and app.body[4:8] == b"zvnk"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("aiortc_sr_truncated.bin", r"^RTCP length 48 overruns the packet \(12\)$"),
        ("aiortc_rr_invalid.bin", r"^RTCP receiver report has 2 report blocks but only 28 bytes$"),
        ("aiortc_nack_invalid.bin", r"^RTCP NACK has 0 bytes of FCI, not a multiple of 4$"),
        ("aiortc_pli_truncated.bin", r"^RTCP feedback packet is too short \(4 bytes\)$"),
        ("aiortc_remb_invalid.bin", r"^RTCP REMB lists 5 SSRCs but has only 12 bytes$"),
        ("aiortc_bye_invalid.bin", r"^RTCP BYE has 2 sources but only 4 bytes$"),
        ("rfc_fir_invalid.bin", r"^RTCP FIR has 4 bytes of FCI, not a multiple of 8$"),
        ("rfc_sr_sdes_bye_invalid.bin", r"^RTCP packet has version 1, expected 2$"),
    ],
)
def test_invalid_twins(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_compound(load(name))


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("", r"^RTCP packet is empty$"),
        ("80c8", r"^RTCP header is truncated \(2 bytes\)$"),
        ("80c80001 00000001", r"^RTCP sender report is too short \(4 bytes\)$"),
        ("81ca0001 00000001", r"^RTCP SDES item list is not terminated$"),
        ("81ca0002 00000001 0105abcd", r"^RTCP SDES item is truncated$"),
        ("a0c90001 00000005", r"^RTCP padding length overruns the packet$"),
        ("81cb0000", r"^RTCP BYE has 1 sources but only 0 bytes$"),
        ("80cb0001 050000ff", r"^RTCP BYE reason is truncated$"),
        ("8fce0003 00000001 00000000 52454d42", r"^RTCP REMB is truncated or lacks its 'REMB'"),
    ],
)
def test_malformed(hex_data: str, message: str) -> None:
    data = bytes.fromhex(hex_data.replace(" ", ""))
    with pytest.raises(ValueError, match=message):
        parse_compound(data)


def test_other_application_feedback_is_opaque() -> None:
    data = bytes.fromhex("8fce0004 00000001 00000000 52454d41 00000000")  # "REMA"
    (packet,) = parse_compound(data)
    assert isinstance(packet, RtcpUnknown) and packet.count == 15


def test_padding_is_removed() -> None:
    data = bytes.fromhex("a0c90002 00000005 00000004")
    assert parse_compound(data) == [ReceiverReport(5)]


def test_nack_pairs_both_ways() -> None:
    assert nack_pairs([1, 2, 17, 18]) == [(1, 0x8001), (18, 0)]
    assert nack_pairs([65534, 65535, 0, 3]) == [(65534, 0b10011)]
    nack = Nack(1, 2, [65534, 65535, 0, 3, 40])
    assert parse_compound(bytes(nack)) == [nack]


def test_remb_large_bitrate() -> None:
    remb = Remb(1, 1_500_000_000, [7, 8])
    (parsed,) = parse_compound(bytes(remb))
    assert isinstance(parsed, Remb) and parsed.ssrcs == [7, 8]
    assert abs(parsed.bitrate - remb.bitrate) / remb.bitrate < 1e-5


def test_report_block_clamps_lost() -> None:
    block = ReportBlock(1, 0, -(1 << 30), 0, 0, 0, 0)
    assert ReportBlock.parse(bytes(block)).packets_lost == -(1 << 23)


def test_sdes_cname_builder() -> None:
    sdes = SourceDescription.cname_of(9, "abc")
    assert bytes(sdes) == bytes.fromhex("81ca0003 00000009 0103616263 000000")
    assert SourceDescription([SdesChunk(1)]).chunks[0].cname is None
    with pytest.raises(ValueError, match=r"^SDES item of 300 bytes is longer than 255$"):
        bytes(SourceDescription([SdesChunk(1, [(1, b"x" * 300)])]))


def test_ntp() -> None:
    ntp = ntp_from_unix(1.5)
    assert ntp == (NTP_EPOCH_OFFSET + 1) << 32 | 1 << 31
    assert ntp_middle(ntp) == ((NTP_EPOCH_OFFSET + 1) & 0xFFFF) << 16 | 0x8000
    assert ntp_to_seconds(ntp) == NTP_EPOCH_OFFSET + 1.5


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_parse_compound(data: bytes) -> None:
    try:
        packets = parse_compound(data)
    except ValueError:
        return
    _assert_round_trip(packets)


def _canonical(packet: RtcpPacket) -> object:
    """A NACK's lost list is a set: repeated and reordered sequence numbers pack the same."""
    if isinstance(packet, Nack):
        return (packet.sender_ssrc, packet.media_ssrc, set(packet.lost))
    return packet


def _assert_round_trip(packets: list[RtcpPacket]) -> None:
    """Every parsed packet re-serialises, alone and as a compound, to bytes that parse back equal
    (and are then stable)."""
    assert packets
    for packet in packets:
        encoded = bytes(packet)
        (again,) = parse_compound(encoded)
        assert _canonical(again) == _canonical(packet)
        assert bytes(again) == encoded
    again_all = parse_compound(build_compound(packets))
    assert [_canonical(p) for p in again_all] == [_canonical(p) for p in packets]


def _rtcp_like() -> st.SearchStrategy[bytes]:
    def build(first: int, packet_type: int, body: bytes) -> bytes:
        body = body[: len(body) // 4 * 4]
        return bytes((first, packet_type)) + (len(body) // 4).to_bytes(2, "big") + body

    return st.builds(
        build,
        st.integers(0x80, 0xBF),
        st.sampled_from([200, 201, 202, 203, 204, 205, 206]),
        st.binary(max_size=64),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(_rtcp_like(), min_size=1, max_size=3))
def test_fuzz_structured(parts: list[bytes]) -> None:
    try:
        packets = parse_compound(b"".join(parts))
    except ValueError:
        return
    assert len(packets) == len(parts)
    _assert_round_trip(packets)


def test_padding_that_leaves_a_partial_word_is_refused() -> None:
    """Found by test_fuzz_structured: an RR padded by one byte left a 19-byte profile extension
    that could not be written back (RFC 3550 §6.4: bodies are whole 32-bit words)."""
    data = bytes.fromhex("a0c90006") + bytes(23) + b"\x01"
    with pytest.raises(ValueError, match="partial 32-bit word"):
        parse_compound(data)
    padded = bytes.fromhex("a0c90002") + bytes(4) + bytes.fromhex("00000004")
    (report,) = parse_compound(padded)
    assert bytes(report) == bytes.fromhex("80c90001") + bytes(4)
