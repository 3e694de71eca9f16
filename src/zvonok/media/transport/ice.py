"""ICE-lite for one WebRTC session: STUN binding checks, nomination, consent, ICE restart.

Owns: ``IceParameters`` (RFC 8445 §5.3), ``BindingRequest`` (a parsed, not yet authenticated
connectivity check), the STUN responses we send, and ``IceLiteAgent``, the per-session state of a
lite agent (RFC 8445 §2.5, §7.3): it answers checks, follows USE-CANDIDATE to select the peer's
address (address migration included), tracks consent freshness (RFC 7675) and ICE restarts
(RFC 8445 §9, RFC 8839 §4.4.1.1.1). STUN parsing comes from ``aioice.stun`` only (never its
agent); the responses are encoded here on raw bytes (they answer every consent check). No I/O
and no timers here: the transport sends, the worker tick evaluates consent.
Must not import anything from zvonok outside ``zvonok.media``.

Policy on bad checks: a request whose MESSAGE-INTEGRITY (or FINGERPRINT, USERNAME) fails is
dropped silently instead of answered with 401 (RFC 8445 §7.3 allows it): an unauthenticated
answer would let a spoofer use the media port as a reflector. ``ValueError`` carries the reason.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import secrets
import string
import struct
import zlib
from dataclasses import dataclass, field

from aioice import stun

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


def parse_stun(data: bytes) -> stun.Message:
    """Parse one STUN message (RFC 8489 §5), checking the magic cookie and FINGERPRINT."""
    if len(data) < stun.HEADER_LENGTH:
        raise ValueError(f"STUN message truncated: {len(data)} bytes, header needs 20")
    if int.from_bytes(data[4:8], "big") != stun.COOKIE:
        raise ValueError("STUN magic cookie is wrong")
    try:
        return stun.parse_message(data)
    except ValueError as exc:  # includes UnicodeDecodeError from a non-UTF-8 USERNAME
        raise ValueError(f"malformed STUN message: {exc}") from None
    except Exception as exc:  # aioice's attribute unpackers raise struct.error on short values
        raise ValueError(f"malformed STUN message: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class BindingRequest:
    """A connectivity check as received: parsed and fingerprinted, not yet authenticated."""

    local_ufrag: str
    remote_ufrag: str
    priority: int
    use_candidate: bool
    ice_controlling: int | None
    ice_controlled: int | None
    message: stun.Message = field(compare=False, repr=False)

    @classmethod
    def parse(cls, data: bytes) -> BindingRequest:
        """Parse an ICE binding request (RFC 8445 §7.1.1, §7.2.2); ``ValueError`` otherwise."""
        message = parse_stun(data)
        if message.message_method != stun.Method.BINDING:
            raise ValueError(f"STUN method {message.message_method.name} is not BINDING")
        if message.message_class != stun.Class.REQUEST:
            raise ValueError(f"STUN class {message.message_class.name} is not REQUEST")
        attrs = message.attributes
        for name in ("USERNAME", "MESSAGE-INTEGRITY", "FINGERPRINT", "PRIORITY"):
            if name not in attrs:
                raise ValueError(f"STUN binding request has no {name}")
        local, sep, remote = str(attrs["USERNAME"]).partition(":")
        if not sep or not local or not remote:
            raise ValueError(f"STUN USERNAME {attrs['USERNAME']!r} is not 'local:remote'")
        return cls(
            local_ufrag=local,
            remote_ufrag=remote,
            priority=int(attrs["PRIORITY"]),
            use_candidate="USE-CANDIDATE" in attrs,
            ice_controlling=attrs.get("ICE-CONTROLLING"),
            ice_controlled=attrs.get("ICE-CONTROLLED"),
            message=message,
        )

    def verify(self, pwd: str) -> None:
        """Check MESSAGE-INTEGRITY with our local ``pwd`` (RFC 8489 §14.5)."""
        if not self.message.check_message_integrity(pwd.encode()):
            raise ValueError("STUN MESSAGE-INTEGRITY does not verify")

    @property
    def transaction_id(self) -> bytes:
        """The 96-bit transaction id the response must echo."""
        tid: bytes = self.message.transaction_id
        return tid


_STUN_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")
_BINDING_SUCCESS = stun.Method.BINDING | stun.Class.RESPONSE
_BINDING_ERROR = stun.Method.BINDING | stun.Class.ERROR
_XOR_MAPPED_ADDRESS = 0x0020
_ERROR_CODE = 0x0009
_MESSAGE_INTEGRITY = 0x0008
_FINGERPRINT = 0x8028
_FINGERPRINT_XOR = 0x5354554E


def _attribute(kind: int, value: bytes) -> bytes:
    return _ATTR_HEADER.pack(kind, len(value)) + value + bytes(-len(value) % 4)


def _encode(message_type: int, transaction_id: bytes, attributes: bytes, pwd: str) -> bytes:
    """A STUN message with MESSAGE-INTEGRITY (RFC 8489 §14.5: HMAC-SHA1 over the message with the
    length counting up to it) and FINGERPRINT (§14.7: CRC-32 xor 0x5354554e), on raw bytes —
    the answer to every consent check, so kept cheaper than a generic encoder."""
    length = len(attributes) + 24
    head = _STUN_HEADER.pack(message_type, length, stun.COOKIE, transaction_id) + attributes
    mac = hmac.new(pwd.encode(), head, hashlib.sha1).digest()
    body = head[20:] + _ATTR_HEADER.pack(_MESSAGE_INTEGRITY, 20) + mac
    message = _STUN_HEADER.pack(message_type, length + 8, stun.COOKIE, transaction_id) + body
    crc = (zlib.crc32(message) ^ _FINGERPRINT_XOR) & 0xFFFF_FFFF
    return message + _ATTR_HEADER.pack(_FINGERPRINT, 4) + crc.to_bytes(4, "big")


def _xor_mapped_address(addr: Address, transaction_id: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS (RFC 8489 §14.2) of an IPv4 or IPv6 peer."""
    ip = ipaddress.ip_address(addr[0])
    port = addr[1] ^ (stun.COOKIE >> 16)
    packed = ip.packed
    mask = stun.COOKIE.to_bytes(4, "big") + (transaction_id if ip.version == 6 else b"")
    xored = bytes(a ^ b for a, b in zip(packed, mask, strict=True))
    family = 0x01 if ip.version == 4 else 0x02
    return _attribute(_XOR_MAPPED_ADDRESS, struct.pack("!BBH", 0, family, port) + xored)


