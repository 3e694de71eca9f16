"""TURN REST credentials (auth/turn.py): the username/password format against vectors computed
independently (``openssl dgst -sha1 -hmac``, and the standard library in the test), expiry
arithmetic on an injected clock, URL parsing, the start-up validation of the settings, and
``joined`` carrying a fresh credential per join and per resume.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import ValidationError

from zvonok.auth.turn import (
    DEFAULT_TTL,
    IceServers,
    TurnCredentials,
    TurnUrl,
    check_turn_settings,
    ice_servers_from,
    turn_credential,
)
from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.config import Settings
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.service import RoomService

from .fakes import RecordingSink

SECRET = "north-gov-secret"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- the credential -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "user", "expires", "password"),
    [
        # printf %s 1700000000:alice | openssl dgst -sha1 -hmac north-gov-secret -binary | base64
        (SECRET, "alice", 1700000000, "toxDfB1+MY1bMK86kb0I3yCvv7E="),
        # a user id with colons: coturn takes the timestamp before the first separator
        ("logen", "bob:with:colons", 1433895918, "mfB0L8TOi3TKjnjutiC6K99Wz+4="),
    ],
)
def test_credential_matches_openssl(secret: str, user: str, expires: int, password: str) -> None:
    assert turn_credential(secret, user, expires) == (f"{expires}:{user}", password)


def test_credential_matches_the_standard_library() -> None:
    username, password = turn_credential("s3cr3t-ключ", "пользователь", 1234567890)
    assert username == "1234567890:пользователь"
    mac = hmac.new("s3cr3t-ключ".encode(), username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(password) == mac and len(mac) == 20


def test_ice_server_expires_ttl_after_now_on_the_injected_clock() -> None:
    clock = Clock(1_700_000_000.9)
    turn = TurnCredentials(["turn:turn.example:3478"], SECRET, ttl=600, clock=clock)
    entry = turn.ice_server(UserId("alice"))
    assert entry["urls"] == ["turn:turn.example:3478"]
    assert entry["username"] == "1700000600:alice"
    assert entry["credential"] == turn_credential(SECRET, "alice", 1_700_000_600)[1]
    clock.now += 61
    assert turn.ice_server(UserId("alice"))["username"] == "1700000661:alice"


def test_default_ttl_is_a_day_and_the_secret_is_not_in_repr() -> None:
    turn = TurnCredentials(["turns:turn.example:443?transport=tcp"], SECRET, clock=Clock(0))
    assert turn.ttl == DEFAULT_TTL == 86400
    assert turn.ice_server(UserId("u"))["username"] == "86400:u"
    assert SECRET not in repr(turn)


def test_ice_servers_keeps_static_entries_and_adds_turn_per_user() -> None:
    stun = {"urls": ["stun:stun.example:3478"]}
    servers = IceServers([stun], TurnCredentials(["turn:t.example"], SECRET, clock=Clock(100)))
    alice, bob = servers(UserId("alice")), servers(UserId("bob"))
    assert alice[0] == stun and bob[0] == stun
    assert alice[1]["username"] == "86500:alice" and bob[1]["username"] == "86500:bob"
    alice[0]["urls"] = "changed"  # the caller's copy; the next join gets the configured one
    assert servers(UserId("alice"))[0] == stun
    assert IceServers([stun])(UserId("alice")) == [stun]
    assert ice_servers_from([stun], ["turn:t.example"], None)(UserId("a")) == [stun]


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("turn:turn.example", TurnUrl("turn", "turn.example", 3478, None)),
        ("turns:turn.example", TurnUrl("turns", "turn.example", 5349, None)),
        ("turn:127.0.0.1:3479?transport=udp", TurnUrl("turn", "127.0.0.1", 3479, "udp")),
        ("turns:turn.example:443?transport=tcp", TurnUrl("turns", "turn.example", 443, "tcp")),
        ("TURN:[::1]:3478?transport=TCP", TurnUrl("turn", "::1", 3478, "tcp")),
    ],
)
def test_turn_urls_parse(text: str, parsed: TurnUrl) -> None:
    assert TurnUrl.parse(text) == parsed


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("stun:turn.example", "the scheme must be 'turn' or 'turns'"),
        ("https://turn.example", "not a TURN URL"),
        ("turn:", "is not a host name"),
        ("turn:user@turn.example", "is not a host name"),
        ("turn:turn.example:0", "the port must be 1-65535"),
        ("turn:turn.example:99999", "the port must be 1-65535"),
        ("turn:turn.example:x", "the port must be 1-65535"),
        ("turn:turn.example?transport=sctp", "?transport=udp or tcp"),
        ("turn:turn.example?foo=bar", "?transport=udp or tcp"),
        ("turn:[nope]:3478", "is not an IPv6 address"),
        ("turn:turn.example/path", "not a TURN URL"),
    ],
)
def test_bad_turn_urls_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        TurnUrl.parse(text)
    assert why in str(caught.value)


# --- settings -------------------------------------------------------------------------------


def test_settings_accept_turn_and_hide_the_secret() -> None:
    settings = Settings(turn_urls=["turn:turn.example:3478"], turn_secret=SECRET, turn_ttl=3600)
    assert settings.turn_ttl == 3600
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert Settings().turn_ttl == DEFAULT_TTL and Settings().turn_urls == []


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZVONOK_TURN_URLS", '["turn:127.0.0.1:3478?transport=udp"]')
    monkeypatch.setenv("ZVONOK_TURN_SECRET", SECRET)
    monkeypatch.setenv("ZVONOK_TURN_TTL", "600")
    settings = Settings()
    assert settings.turn_urls == ["turn:127.0.0.1:3478?transport=udp"]
    assert settings.turn_secret == SECRET and settings.turn_ttl == 600


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"turn_urls": ["turn:t.example"]}, "have no turn_secret"),
        ({"turn_secret": SECRET}, "turn_urls is empty"),
        ({"turn_urls": ["http://t.example"], "turn_secret": SECRET}, "not a TURN URL"),
        ({"turn_urls": ["turn:t.example"], "turn_secret": "two words"}, "without whitespace"),
        ({"turn_urls": ["turn:t.example"], "turn_secret": SECRET, "turn_ttl": 0}, "greater"),
        (
            {
                "turn_urls": ["turn:t.example", "turns:t.example:443"],
                "ice_servers": [{"urls": ["turn:t.example"], "username": "u", "credential": "p"}],
            },
            "['turns:t.example:443'] have no turn_secret",
        ),
    ],
)
def test_settings_refuse_turn_that_cannot_work(kwargs: dict[str, object], why: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**kwargs)  # type: ignore[arg-type]
    assert why in str(caught.value)
    assert SECRET not in str(caught.value) and "two words" not in str(caught.value)


def test_turn_urls_with_static_credentials_need_no_secret() -> None:
    static = [{"urls": "turn:t.example", "username": "u", "credential": "p"}]
    check_turn_settings(["turn:t.example"], None, static)
    Settings(turn_urls=["turn:t.example"], ice_servers=static)


# --- joined ---------------------------------------------------------------------------------


async def test_joined_carries_a_fresh_credential_per_join_and_resume(worker: MediaWorker) -> None:
    clock = Clock(1_000_000)
    stun = {"urls": ["stun:127.0.0.1:3478"]}
    turn = TurnCredentials(["turn:127.0.0.1:3478"], SECRET, ttl=100, clock=clock)
    rooms = RoomService(
        worker=worker,
        sessions=LocalSessionDirectory(),
        rooms=LocalRoomDirectory(),
        ice_servers=IceServers([stun], turn),
    )
    room = RoomKey(RoomKind.CHAT, "1")
    first, second = RecordingSink(), RecordingSink()
    await rooms.join(room, UserId("alice"), SessionId("a"), 1, first)
    clock.now += 50
    _, resumed = await rooms.join(room, UserId("alice"), SessionId("a"), 1, second)
    assert resumed
    for sink, expires in ((first, 1_000_100), (second, 1_000_150)):
        kind, payload = sink.sent[0]
        assert kind == "joined" and payload is not None
        username, password = turn_credential(SECRET, "alice", expires)
        assert payload["iceServers"] == [
            stun,
            {"urls": ["turn:127.0.0.1:3478"], "username": username, "credential": password},
        ]
    await rooms.close()
