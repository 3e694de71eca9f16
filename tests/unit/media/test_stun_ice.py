"""ICE-lite: real aioice checks (tests/fixtures/stun), their malformed twins, the agent's state."""

from __future__ import annotations

import hmac
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
    HmacSha1,
    IceLiteAgent,
    IceParameters,
    StunMessage,
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
        StunMessage.parse(bytes(data))


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
        request = BindingRequest.parse(data)
    except ValueError:
        return
    # random bytes that parse are never an authenticated check
    agent = IceLiteAgent(LOCAL)
    with pytest.raises(ValueError):
        agent.handle(request, CLIENT_ADDR, now=0.0)
    assert agent.last_check is None and agent.selected is None


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=19), st.integers(0, 255))
def test_fuzz_corrupted_header_never_parses_as_the_check(position: int, value: int) -> None:
    original = fixture("aioice_binding_use_candidate")
    data = bytearray(original)
    data[position] = value
    # type, length, cookie and transaction id are all covered by the length check, the cookie
    # or FINGERPRINT: only the unchanged header parses
    try:
        BindingRequest.parse(bytes(data))
    except ValueError:
        assert bytes(data) != original
    else:
        assert bytes(data) == original


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=20, max_value=91), st.integers(0, 255))
def test_fuzz_corrupted_fixture(position: int, value: int) -> None:
    original = fixture("aioice_binding_use_candidate")
    data = bytearray(original)
    data[position] = value
    agent = IceLiteAgent(LOCAL)
    if bytes(data) == original:  # not corrupted after all: the real check is accepted
        outcome = agent.handle(BindingRequest.parse(original), CLIENT_ADDR, now=0.0)
        assert outcome.accepted and agent.nominated
        return
    # a corrupted check is never accepted: it fails to parse (fingerprint, lengths) or to
    # authenticate, and leaves the agent as it was
    with pytest.raises(ValueError):
        agent.handle(BindingRequest.parse(bytes(data)), CLIENT_ADDR, now=0.0)
    assert agent.last_check is None and agent.selected is None and not agent.nominated


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


def _aioice_view(data: bytes) -> tuple[object, ...] | None:
    """What aioice's codec (an independent implementation) makes of a binding request."""
    try:
        message = stun.parse_message(data)
    except Exception:
        return None
    attrs = message.attributes
    return (
        message.message_method,
        message.message_class,
        message.transaction_id,
        attrs.get("USERNAME"),
        attrs.get("PRIORITY"),
        "USE-CANDIDATE" in attrs,
        attrs.get("ICE-CONTROLLING"),
        attrs.get("ICE-CONTROLLED"),
        message.check_message_integrity(LOCAL.pwd.encode()),
    )


def _our_view(request: BindingRequest) -> tuple[object, ...]:
    return (
        stun.Method.BINDING,
        stun.Class.REQUEST,
        request.transaction_id,
        f"{request.local_ufrag}:{request.remote_ufrag}",
        request.priority,
        request.use_candidate,
        request.ice_controlling,
        request.ice_controlled,
        request.message.check_integrity(LOCAL.pwd.encode()),
    )


_requests = st.fixed_dictionaries(
    {
        "username": st.text(
            st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12
        ).map(lambda remote: f"zvnk:{remote}"),
        "priority": st.integers(0, 2**32 - 1),
        "use_candidate": st.booleans(),
        "controlling": st.none() | st.integers(0, 2**64 - 1),
        "controlled": st.none() | st.integers(0, 2**64 - 1),
        "software": st.none() | st.text(max_size=30),
        "pwd": st.sampled_from([LOCAL.pwd, "another-password-of-22-chars"]),
        "tid": st.binary(min_size=12, max_size=12),
    }
)


def _encode_with_aioice(fields: dict[str, object]) -> bytes:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, fields["tid"])  # type: ignore[arg-type]
    if fields["software"] is not None:
        message.attributes["SOFTWARE"] = fields["software"]
    message.attributes["USERNAME"] = fields["username"]
    message.attributes["PRIORITY"] = fields["priority"]
    if fields["use_candidate"]:
        message.attributes["USE-CANDIDATE"] = None
    if fields["controlling"] is not None:
        message.attributes["ICE-CONTROLLING"] = fields["controlling"]
    if fields["controlled"] is not None:
        message.attributes["ICE-CONTROLLED"] = fields["controlled"]
    message.add_message_integrity(str(fields["pwd"]).encode())
    return bytes(message)


