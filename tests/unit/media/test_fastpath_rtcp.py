"""RTCP bytes in C. Out through the send target: the compiled ``SendTarget.send_rtcp`` (SRTCP
protection with libsrtp's ``srtp_protect_rtcp``, the send in C) against its pure-Python reference
(``transport.target.SendTarget.send_rtcp``: pylibsrtp's ``protect_rtcp`` and the socket's
``sendto``), and the transport sending its RTCP that way.

Both protect with equal sessions, so for the same packets in the same order the ciphertexts on
the wire (SRTCP index included) and the counters must be equal; packets are hypothesis-made
bytes of any length, including ones too short for an RTCP header and ones too long for the
buffer, which both must refuse and count alike.

In: the compiled transport-cc feedback parser (``_fastpath.twcc_parse``) against
``packets.rtcp.parse_twcc_fci`` on feedback our builder makes, on plausible but malformed FCIs
(reserved symbols, zero runs, truncated chunks and deltas, long tails) and on arbitrary bytes:
the same result, or a ``ValueError`` from both.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvonok.media.fastpath import native
from zvonok.media.packets.rtcp import (
    ReceiverReport,
    ReportBlock,
    TransportFeedback,
    parse_compound,
    parse_twcc_fci,
)
from zvonok.media.transport.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpSession
from zvonok.media.transport.target import SendTarget as PySendTarget
from zvonok.media.transport.target import make_send_target

pytestmark = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")

PROFILES = [AEAD_AES_128_GCM, AES128_CM_SHA1_80]


class Pair:
    """A compiled target sending on a real socket and the Python reference, equal SRTP."""

    def __init__(self, profile: Any) -> None:
        key = bytes(range(profile.master_length))
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))
        self.tx.setblocking(False)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.srtp = SrtpSession(profile, tx_master=key, rx_master=key)
        self.reference_srtp = SrtpSession(profile, tx_master=key, rx_master=key)
        self.peer = SrtpSession(profile, tx_master=key, rx_master=key)
        self.fallback: list[bytes] = []
        self.reference_sent: list[bytes] = []
        assert native is not None
        self.compiled = native.SendTarget(self.tx.fileno(), lambda d, a: self.fallback.append(d))
        self.compiled.set_srtp(*self.srtp.tx_handle(), self.srtp, self.srtp.tx_rtcp_handle())
        self.compiled.set_address(self.rx.getsockname())
        self.compiled.enabled = True
        self.reference = PySendTarget(-1, lambda d, a: self.reference_sent.append(d))
        self.reference.set_srtp(0, 0, self.reference_srtp, 0)
        self.reference.set_address(self.rx.getsockname())
        self.reference.enabled = True

    def received(self) -> list[bytes]:
        out = []
        self.rx.settimeout(0.5)
        for _ in self.reference_sent:
            out.append(self.rx.recv(2048))
        self.rx.settimeout(0.01)
        try:
            extra = self.rx.recv(2048)
        except TimeoutError:
            extra = b""
        assert not extra, "the compiled target sent more than the reference"
        return out

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


def counters(target: Any) -> tuple[int, int, int, int]:
    return target.tx_packets, target.tx_bytes, target.srtp_errors, target.send_errors


def report(ssrc: int) -> bytes:
    block = ReportBlock(0xCAFE, 3, 17, 0x10020, 45, 0x1234_5678, 655)
    return bytes(ReceiverReport(ssrc, [block]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    profile=st.sampled_from(PROFILES),
    packets=st.lists(
        st.one_of(
            st.binary(max_size=12),  # too short for an RTCP header (libsrtp refuses: both)
            st.builds(report, st.integers(0, 0xFFFF_FFFF)),
            st.binary(min_size=8, max_size=1400),  # beyond 1,352 bytes: too long, both refuse
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_compiled_send_rtcp_sends_what_the_reference_sends(
    profile: Any, packets: list[bytes]
) -> None:
    pair = Pair(profile)
    try:
        for packet in packets:
            pair.compiled.send_rtcp(packet)
            pair.reference.send_rtcp(packet)
        assert pair.received() == pair.reference_sent
        assert counters(pair.compiled) == counters(pair.reference)
        assert not pair.fallback
    finally:
        pair.close()


def test_what_the_compiled_target_sends_is_valid_srtcp() -> None:
    pair = Pair(AEAD_AES_128_GCM)
    try:
        packet = report(0x1111)
        pair.compiled.send_rtcp(bytearray(packet))
        pair.compiled.send_rtcp(memoryview(packet))
        pair.reference.send_rtcp(packet)
        pair.reference.send_rtcp(packet)
        wire = pair.received()
        plain = [pair.peer.unprotect_rtcp(w) for w in wire]
        assert plain == [packet, packet]
        assert isinstance(parse_compound(plain[1])[0], ReceiverReport)
    finally:
        pair.close()


def test_send_rtcp_sends_nothing_unless_ready() -> None:
    pair = Pair(AEAD_AES_128_GCM)
    try:
        for target in (pair.compiled, pair.reference):
            target.enabled = False
            target.send_rtcp(report(1))
            target.enabled = True
            target.set_address(None)
            target.send_rtcp(report(1))
            target.set_address(pair.rx.getsockname())
            target.clear_srtp()
            target.send_rtcp(report(1))
        assert counters(pair.compiled) == counters(pair.reference) == (0, 0, 0, 0)
        assert pair.received() == []
    finally:
        pair.close()


def test_without_the_rtcp_function_the_compiled_target_counts_an_error() -> None:
    pair = Pair(AEAD_AES_128_GCM)
    try:
        pair.compiled.set_srtp(*pair.srtp.tx_handle(), pair.srtp)  # RTP only
        pair.compiled.send_rtcp(report(1))
        assert counters(pair.compiled) == (0, 0, 1, 0)
        with pytest.raises(TypeError):
            pair.compiled.send_rtcp("not bytes")
        with pytest.raises(TypeError):
            pair.compiled.set_srtp(1, 2, pair.srtp, "x")
        with pytest.raises(ValueError):
            pair.compiled.set_srtp(0, 2, pair.srtp, 3)
    finally:
        pair.close()


def test_make_send_target_gives_the_compiled_target_rtcp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        target = make_send_target(sock.fileno(), lambda d, a: None)
        assert native is not None and isinstance(target, native.SendTarget)


# -- transport-cc feedback parsing ---------------------------------------------------------------


def both(fci: bytes) -> tuple[object, object]:
    """What the compiled and the reference parser make of ``fci``: the result, or the
    ``ValueError``'s class (both must refuse the same input)."""
    assert native is not None
    out: list[object] = []
    for parse in (native.twcc_parse, parse_twcc_fci):
        try:
            out.append(parse(fci))
        except ValueError:
            out.append(ValueError)
    return out[0], out[1]


