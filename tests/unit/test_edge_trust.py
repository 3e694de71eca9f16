"""``zvonok.edge`` and the settings built on it: loopback names, Host/Origin rules, trusted proxies.

Also checks the app wiring without starting it: which development routes exist for a bind
address and ``dev_mode``, and that they carry the Host check (``create_app`` only declares routes;
nothing is built until its lifespan runs).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from zvonok.app import create_app
from zvonok.config import Settings
from zvonok.edge import DevHostPolicy, TrustedProxies, is_loopback_host, loggable, split_authority


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost.", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("198.18.0.1", False),
        ("my-laptop", False),
        ("localhost.example", False),
        ("sub.localhost", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_split_authority() -> None:
    assert split_authority("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert split_authority("LocalHost") == ("localhost", None)
    assert split_authority("[::1]:80") == ("::1", 80)
    for bad in ("", "a b", "user@host", "host/path", "host:99999", "host:x", ":80"):
        assert split_authority(bad) is None, bad


def test_extra_hosts_of_the_policy() -> None:
    policy = DevHostPolicy(["0.0.0.0", "198.18.0.1", "[2001:db8::1]", "Dev.Example"])
    assert policy.extra_hosts == {"198.18.0.1", "2001:db8::1", "dev.example"}
    assert policy.refusal("198.18.0.1:8080", "http://198.18.0.1:8080", "http") is None
    assert policy.refusal("dev.example", None, "http") is None
    assert policy.refusal("198.18.0.2:8080", None, "http") is not None
    assert policy.refusal("198.18.0.1:8080", "http://evil.example:8080", "http") is not None
    assert DevHostPolicy().refusal("198.18.0.1:8080", None, "http") is not None


def test_default_ports_of_origin_and_host() -> None:
    policy = DevHostPolicy()
    assert policy.refusal("localhost", "http://localhost:80", "http") is None
    assert policy.refusal("localhost:443", "https://localhost", "https") is None
    assert policy.refusal("localhost", "https://localhost", "http") is not None


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "client"),
    [
        # Nothing configured: the header is never read, whoever sends it.
        ("127.0.0.1", ["203.0.113.9"], [], "127.0.0.1"),
        # A configured proxy: its appended (right-most) entry is the client.
        ("127.0.0.1", ["203.0.113.9"], ["127.0.0.1"], "203.0.113.9"),
        # A client-supplied entry on the left does not count: the proxy's right-most one does.
        ("10.0.0.2", ["1.1.1.1, 203.0.113.9"], ["10.0.0.0/8"], "203.0.113.9"),
        # A chain of trusted proxies: skip them from the right.
        ("10.0.0.2", ["203.0.113.9, 10.0.0.7"], ["10.0.0.0/8"], "203.0.113.9"),
        # Several header lines are one list (RFC 9110 §5.3).
        ("10.0.0.2", ["1.1.1.1", "203.0.113.9, 10.0.0.3"], ["10.0.0.0/8"], "203.0.113.9"),
        # A peer that is not a proxy: its header is ignored.
        ("198.51.100.4", ["203.0.113.9"], ["10.0.0.0/8"], "198.51.100.4"),
        # Every hop trusted: the left-most.
        ("10.0.0.2", ["10.0.0.9, 10.0.0.8"], ["10.0.0.0/8"], "10.0.0.9"),
        # Garbage ends the walk at the proxy that passed it.
        ("10.0.0.2", ["junk, 10.0.0.5"], ["10.0.0.0/8"], "10.0.0.5"),
        ("10.0.0.2", ["203.0.113.9, junk"], ["10.0.0.0/8"], "10.0.0.2"),
        # Ports and IPv6 forms.
        ("::1", ["[2001:db8::5]:1234"], ["::1"], "2001:db8::5"),
        ("127.0.0.1", ["203.0.113.9:5555"], ["127.0.0.1/32"], "203.0.113.9"),
        ("127.0.0.1", ["2001:DB8:0::7"], ["127.0.0.1"], "2001:db8::7"),
        # No header from a proxy: the proxy itself.
        ("127.0.0.1", [], ["127.0.0.1"], "127.0.0.1"),
        ("?", ["203.0.113.9"], ["127.0.0.1"], "?"),
    ],
)
def test_client_ip(peer: str, header: list[str], trusted: list[str], client: str) -> None:
    assert TrustedProxies(trusted).client_ip(peer, header) == client


def test_loggable() -> None:
    assert loggable("plain text") == "plain text"
    assert loggable("a\r\nfake=line\x1b[31m\u2028") == "a\\r\\nfake=line\\x1b[31m\\u2028"
    assert loggable("x" * 300, limit=10) == "x" * 10 + "…"


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "enabled", "on_network"),
    [
        ({}, True, False),
        ({"host": "localhost"}, True, False),
        ({"host": "::1"}, True, False),
        ({"host": "0.0.0.0"}, False, False),
        ({"host": "198.18.0.1"}, False, False),
        ({"host": "0.0.0.0", "dev_mode": True}, True, True),
        ({"host": "127.0.0.1", "dev_mode": False}, False, False),
        ({"jwt_secret": "s" * 32}, False, False),
        ({"admin_token": "t" * 32}, True, False),
    ],
)
def test_dev_mode_rule(
    tmp_path: Path, values: dict[str, object], enabled: bool, on_network: bool
) -> None:
    settings = _settings(tmp_path, **values)
    assert settings.dev_enabled is enabled
    assert settings.dev_on_network is on_network


def test_forwarded_allow_ips_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings(tmp_path).forwarded_allow_ips == []
    monkeypatch.setenv("ZVONOK_FORWARDED_ALLOW_IPS", '["10.0.0.0/8", "::1"]')
    assert _settings(tmp_path).forwarded_allow_ips == ["10.0.0.0/8", "::1"]
    monkeypatch.setenv("ZVONOK_FORWARDED_ALLOW_IPS", '["proxy.internal"]')
    with pytest.raises(ValidationError, match="'proxy.internal' is not an IP address or CIDR"):
        _settings(tmp_path)


def _paths(settings: Settings) -> set[str]:
    return {getattr(route, "path", "") for route in create_app(settings).routes}


def test_no_dev_routes_on_a_network_bind(tmp_path: Path) -> None:
    dev = {"/dev/token", "/dev/join", "/debug/state"}
    assert dev <= _paths(_settings(tmp_path))
    assert not dev & _paths(_settings(tmp_path, host="0.0.0.0"))
    assert not dev & _paths(_settings(tmp_path, host="0.0.0.0", admin_token="t" * 32))
    assert dev <= _paths(_settings(tmp_path, host="0.0.0.0", dev_mode=True))


def test_debug_state_checks_the_host(tmp_path: Path) -> None:
    # No lifespan: a request that passed the check would fail; the refusal comes first.
    client = TestClient(create_app(_settings(tmp_path)), base_url="http://rebound.example:8080")
    response = client.get("/debug/state")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    response = client.get("/debug/state", headers={"Host": "127.0.0.1:8080", "Origin": "null"})
    assert response.status_code == 403


def test_explicit_dev_mode_allows_the_bind_and_announced_hosts(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        host="198.18.0.1",
        dev_mode=True,
        announce_ips=["198.18.0.2"],
        media_host="127.0.0.1",
        media_port=0,
    )
    with TestClient(create_app(settings), base_url="http://198.18.0.1:8080") as client:
        body = {"userId": "al"}
        assert "token" in client.post("/dev/token", json=body).json()
        for host in ("198.18.0.2:8080", "localhost:8080"):
            assert client.post("/dev/token", json=body, headers={"Host": host}).is_success
        assert client.get("/debug/state").json()["sessions"] == 0
        assert client.post("/dev/token", json=body, headers={"Host": "x.y"}).status_code == 403
        origin = {"Origin": "http://198.18.0.1:8080"}
        assert client.post("/dev/token", json=body, headers=origin).is_success