def binding_success(request: BindingRequest, addr: Address, pwd: str) -> bytes:
    """Success response (RFC 8445 §7.3.1.3): XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT."""
    tid = request.transaction_id
    return _encode(_BINDING_SUCCESS, tid, _xor_mapped_address(addr, tid), pwd)


def binding_error(request: BindingRequest, code: int, reason: str, pwd: str) -> bytes:
    """Authenticated error response (e.g. 487 Role Conflict, RFC 8445 §7.3.1.1)."""
    value = struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()
    return _encode(_BINDING_ERROR, request.transaction_id, _attribute(_ERROR_CODE, value), pwd)


class Consent(enum.Enum):
    """Consent freshness of a session (RFC 7675) as seen at one tick."""

    NONE = "none"  # no valid check yet
    FRESH = "fresh"
    STALE = "stale"  # no check for CONSENT_STALE_AFTER: DISCONNECTED
    EXPIRED = "expired"  # no check for the consent timeout: FAILED


@dataclass(frozen=True, slots=True)
class CheckOutcome:
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
    )

    def __init__(self, local: IceParameters, *, consent_timeout: float = 30.0) -> None:
        self.local = local
        self.previous_local: IceParameters | None = None
        self.remote: IceParameters | None = None
        self.selected: Address | None = None
        self.nominated = False
        self.last_check: float | None = None
        self.consent_timeout = consent_timeout

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
        request.verify(params.pwd)
        if request.ice_controlled is not None:
            # Both sides think they are controlled; a lite agent never switches role.
            error = binding_error(request, ROLE_CONFLICT, "Role Conflict", params.pwd)
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
        return CheckOutcome(binding_success(request, addr, params.pwd), True, retired)

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
