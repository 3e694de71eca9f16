"""Candidate parse/str (RFC 8839 §5.1) and priority (RFC 8445 §5.1.2.1)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.sdp.candidate import Candidate, priority

CHROME_HOST = (
    "candidate:1528486421 1 udp 2122260223 127.0.0.1 60498 typ host"
    " generation 0 network-id 1 network-cost 50"
)
CHROME_MDNS = (
    "candidate:3891289946 1 udp 2113937151 0b3c1c5e-8a8b-4c23-9b1f-6f3d9a5d2e11.local 54400"
    " typ host generation 0 network-cost 999"
)
FIREFOX_TCP = "candidate:2 1 TCP 2105458943 127.0.0.1 9 typ host tcptype active"
SRFLX = (
    "candidate:842163049 1 udp 1677729535 203.0.113.7 61234 typ srflx"
    " raddr 192.168.1.100 rport 54400 generation 0 ufrag x2Yz network-cost 10"
)


def test_chrome_host_candidate() -> None:
    cand = Candidate.parse(CHROME_HOST)
    assert cand == Candidate(
        foundation="1528486421",
        component=1,
        transport="udp",
        priority=2122260223,
        host="127.0.0.1",
        port=60498,
        type="host",
        generation=0,
        network_id=1,
        network_cost=50,
    )
    assert str(cand) == CHROME_HOST
    assert not cand.is_mdns and cand.protocol == "udp"


@pytest.mark.parametrize("prefix", ["", "candidate:", "a=candidate:", "  a=candidate:"])
def test_prefixes(prefix: str) -> None:
    body = "1 1 UDP 2113667326 192.168.1.100 54400 typ host"
    cand = Candidate.parse(prefix + body)
    assert (cand.foundation, cand.host, cand.port, cand.transport) == (
        "1",
        "192.168.1.100",
        54400,
        "UDP",
    )
    assert str(cand) == "candidate:" + body


def test_mdns_tcp_srflx_and_unknown_extensions() -> None:
    mdns = Candidate.parse(CHROME_MDNS)
    assert mdns.is_mdns and mdns.host.endswith(".local") and str(mdns) == CHROME_MDNS
    tcp = Candidate.parse(FIREFOX_TCP)
    assert (tcp.protocol, tcp.tcptype, tcp.port) == ("tcp", "active", 9)
    assert str(tcp) == FIREFOX_TCP
    srflx = Candidate.parse(SRFLX)
    assert (srflx.type, srflx.related_address, srflx.related_port) == (
        "srflx",
        "192.168.1.100",
        54400,
    )
    assert srflx.ufrag == "x2Yz" and str(srflx) == SRFLX
    v6 = Candidate.parse("candidate:1 2 UDP 2122252542 ::1 50927 typ host future-ext value")
    assert v6.host == "::1" and v6.component == 2
    assert v6.extensions == [("future-ext", "value")]
    assert str(v6).endswith("typ host future-ext value")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("candidate:1 1 udp 1 1.2.3.4 5 typ", "candidate has 7 fields, at least 8 needed"),
        ("candidate:1 1 udp 1 1.2.3.4 5 host x", "candidate has 'host' where 'typ' belongs"),
        ("candidate:1 0 udp 1 1.2.3.4 5 typ host", "candidate component 0 not in 1..256"),
        ("candidate:1 257 udp 1 1.2.3.4 5 typ host", "candidate component 257 not in 1..256"),
        ("candidate:1 x udp 1 1.2.3.4 5 typ host", "bad candidate component 'x'"),
        ("candidate:1 1 sctp 1 1.2.3.4 5 typ host", "unsupported candidate transport 'sctp'"),
        ("candidate:1 1 udp -1 1.2.3.4 5 typ host", "bad candidate priority '-1'"),
        ("candidate:1 1 udp 4294967296 1.2.3.4 5 typ host", "candidate priority 4294967296"),
        ("candidate:1 1 udp 1 1.2.3.4 65536 typ host", "candidate port 65536 not in 0..65535"),
        ("candidate:1 1 udp 1 example.com 5 typ host", "candidate address 'example.com' is"),
        ("candidate:1 1 udp 1 1.2.3.4 5 typ relayed", "bad candidate type 'relayed'"),
        ("candidate:a:b 1 udp 1 1.2.3.4 5 typ host", "bad candidate foundation 'a:b'"),
        ("candidate:1 1 udp 1 1.2.3.4 5 typ host raddr", "candidate extension 'raddr' has no"),
        ("candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr x rport 1", "candidate address 'x'"),
        ("candidate:1 1 udp 1 1.2.3.4 5 typ host tcptype active", "tcptype on a non-TCP"),
        ("candidate:1 1 tcp 1 1.2.3.4 5 typ host tcptype up", "bad tcptype 'up'"),
        ("candidate:1 1 udp 1 1.2.3.4 5 typ host generation x", "bad candidate generation 'x'"),
        ("candidate:" + "1" * 1100, "candidate longer than 1024 characters"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        Candidate.parse(text)


def test_priority() -> None:
    assert priority(126, 65535, 1) == 2130706431
    assert priority(0, 0, 256) == 0
    assert priority(100, 32768, 2) == (100 << 24) + (32768 << 8) + 254
    for args, message in [
        ((127, 0, 1), "type preference 127 not in 0..126"),
        ((0, 65536, 1), "local preference 65536 not in 0..65535"),
        ((0, 0, 0), "component 0 not in 1..256"),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            priority(*args)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_text_only_valueerror(text: str) -> None:
    try:
        cand = Candidate.parse(text)
    except ValueError:
        return
    assert Candidate.parse(str(cand)) == cand


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(CHROME_HOST.split() + SRFLX.split() + ["", "-", "9" * 12])))
def test_fuzz_shuffled_fields_only_valueerror(words: list[str]) -> None:
    try:
        cand = Candidate.parse(" ".join(words))
    except ValueError:
        return
    assert Candidate.parse(str(cand)) == cand


def test_length_limit_is_on_the_value_so_a_parsed_candidate_parses_again() -> None:
    """Found by a fuzz campaign: 1019 characters without the ``candidate:`` prefix parsed, but its
    text (written with the prefix) was over the limit and did not parse again."""
    value = "1 1 udp 2122260223 127.0.0.1 431 typ host generation 0 "
    text = value + "x-pad " + "y" * (1019 - len(value) - 6)
    assert len(text) == 1019
    candidate = Candidate.parse(text)
    assert len(str(candidate)) > 1024
    assert Candidate.parse(str(candidate)) == candidate
    with pytest.raises(ValueError, match="^candidate longer than 1024"):
        Candidate.parse("a=candidate:" + text + "7" * 6)
