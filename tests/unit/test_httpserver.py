"""The edge's bookkeeping and arithmetic: per-address keys, the connection table, the fd budget,
and the silence deadline that makes ``inactivity_timeout`` exact (``app._silence_timeout``).
The protocols themselves are tested on real sockets in tests/integration/test_edge_limits.py."""

from __future__ import annotations

import logging
import resource

import pytest

from zvonok.app import MIN_PONG_WAIT, _silence_timeout
from zvonok.config import Settings
from zvonok.httpserver import (
    FD_RESERVE,
    ConnectionTable,
    Edge,
    EdgeLimits,
    client_key,
    connection_budget,
)


def test_client_key_counts_ipv4_addresses_and_ipv6_slash_64s() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:bbbb::9") == client_key("2001:db8:1:2:aaaa::1")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:198.51.100.1") == "198.51.100.1"
    assert client_key("/run/zvonok.sock") == "/run/zvonok.sock"


def test_table_caps_per_key_then_in_total_and_forgets_released_keys() -> None:
    table = ConnectionTable(total=3, per_ip=2)
    assert table.acquire("a") is None
    assert table.acquire("a") is None
    assert table.acquire("a") == "max-connections-per-ip"
    assert table.acquire("b") is None
    assert table.acquire("c") == "max-connections"
    assert table.open == 3
    table.release("a")
    assert table.acquire("c") is None
    for key in ("a", "b", "c"):
        table.release(key)
    assert table.open == 0
    assert table.count("a") == table.count("b") == table.count("c") == 0
    assert table._by_key == {}


def test_table_refuses_a_release_without_a_connection() -> None:
    table = ConnectionTable(total=1, per_ip=1)
    with pytest.raises(ValueError, match="release of 'x' without a connection"):
        table.release("x")


def test_connection_budget_stays_within_the_descriptor_limit() -> None:
    assert connection_budget(10) == 10
    huge = connection_budget(10**9)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 1 <= huge <= soft - FD_RESERVE


@pytest.mark.parametrize(
    ("inactivity", "grace", "ping", "silence"),
    [
        (60.0, 30.0, 10.0, 30.0),  # the defaults: 30 s to notice, 30 s to resume
        (60.0, 0.0, 10.0, 60.0),  # no resume: the socket's silence is the whole timeout
        (8.0, 2.0, 2.0, 6.0),
        (60.0, 55.0, 10.0, 10.0 + MIN_PONG_WAIT),  # not enough left for a ping and its pong
    ],
)
def test_silence_plus_grace_is_the_inactivity_timeout(
    inactivity: float, grace: float, ping: float, silence: float
) -> None:
    settings = Settings(inactivity_timeout=inactivity, resume_grace=grace, ping_interval=ping)
    assert _silence_timeout(settings) == silence
    if silence > ping + MIN_PONG_WAIT:
        assert _silence_timeout(settings) + grace == inactivity


def test_edge_admits_until_a_cap_then_logs_refusals_at_most_every_ten_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    edge = Edge(EdgeLimits(max_connections=10, max_connections_per_ip=1))
    slot = edge.admit("192.0.2.1")
    assert not isinstance(slot, str)
    with caplog.at_level(logging.WARNING, logger="zvonok.edge"):
        assert edge.admit("192.0.2.1") == "max-connections-per-ip"
        assert edge.admit("192.0.2.1") == "max-connections-per-ip"
    assert len(caplog.records) == 1
    assert "max-connections-per-ip" in caplog.records[0].getMessage()
    slot.release()
    slot.release()  # once only
    assert edge.table.open == 0
    assert not isinstance(edge.admit("192.0.2.1"), str)


def test_trusted_proxies_are_not_capped_per_address_but_count_in_total() -> None:
    edge = Edge(EdgeLimits(max_connections=3, max_connections_per_ip=1, proxies=("10.0.0.0/8",)))
    assert not isinstance(edge.admit("10.1.2.3"), str)
    assert not isinstance(edge.admit("10.1.2.3"), str)
    assert not isinstance(edge.admit("::ffff:10.1.2.3"), str)
    assert edge.admit("10.1.2.3") == "max-connections"
