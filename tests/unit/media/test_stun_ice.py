"""ICE-lite: real aioice checks (tests/fixtures/stun), their malformed twins, the agent's state."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import MagicMock

import pytest
from aioice import stun
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.media.transport.ice import (
    CONSENT_STALE_AFTER,
    ROLE_CONFLICT,
    BindingRequest,
    Consent,
    IceLiteAgent,
    IceParameters,
    parse_stun,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "stun"
LOCAL = IceParameters("zvnk", "zvonokfixturepassword1234")
CLIENT_ADDR = ("127.0.0.1", 52397)


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.bin").read_bytes()


def make_request(
    username: str = "zvnk:aioc",
    pwd: str = LOCAL.pwd,
    extra: dict[str, object] | None = None,
) -> bytes:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = 1862270975
    message.attributes.update(extra or {})
    message.add_message_integrity(pwd.encode())
    return bytes(message)


def test_parse_aioice_check() -> None:
    request = BindingRequest.parse(fixture("aioice_binding"))
    assert request.local_ufrag == "zvnk"
    assert request.remote_ufrag == "aioc"
    assert request.priority == 1862270975
    assert request.use_candidate is False
    assert request.ice_controlling is not None
    assert request.ice_controlled is None
    request.verify(LOCAL.pwd)
    assert "zvnk" in repr(request)


def test_parse_aioice_nomination() -> None:
    request = BindingRequest.parse(fixture("aioice_binding_use_candidate"))
    assert request.use_candidate is True
    request.verify(LOCAL.pwd)


CHROMIUM = IceParameters("7ERHO90Z", "MvjdzZFRuodcQqb6dLmHPlEWFQ4tpJCR")


@pytest.mark.parametrize(
    ("name", "use_candidate"),
    [("chromium_binding", False), ("chromium_binding_use_candidate", True)],
)
def test_chromium_checks(name: str, use_candidate: bool) -> None:
    request = BindingRequest.parse(fixture(name))
    assert (request.local_ufrag, request.remote_ufrag) == ("7ERHO90Z", "mWPS")
    assert request.priority == 1845501695 and request.use_candidate is use_candidate
    assert request.ice_controlling == 1801652633121339988 and request.ice_controlled is None
    agent = IceLiteAgent(CHROMIUM)
    outcome = agent.handle(request, ("127.0.0.1", 50000), now=0.0)
    response = stun.parse_message(outcome.response)
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("127.0.0.1", 50000)
    assert response.check_message_integrity(CHROMIUM.pwd.encode())
    assert agent.nominated is use_candidate
    with pytest.raises(ValueError, match="MESSAGE-INTEGRITY does not verify"):
        request.verify(LOCAL.pwd)


def test_success_response_has_mapped_address_and_integrity() -> None:
    agent = IceLiteAgent(LOCAL)
    request = BindingRequest.parse(fixture("aioice_binding"))
    outcome = agent.handle(request, CLIENT_ADDR, now=1.0)
    assert outcome.accepted
    response = stun.parse_message(outcome.response)  # also checks FINGERPRINT
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == CLIENT_ADDR
    assert response.check_message_integrity(LOCAL.pwd.encode())
    assert "FINGERPRINT" in response.attributes


def test_truncated_twin_refused() -> None:
    with pytest.raises(ValueError, match="malformed STUN message: STUN message length does not"):
        BindingRequest.parse(fixture("aioice_binding_truncated"))
    with pytest.raises(ValueError, match="STUN message truncated: 10 bytes"):
        BindingRequest.parse(fixture("aioice_binding")[:10])


def test_bad_fingerprint_twin_refused() -> None:
    with pytest.raises(ValueError, match="STUN message fingerprint does not match"):
        BindingRequest.parse(fixture("aioice_binding_bad_fingerprint"))


def test_bad_integrity_twin_refused() -> None:
    request = BindingRequest.parse(fixture("aioice_binding_bad_integrity"))
    with pytest.raises(ValueError, match="STUN MESSAGE-INTEGRITY does not verify"):
        IceLiteAgent(LOCAL).handle(request, CLIENT_ADDR, now=0.0)


def test_wrong_username_twin_refused() -> None:
    request = BindingRequest.parse(fixture("aioice_binding_wrong_username"))
    assert request.local_ufrag == "nope"
    with pytest.raises(ValueError, match="STUN USERNAME names unknown local ufrag 'nope'"):
        IceLiteAgent(LOCAL).handle(request, CLIENT_ADDR, now=0.0)


def test_wrong_password_refused() -> None:
    request = BindingRequest.parse(fixture("aioice_binding"))
    with pytest.raises(ValueError, match="MESSAGE-INTEGRITY does not verify"):
        request.verify("another-password-of-22-chars")


def test_bad_cookie_refused() -> None:
    data = bytearray(fixture("aioice_binding"))
    data[4] ^= 0xFF
    with pytest.raises(ValueError, match="STUN magic cookie is wrong"):
        parse_stun(bytes(data))


@pytest.mark.parametrize(
    ("message_class", "reason"),
    [
        (stun.Class.RESPONSE, "STUN class RESPONSE is not REQUEST"),
        (stun.Class.INDICATION, "STUN class INDICATION is not REQUEST"),
    ],
)
def test_non_requests_refused(message_class: stun.Class, reason: str) -> None:
    message = stun.Message(stun.Method.BINDING, message_class)
    message.add_fingerprint()
    with pytest.raises(ValueError, match=reason):
        BindingRequest.parse(bytes(message))


def test_other_method_refused() -> None:
    message = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
    with pytest.raises(ValueError, match="STUN method ALLOCATE is not BINDING"):
        BindingRequest.parse(bytes(message))


@pytest.mark.parametrize("missing", ["USERNAME", "PRIORITY", "MESSAGE-INTEGRITY", "FINGERPRINT"])
def test_missing_attributes_refused(missing: str) -> None:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    if missing != "USERNAME":
        message.attributes["USERNAME"] = "zvnk:aioc"
    if missing != "PRIORITY":
        message.attributes["PRIORITY"] = 1
    if missing == "FINGERPRINT":
        message.attributes["MESSAGE-INTEGRITY"] = bytes(20)
    elif missing == "MESSAGE-INTEGRITY":
        message.add_fingerprint()
    else:
        message.add_message_integrity(LOCAL.pwd.encode())
    with pytest.raises(ValueError, match=f"STUN binding request has no {missing}"):
        BindingRequest.parse(bytes(message))


def test_username_without_colon_refused() -> None:
    with pytest.raises(ValueError, match="STUN USERNAME 'zvnkaioc' is not 'local:remote'"):
        BindingRequest.parse(make_request(username="zvnkaioc"))


def test_role_conflict_gets_487() -> None:
    agent = IceLiteAgent(LOCAL)
    request = BindingRequest.parse(make_request(extra={"ICE-CONTROLLED": 1234}))
    outcome = agent.handle(request, CLIENT_ADDR, now=0.0)
    assert not outcome.accepted
    response = stun.parse_message(outcome.response)
    assert response.message_class == stun.Class.ERROR
    assert response.error_code == ROLE_CONFLICT
    assert response.check_message_integrity(LOCAL.pwd.encode())
    assert agent.last_check is None and agent.selected is None


def test_nomination_and_address_migration() -> None:
    agent = IceLiteAgent(LOCAL)
    plain = BindingRequest.parse(make_request())
    nominate = BindingRequest.parse(make_request(extra={"USE-CANDIDATE": None}))
    agent.handle(plain, ("127.0.0.1", 1000), now=0.0)
    assert agent.selected == ("127.0.0.1", 1000) and not agent.nominated
    agent.handle(plain, ("127.0.0.1", 2000), now=0.1)  # a check alone does not move it
    assert agent.selected == ("127.0.0.1", 1000)
    agent.handle(nominate, ("127.0.0.1", 2000), now=0.2)
    assert agent.selected == ("127.0.0.1", 2000) and agent.nominated
    agent.handle(nominate, ("127.0.0.2", 3000), now=0.3)  # migration
    assert agent.selected == ("127.0.0.2", 3000)


def test_restart_keeps_old_credentials_until_new_used() -> None:
    agent = IceLiteAgent(LOCAL)
    new = agent.restart()
    assert new != LOCAL and agent.local == new
    assert agent.local_ufrags() == [new.ufrag, LOCAL.ufrag]
    old_check = BindingRequest.parse(make_request())
    assert agent.handle(old_check, CLIENT_ADDR, now=0.0).retired_ufrag is None
    new_check = BindingRequest.parse(make_request(f"{new.ufrag}:peer", new.pwd))
    outcome = agent.handle(new_check, CLIENT_ADDR, now=1.0)
    assert outcome.retired_ufrag == LOCAL.ufrag
    assert agent.local_ufrags() == [new.ufrag]
    with pytest.raises(ValueError, match="unknown local ufrag 'zvnk'"):
        agent.handle(old_check, CLIENT_ADDR, now=2.0)


def test_double_restart_keeps_the_credentials_the_peer_uses() -> None:
    agent = IceLiteAgent(LOCAL)
    agent.restart()
    latest = agent.restart()
    assert agent.local_ufrags() == [latest.ufrag, LOCAL.ufrag]


def test_consent_freshness() -> None:
    agent = IceLiteAgent(LOCAL, consent_timeout=30.0)
    assert agent.consent(0.0) is Consent.NONE
    agent.handle(BindingRequest.parse(make_request()), CLIENT_ADDR, now=10.0)
    assert agent.consent(10.0 + CONSENT_STALE_AFTER - 0.1) is Consent.FRESH
    assert agent.consent(10.0 + CONSENT_STALE_AFTER) is Consent.STALE
    assert agent.consent(40.0) is Consent.EXPIRED


def test_remote_parameters_and_validation() -> None:
    agent = IceLiteAgent(LOCAL)
    agent.set_remote(IceParameters("abcd", "x" * 22))
    assert agent.remote is not None and agent.remote.ufrag == "abcd"
    with pytest.raises(ValueError, match="ICE ufrag 'abc' is not 4-256 ice-chars"):
        IceParameters("abc", "x" * 22)
    with pytest.raises(ValueError, match="ICE ufrag 'ab:cd' is not 4-256 ice-chars"):
        IceParameters("ab:cd", "x" * 22)
    with pytest.raises(ValueError, match="ICE pwd is not 22-256 ice-chars"):
        IceParameters("abcd", "x" * 21)
    generated = IceParameters.generate()
    assert len(generated.ufrag) == 8 and len(generated.pwd) == 32


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_parse_only_raises_value_error(data: bytes) -> None:
    try:
        BindingRequest.parse(data)
    except ValueError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=20, max_value=91), st.integers(0, 255))
def test_fuzz_corrupted_fixture(position: int, value: int) -> None:
    data = bytearray(fixture("aioice_binding_use_candidate"))
    data[position] = value
    try:
        request = BindingRequest.parse(bytes(data))
        IceLiteAgent(LOCAL).handle(request, CLIENT_ADDR, now=0.0)
    except ValueError:
        pass


@pytest.mark.parametrize(
    "addr", [("127.0.0.1", 50000), ("192.0.2.1", 1), ("::1", 443), ("2001:db8::7", 65535)]
)
def test_responses_are_byte_equal_to_aioices_encoder(addr: tuple[str, int]) -> None:
    """Our raw-bytes encoder against aioice's generic one (an independent implementation)."""
    from zvonok.media.transport.ice import binding_error, binding_success

    aioice_stun = stun
    tid = bytes(range(12))
    request = MagicMock(transaction_id=tid)
    expected = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.RESPONSE, tid, {})
    expected.attributes["XOR-MAPPED-ADDRESS"] = addr
    expected.add_message_integrity(b"pwd-pwd-pwd-pwd-pwd-pwd")
    assert binding_success(request, addr, "pwd-pwd-pwd-pwd-pwd-pwd") == bytes(expected)
    error = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.ERROR, tid, {})
    error.attributes["ERROR-CODE"] = (487, "Role Conflict")
    error.add_message_integrity(b"secret")
    assert binding_error(request, 487, "Role Conflict", "secret") == bytes(error)
    parsed = aioice_stun.parse_message(binding_success(request, addr, "k"))
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == addr
    assert parsed.check_message_integrity(b"k") and not parsed.check_message_integrity(b"x")