@settings(max_examples=300, deadline=None)
@given(_requests)
def test_parser_agrees_with_aioice_on_encoded_requests(fields: dict[str, object]) -> None:
    """Every request aioice's encoder makes parses to the same fields and integrity verdict."""
    data = _encode_with_aioice(fields)
    assert _our_view(BindingRequest.parse(data)) == _aioice_view(data)


@settings(max_examples=500, deadline=None)
@given(_requests, st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3))
def test_parser_accepts_only_what_aioice_accepts(
    fields: dict[str, object], corruptions: list[tuple[int, int]]
) -> None:
    """Corrupted twins: whatever our parser accepts, aioice parses to the same fields (ours is
    the stricter of the two: an attribute running past the end or of the wrong size is refused)."""
    data = bytearray(_encode_with_aioice(fields))
    for position, value in corruptions:
        if position < len(data):
            data[position] = value
    try:
        request = BindingRequest.parse(bytes(data))
    except ValueError:
        return
    assert _our_view(request) == _aioice_view(bytes(data))


def _patch_length(data: bytes) -> bytes:
    return data[:2] + (len(data) - 20).to_bytes(2, "big") + data[4:]


def test_attribute_running_past_the_end_refused() -> None:
    data = make_request()
    # PRIORITY is the second attribute; claim its value is longer than what is left.
    truncated = _patch_length(data[:-8] + b"\x80\x22\x00\x40")
    with pytest.raises(ValueError, match="attribute 0x8022 runs past the message end"):
        BindingRequest.parse(truncated)


def test_wrong_size_priority_refused() -> None:
    body = b"\x00\x06\x00\x09zvnk:aioc\x00\x00\x00" + b"\x00\x24\x00\x02\x00\x01\x00\x00"
    header = b"\x00\x01" + len(body).to_bytes(2, "big") + stun.COOKIE.to_bytes(4, "big")
    with pytest.raises(ValueError, match="PRIORITY has 2 bytes, not 4"):
        BindingRequest.parse(header + bytes(12) + body)


def test_type_top_bits_refused() -> None:
    data = bytearray(make_request())
    data[0] |= 0x40
    with pytest.raises(ValueError, match="the type's top two bits are not zero"):
        BindingRequest.parse(bytes(data))


def test_non_utf8_username_refused() -> None:
    import zlib

    body = b"\x00\x06\x00\x06zv\xffk:a\x00\x00" + b"\x00\x24\x00\x04\x00\x00\x00\x01"
    body += b"\x00\x08\x00\x14" + bytes(20)  # MESSAGE-INTEGRITY (not checked while parsing)
    head = b"\x00\x01" + (len(body) + 8).to_bytes(2, "big") + stun.COOKIE.to_bytes(4, "big")
    message = head + bytes(12) + body
    crc = (zlib.crc32(message) ^ 0x5354554E).to_bytes(4, "big")
    with pytest.raises(ValueError, match="USERNAME is not UTF-8"):
        BindingRequest.parse(message + b"\x80\x28\x00\x04" + crc)


def test_attributes_after_integrity_are_ignored() -> None:
    """RFC 8489 §14.5: only FINGERPRINT may follow MESSAGE-INTEGRITY; anything else is not
    authenticated, so a USE-CANDIDATE appended by an attacker must not count."""
    data = make_request()
    forged = _patch_length(data + b"\x00\x25\x00\x00")
    request = BindingRequest.parse(forged)
    assert request.use_candidate is False
    request.verify(LOCAL.pwd)


@settings(max_examples=300)
@given(st.binary(max_size=200), st.binary(max_size=600))
def test_the_precomputed_mac_is_hmac_sha1(key: bytes, message: bytes) -> None:
    """``HmacSha1`` (padded-key states kept, for the consent checks) against the one-shot
    ``hmac.digest``, keys longer than a block included."""
    assert HmacSha1(key).digest(message) == hmac.digest(key, message, "sha1")
    mac = HmacSha1(key)
    assert mac.digest(message) == mac.digest(message)  # the kept states are not consumed


def test_responses_with_the_precomputed_mac_are_the_same_bytes() -> None:
    from zvonok.media.transport.ice import binding_error, binding_success

    request = MagicMock(transaction_id=bytes(range(12)))
    pwd = "pwd-pwd-pwd-pwd-pwd-pwd"
    mac = HmacSha1(pwd.encode())
    for addr in (("127.0.0.1", 50000), ("2001:db8::7", 65535)):
        assert binding_success(request, addr, mac) == binding_success(request, addr, pwd)
    assert binding_error(request, 487, "x", mac) == binding_error(request, 487, "x", pwd)
