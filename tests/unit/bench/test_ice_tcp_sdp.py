"""The generator's ICE-TCP side of offer/answer (``zvonok bench --tcp``): the server's passive
TCP candidate is read from its offer, and the answer carries one active TCP candidate (RFC 6544
§4.5: port 9) instead of the UDP one."""

from __future__ import annotations

from dataclasses import replace

from zvonok.bench.sdp import LocalMedia, build_answer, parse_offer

from .test_janus_messages import ANSWER, LOCAL

PASSIVE = "a=candidate:2 1 tcp 1518280447 127.0.0.1 40001 typ host tcptype passive\r\n"
ACTIVE = "a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active\r\n"
ELSEWHERE = "a=candidate:4 1 tcp 1518280447 192.0.2.7 40002 typ host tcptype passive\r\n"


def with_candidates(*lines: str) -> str:
    udp = "a=candidate:1 1 udp 2015363327 127.0.0.1 20123 typ host\r\n"
    return ANSWER.replace(udp, udp + "".join(lines))


def test_the_first_passive_tcp_candidate_on_the_hosts_is_taken() -> None:
    info = parse_offer(with_candidates(ACTIVE, ELSEWHERE, PASSIVE))
    assert info.address == ("127.0.0.1", 20123)  # the UDP one, as before
    assert info.tcp_address == ("127.0.0.1", 40001)  # not the active one, not another host's


def test_no_tcp_candidate_leaves_none() -> None:
    assert parse_offer(ANSWER).tcp_address is None


def test_the_tcp_answer_has_one_active_candidate_on_port_9() -> None:
    local: LocalMedia = replace(LOCAL, tcp=True)
    lines = build_answer(parse_offer(with_candidates(PASSIVE)), local, {}).split("\r\n")
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    assert set(candidates) == {"a=candidate:1 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active"}
    udp = build_answer(parse_offer(ANSWER), LOCAL, {}).split("\r\n")
    assert "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host" in udp
