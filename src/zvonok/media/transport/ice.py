"""ICE-lite for one WebRTC session: STUN binding checks, nomination, consent, ICE restart.

Owns: ``IceParameters`` (RFC 8445 §5.3), ``BindingRequest`` (a parsed, not yet authenticated
connectivity check), the STUN responses we send, and ``IceLiteAgent``, the per-session state of a
lite agent (RFC 8445 §2.5, §7.3): it answers checks, follows USE-CANDIDATE to select the peer's
address (address migration included), tracks consent freshness (RFC 7675) and ICE restarts
(RFC 8445 §9, RFC 8839 §4.4.1.1.1). STUN (RFC 8489 §5, §14) is parsed and encoded here on raw
bytes, only as far as ICE needs it: every session's consent checks arrive every few seconds, so
this is a hot path of an idle server (the tests check it against aioice's codec, byte for byte
and field for field). No I/O and no timers here: the transport sends, the worker tick
evaluates consent.
Must not import anything from zvonok outside ``zvonok.media``.

Policy on bad checks: a request whose MESSAGE-INTEGRITY (or FINGERPRINT, USERNAME) fails is
dropped silently instead of answered with 401 (RFC 8445 §7.3 allows it): an unauthenticated
answer would let a spoofer use the media port as a reflector. ``ValueError`` carries the reason.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import socket
import string
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

from .address import canonical_address

Address = tuple[str, int]

#: RFC 8445 §5.3 / RFC 8839 §5.4: ice-char = ALPHA / DIGIT / "+" / "/".
ICE_CHARS = frozenset(string.ascii_letters + string.digits + "+/")
#: What we generate (alphanumerics only: safe in USERNAME and in SDP).
_GENERATED_CHARS = string.ascii_letters + string.digits

#: RFC 8445 §7.3.1.1: 487 Role Conflict.
ROLE_CONFLICT = 487
#: A session is DISCONNECTED when no valid check arrived for this long. Browsers send consent
#: checks every 2.5 s (Chrome) or every 4-6 s (Firefox, RFC 7675 §5.1 randomisation); 8 s means
#: at least one check was really missed, without flapping on Firefox's slowest interval.
CONSENT_STALE_AFTER = 8.0


class HmacSha1:
    """HMAC-SHA1 (RFC 2104) under one key, its padded-key states computed once: each MAC is two
    hash-state copies, instead of a one-shot ``hmac.digest`` that looks the algorithm up and keys
    it again on every call. A session's consent checks (every few seconds each, on an idle
    server always cold) are verified and answered with its one local ``pwd``."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # the SHA-1 block size
            key = hashlib.sha1(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha1(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha1(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@dataclass(frozen=True, slots=True)
class IceParameters:
    """One side's ICE credentials (``a=ice-ufrag`` / ``a=ice-pwd``)."""

    ufrag: str
    pwd: str

    def __post_init__(self) -> None:
        if not 4 <= len(self.ufrag) <= 256 or not ICE_CHARS.issuperset(self.ufrag):
            raise ValueError(f"ICE ufrag {self.ufrag!r} is not 4-256 ice-chars")
        if not 22 <= len(self.pwd) <= 256 or not ICE_CHARS.issuperset(self.pwd):
            raise ValueError("ICE pwd is not 22-256 ice-chars")

    @classmethod
    def generate(cls) -> IceParameters:
        """Fresh random credentials: 8-char ufrag, 32-char pwd (≥128 bits of entropy)."""

        def pick(n: int) -> str:
            return "".join(secrets.choice(_GENERATED_CHARS) for _ in range(n))

        return cls(pick(8), pick(32))


#: RFC 8489 §5: the magic cookie, the header (type, length, cookie, transaction id).
STUN_COOKIE = 0x2112A442
STUN_HEADER_LENGTH = 20
_STUN_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
#: RFC 8489 §5: method bits of the message type, and its class bits.
_METHOD_MASK = 0x3EEF
_CLASS_MASK = 0x0110
_BINDING = 0x0001
_REQUEST = 0x0000
_CLASS_NAMES = {0x0000: "REQUEST", 0x0010: "INDICATION", 0x0100: "RESPONSE", 0x0110: "ERROR"}
#: RFC 8489 §18.2 and RFC 8656 §18: the registered methods, for a clear refusal.
_METHOD_NAMES = {
    0x001: "BINDING",
    0x002: "SHARED_SECRET",
    0x003: "ALLOCATE",
    0x004: "REFRESH",
    0x006: "SEND",
    0x007: "DATA",
    0x008: "CREATE_PERMISSION",
    0x009: "CHANNEL_BIND",
}
_BINDING_SUCCESS = _BINDING | 0x0100
_BINDING_ERROR = _BINDING | 0x0110
# Attribute types (RFC 8489 §18.3, RFC 8445 §16.1).
_USERNAME = 0x0006
_MESSAGE_INTEGRITY = 0x0008
_ERROR_CODE = 0x0009
_XOR_MAPPED_ADDRESS = 0x0020
_PRIORITY = 0x0024
_USE_CANDIDATE = 0x0025
_FINGERPRINT = 0x8028
_ICE_CONTROLLED = 0x8029
_ICE_CONTROLLING = 0x802A
_FINGERPRINT_XOR = 0x5354554E
_ATTR_NAMES = {
    _USERNAME: "USERNAME",
    _MESSAGE_INTEGRITY: "MESSAGE-INTEGRITY",
    _PRIORITY: "PRIORITY",
    _FINGERPRINT: "FINGERPRINT",
    _ICE_CONTROLLED: "ICE-CONTROLLED",
    _ICE_CONTROLLING: "ICE-CONTROLLING",
}
#: Value sizes of the fixed-size attributes we read.
_FIXED_SIZES = {
    _MESSAGE_INTEGRITY: 20,
    _PRIORITY: 4,
    _FINGERPRINT: 4,
    _ICE_CONTROLLED: 8,
    _ICE_CONTROLLING: 8,
}


class StunMessage:
    """A STUN message (RFC 8489 §5, §14) read on raw bytes: the header, and the attributes an
    ICE check uses — every other attribute is skipped, and those after MESSAGE-INTEGRITY (except
    FINGERPRINT) are ignored, as RFC 8489 §14.5 requires. FINGERPRINT is checked while parsing;
    MESSAGE-INTEGRITY by ``check_integrity`` once the key is known."""

    __slots__ = ("method", "message_class", "transaction_id", "attributes", "_data", "_mi_at")

    def __init__(
        self,
        method: int,
        message_class: int,
        transaction_id: bytes,
        attributes: dict[int, bytes],
        data: bytes,
        mi_at: int,
    ) -> None:
        self.method = method
        self.message_class = message_class
        self.transaction_id = transaction_id
        #: Attribute type -> value (the last of a repeated type), authenticated part only.
        self.attributes = attributes
        self._data = data
        self._mi_at = mi_at  # offset of the MESSAGE-INTEGRITY attribute, -1 if none

    @property
    def method_name(self) -> str:
        """The method's registered name, or its number."""
        return _METHOD_NAMES.get(self.method, f"0x{self.method:03x}")

    @property
    def class_name(self) -> str:
        """REQUEST, INDICATION, RESPONSE or ERROR."""
        return _CLASS_NAMES[self.message_class]

    def check_integrity(self, key: bytes | HmacSha1) -> bool:
        """MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1 over the message up to the attribute,
        the header's length counting up to the attribute's end. False when there is none."""
        at = self._mi_at
        if at < 0:
            return False
        data = self._data
        covered = data[:2] + (at + 24 - STUN_HEADER_LENGTH).to_bytes(2, "big") + data[4:at]
        if isinstance(key, HmacSha1):
            expected = key.digest(covered)
        else:
            expected = hmac.digest(key, covered, "sha1")
        return hmac.compare_digest(expected, data[at + 4 : at + 24])

    @classmethod
    def parse(cls, data: bytes) -> StunMessage:
        """Parse one STUN message; ``ValueError`` with the reason otherwise."""
        size = len(data)
        if size < STUN_HEADER_LENGTH:
            raise ValueError(f"STUN message truncated: {size} bytes, header needs 20")
        message_type, length, cookie, transaction_id = _STUN_HEADER.unpack_from(data)
        if cookie != STUN_COOKIE:
            raise ValueError("STUN magic cookie is wrong")
        if message_type & 0xC000:
            raise ValueError("malformed STUN message: the type's top two bits are not zero")
        if size != STUN_HEADER_LENGTH + length:
            raise ValueError(
                f"malformed STUN message: STUN message length does not match "
                f"({length} in the header, {size - STUN_HEADER_LENGTH} after it)"
            )
        attributes: dict[int, bytes] = {}
        mi_at = -1
        pos = STUN_HEADER_LENGTH
        while pos <= size - 4:
            kind, value_length = _ATTR_HEADER.unpack_from(data, pos)
            start = pos + 4
            end = start + value_length
            if end > size:
                raise ValueError(
                    f"malformed STUN message: attribute 0x{kind:04x} runs past the message end"
                )
            if mi_at < 0 or kind == _FINGERPRINT:
                fixed = _FIXED_SIZES.get(kind)
                if fixed is not None and value_length != fixed:
                    raise ValueError(
                        f"malformed STUN message: {_ATTR_NAMES[kind]} has {value_length} bytes, "
                        f"not {fixed}"
                    )
                value = data[start:end]
                if kind == _FINGERPRINT:
                    crc = zlib.crc32(data[:2])
                    crc = zlib.crc32((pos + 8 - STUN_HEADER_LENGTH).to_bytes(2, "big"), crc)
                    crc = zlib.crc32(memoryview(data)[4:pos], crc)
                    if _U32.unpack(value)[0] != crc ^ _FINGERPRINT_XOR:
                        raise ValueError("STUN message fingerprint does not match")
                elif kind == _MESSAGE_INTEGRITY:
                    mi_at = pos
                attributes[kind] = value
            pos = end + (-value_length % 4)
        return cls(
            message_type & _METHOD_MASK,
            message_type & _CLASS_MASK,
            transaction_id,
            attributes,
            data,
            mi_at,
        )


class BindingRequest:
    """A connectivity check as received: parsed and fingerprinted, not yet authenticated."""

    __slots__ = (
        "local_ufrag",
        "remote_ufrag",
        "priority",
        "use_candidate",
        "ice_controlling",
        "ice_controlled",
        "message",
    )

    def __init__(
        self,
        *,
        local_ufrag: str,
        remote_ufrag: str,
        priority: int,
        use_candidate: bool,
        ice_controlling: int | None,
        ice_controlled: int | None,
        message: StunMessage,
    ) -> None:
        self.local_ufrag = local_ufrag
        self.remote_ufrag = remote_ufrag
        self.priority = priority
        self.use_candidate = use_candidate
        self.ice_controlling = ice_controlling
        self.ice_controlled = ice_controlled
        self.message = message

    def __repr__(self) -> str:
        return (
            f"BindingRequest(local_ufrag={self.local_ufrag!r}, remote_ufrag={self.remote_ufrag!r}"
            f", priority={self.priority}, use_candidate={self.use_candidate}, "
            f"ice_controlling={self.ice_controlling}, ice_controlled={self.ice_controlled})"
        )

    @classmethod
    def parse(cls, data: bytes) -> BindingRequest:
        """Parse an ICE binding request (RFC 8445 §7.1.1, §7.2.2); ``ValueError`` otherwise."""
        message = StunMessage.parse(data)
        if message.method != _BINDING:
            raise ValueError(f"STUN method {message.method_name} is not BINDING")
        if message.message_class != _REQUEST:
            raise ValueError(f"STUN class {message.class_name} is not REQUEST")
        attrs = message.attributes
        for kind in (_USERNAME, _MESSAGE_INTEGRITY, _FINGERPRINT, _PRIORITY):
            if kind not in attrs:
                raise ValueError(f"STUN binding request has no {_ATTR_NAMES[kind]}")
        try:
            username = attrs[_USERNAME].decode()
        except UnicodeDecodeError:
            raise ValueError("malformed STUN message: USERNAME is not UTF-8") from None
        local, sep, remote = username.partition(":")
        if not sep or not local or not remote:
            raise ValueError(f"STUN USERNAME {username!r} is not 'local:remote'")
        controlling = attrs.get(_ICE_CONTROLLING)
        controlled = attrs.get(_ICE_CONTROLLED)
        return cls(
            local_ufrag=local,
            remote_ufrag=remote,
            priority=_U32.unpack(attrs[_PRIORITY])[0],
            use_candidate=_USE_CANDIDATE in attrs,
            ice_controlling=None if controlling is None else _U64.unpack(controlling)[0],
            ice_controlled=None if controlled is None else _U64.unpack(controlled)[0],
            message=message,
        )

    def verify(self, pwd: str | HmacSha1) -> None:
        """Check MESSAGE-INTEGRITY with our local ``pwd`` (RFC 8489 §14.5)."""
        key = pwd if isinstance(pwd, HmacSha1) else pwd.encode()
        if not self.message.check_integrity(key):
            raise ValueError("STUN MESSAGE-INTEGRITY does not verify")

    @property
    def transaction_id(self) -> bytes:
        """The 96-bit transaction id the response must echo."""
        return self.message.transaction_id


def _attribute(kind: int, value: bytes) -> bytes:
    return _ATTR_HEADER.pack(kind, len(value)) + value + bytes(-len(value) % 4)


def _encode(
    message_type: int, transaction_id: bytes, attributes: bytes, pwd: str | HmacSha1
) -> bytes:
    """A STUN message with MESSAGE-INTEGRITY (RFC 8489 §14.5: HMAC-SHA1 over the message with the
    length counting up to it) and FINGERPRINT (§14.7: CRC-32 xor 0x5354554e), on raw bytes —
    the answer to every consent check, so kept cheaper than a generic encoder."""
    length = len(attributes) + 24
    head = _STUN_HEADER.pack(message_type, length, STUN_COOKIE, transaction_id) + attributes
    if isinstance(pwd, HmacSha1):
        mac = pwd.digest(head)
    else:
        mac = hmac.digest(pwd.encode(), head, "sha1")
    body = head[20:] + _ATTR_HEADER.pack(_MESSAGE_INTEGRITY, 20) + mac
    message = _STUN_HEADER.pack(message_type, length + 8, STUN_COOKIE, transaction_id) + body
    crc = (zlib.crc32(message) ^ _FINGERPRINT_XOR) & 0xFFFF_FFFF
    return message + _ATTR_HEADER.pack(_FINGERPRINT, 4) + crc.to_bytes(4, "big")


_XOR_PORT = STUN_COOKIE >> 16
_COOKIE_BYTES = STUN_COOKIE.to_bytes(4, "big")


def _xor_mapped_address(addr: Address, transaction_id: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS (RFC 8489 §14.2) of an IPv4 or IPv6 peer; an IPv4 peer of a dual-stack
    socket (``::ffff:a.b.c.d``) gets its IPv4 address, family 0x01, as it sent from it."""
    host, port = canonical_address(addr)
    port ^= _XOR_PORT
    if ":" in host:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
        mask = int.from_bytes(_COOKIE_BYTES + transaction_id, "big")
        xored = (int.from_bytes(packed, "big") ^ mask).to_bytes(16, "big")
        head = b"\x00\x02" + port.to_bytes(2, "big")
    else:
        packed = socket.inet_aton(host)
        xored = (int.from_bytes(packed, "big") ^ STUN_COOKIE).to_bytes(4, "big")
        head = b"\x00\x01" + port.to_bytes(2, "big")
    return _attribute(_XOR_MAPPED_ADDRESS, head + xored)


def binding_success(request: BindingRequest, addr: Address, pwd: str | HmacSha1) -> bytes:
    """Success response (RFC 8445 §7.3.1.3): XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT."""
    tid = request.transaction_id
    return _encode(_BINDING_SUCCESS, tid, _xor_mapped_address(addr, tid), pwd)


def binding_error(request: BindingRequest, code: int, reason: str, pwd: str | HmacSha1) -> bytes:
    """Authenticated error response (e.g. 487 Role Conflict, RFC 8445 §7.3.1.1)."""
    value = struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()
    return _encode(_BINDING_ERROR, request.transaction_id, _attribute(_ERROR_CODE, value), pwd)


class Consent(enum.Enum):
    """Consent freshness of a session (RFC 7675) as seen at one tick."""

    NONE = "none"  # no valid check yet
    FRESH = "fresh"
    STALE = "stale"  # no check for CONSENT_STALE_AFTER: DISCONNECTED
    EXPIRED = "expired"  # no check for the consent timeout: FAILED


class CheckOutcome(NamedTuple):
    """What handling one authenticated check means for the transport."""

    response: bytes
    accepted: bool  # a valid check: the address may be bound, consent refreshed
    retired_ufrag: str | None = None  # the old local ufrag after the peer used the new one


class IceLiteAgent:
    """Per-session ICE-lite state; always the controlled agent."""

    __slots__ = (
        "local",
        "previous_local",
        "remote",
        "selected",
        "nominated",
        "last_check",
        "consent_timeout",
        "_macs",
    )

    def __init__(self, local: IceParameters, *, consent_timeout: float = 30.0) -> None:
        self.local = local
        self.previous_local: IceParameters | None = None
        self.remote: IceParameters | None = None
        self.selected: Address | None = None
        self.nominated = False
        self.last_check: float | None = None
        self.consent_timeout = consent_timeout
        #: The MAC key of each local pwd that authenticates checks (``local_ufrags``).
        self._macs: dict[str, HmacSha1] = {}

    def local_ufrags(self) -> list[str]:
        """Every local ufrag that currently authenticates checks (two during a restart)."""
        ufrags = [self.local.ufrag]
        if self.previous_local is not None:
            ufrags.append(self.previous_local.ufrag)
        return ufrags

    def restart(self) -> IceParameters:
        """New local credentials; the current ones keep working until the peer uses the new."""
        if self.previous_local is None:
            self.previous_local = self.local
        self.local = IceParameters.generate()
        return self.local

    def set_remote(self, remote: IceParameters) -> None:
        """The peer's credentials from its description; a new ufrag is a peer ICE restart."""
        self.remote = remote

    def handle(self, request: BindingRequest, addr: Address, now: float) -> CheckOutcome:
        """Authenticate and answer one check; ``ValueError`` means drop it silently."""
        current = request.local_ufrag == self.local.ufrag
        if current:
            params = self.local
        elif self.previous_local is not None and request.local_ufrag == self.previous_local.ufrag:
            params = self.previous_local
        else:
            raise ValueError(f"STUN USERNAME names unknown local ufrag {request.local_ufrag!r}")
        mac = self._macs.get(params.pwd)
        if mac is None:
            if len(self._macs) >= 2:  # only the current and the previous pwd authenticate
                self._macs.clear()
            mac = self._macs[params.pwd] = HmacSha1(params.pwd.encode())
        request.verify(mac)
        if request.ice_controlled is not None:
            # Both sides think they are controlled; a lite agent never switches role.
            error = binding_error(request, ROLE_CONFLICT, "Role Conflict", mac)
            return CheckOutcome(error, accepted=False)
        retired = None
        if current and self.previous_local is not None:
            retired = self.previous_local.ufrag
            self.previous_local = None
        self.last_check = now
        if request.use_candidate or self.selected is None:
            self.selected = addr
        if request.use_candidate:
            self.nominated = True
        return CheckOutcome(binding_success(request, addr, mac), True, retired)

    def consent(self, now: float, stale_after: float = CONSENT_STALE_AFTER) -> Consent:
        """Consent freshness at ``now`` from the time of the last valid check."""
        if self.last_check is None:
            return Consent.NONE
        idle = now - self.last_check
        if idle >= self.consent_timeout:
            return Consent.EXPIRED
        if idle >= stale_after:
            return Consent.STALE
        return Consent.FRESH