arrival = st.one_of(st.none(), st.integers(0, 400_000))


@settings(max_examples=300, deadline=None)
@given(
    base=st.integers(0, 0xFFFF),
    fb_count=st.integers(0, 255),
    start=st.integers(0, 2**30),
    arrivals=st.lists(arrival, min_size=1, max_size=300),
)
def test_compiled_twcc_parser_reads_what_we_build(
    base: int, fb_count: int, start: int, arrivals: list[int | None]
) -> None:
    times: list[int | None] = []
    at = start
    for step in arrivals:
        if step is None:
            times.append(None)
        else:
            at += step % 20_000 if step < 300_000 else step  # mostly small, some large deltas
            times.append(at)
    if all(t is None for t in times):
        times[0] = start
    try:
        fb = TransportFeedback.build(1, 2, fb_count, base, times)
    except ValueError:
        return  # a delta beyond 16 bits: the builder refuses, nothing to parse
    fci = bytes(fb)[12:]
    compiled, reference = both(fci)
    assert compiled == reference == (fb.base_seq, fb.reference_time, fb.fb_count, fb.deltas)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=80))
def test_compiled_twcc_parser_matches_the_reference_on_any_bytes(fci: bytes) -> None:
    compiled, reference = both(fci)
    assert compiled == reference


@st.composite
def twcc_fci(draw: st.DrawFn) -> bytes:
    """Plausible FCIs: a header, chunks of every kind (reserved symbols and zero runs too),
    then a random tail of deltas, too short, exact or too long."""
    count = draw(st.integers(0, 60))
    head = struct.pack("!HH", draw(st.integers(0, 0xFFFF)), count)
    head += draw(st.binary(min_size=4, max_size=4))
    chunks = b""
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["run", "one", "two"]))
        if kind == "run":
            value = draw(st.integers(0, 3)) << 13 | draw(st.integers(0, 40))
        elif kind == "one":
            value = 0x8000 | draw(st.integers(0, 0x3FFF))
        else:
            value = 0xC000 | draw(st.integers(0, 0x3FFF))
        chunks += struct.pack("!H", value)
    return head + chunks + draw(st.binary(max_size=90))


@settings(max_examples=3000, deadline=None)
@given(twcc_fci())
def test_compiled_twcc_parser_matches_the_reference_on_malformed_feedback(fci: bytes) -> None:
    compiled, reference = both(fci)
    assert compiled == reference


def test_twcc_parser_edges() -> None:
    assert native is not None
    # 14 one-bit symbols for 1 packet: the rest of the vector is ignored; a padded tail is fine
    fci = struct.pack("!HHI", 7, 1, 0x8000_0001) + b"\xa0\x00" + b"\x05" + b"\x00\x00\x00"
    assert both(fci) == ((7, -0x800000, 1, [5]), (7, -0x800000, 1, [5]))
    # a large (signed 16-bit) delta from a run of 2s
    fci = struct.pack("!HHI", 0xFFFF, 2, 0x00_00_01_09) + b"\x40\x02" + b"\xff\xfe\x00\x10"
    assert both(fci)[0] == (0xFFFF, 1, 9, [-2, 16])
    for bad in (b"", bytes(7), struct.pack("!HHI", 0, 0, 0), struct.pack("!HHI", 0, 3, 0)):
        with pytest.raises(ValueError):
            native.twcc_parse(bad)
    with pytest.raises(TypeError):
        native.twcc_parse("not bytes")
    fb = TransportFeedback.parse(1, 2, struct.pack("!HHI", 1, 1, 0) + b"\x20\x01\x07\x00")
    assert fb.deltas == [7]
