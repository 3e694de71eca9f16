"""ICE candidates as values: the ``a=candidate`` grammar and the candidate priority formula.

Owns ``Candidate`` (parse / ``__str__``) and ``priority()``. Implements RFC 8839 §5.1 (the
candidate attribute grammar, with the de-facto ``generation``/``ufrag``/``network-id``/
``network-cost`` extensions browsers add), RFC 6544 §4.5 (``tcptype``) and RFC 8445 §5.1.2.1
(priority). Host addresses are IP addresses or mDNS names (``<uuid>.local``,
draft-ietf-mmusic-mdns-ice-candidates); the server never resolves the latter, it learns the real
address from the STUN binding request.

Imports nothing from zvonok. Malformed input raises ``ValueError`` with a specific message.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
TCP_TYPES = ("active", "passive", "so")
MAX_CANDIDATE_LENGTH = 1024

_FOUNDATION_RE = re.compile(r"^[A-Za-z0-9+/]{1,32}$")
_MDNS_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})\.)+local$", re.IGNORECASE)
_TOKEN_RE = re.compile(r"^[!-~]+$")
_PREFIXES = ("a=candidate:", "candidate:")


def priority(type_pref: int, local_pref: int, component: int) -> int:
    """RFC 8445 §5.1.2.1: ``2^24 * type_pref + 2^8 * local_pref + (256 - component)``."""
    if not 0 <= type_pref <= 126:
        raise ValueError(f"type preference {type_pref} not in 0..126")
    if not 0 <= local_pref <= 65535:
        raise ValueError(f"local preference {local_pref} not in 0..65535")
    if not 1 <= component <= 256:
        raise ValueError(f"component {component} not in 1..256")
    return (type_pref << 24) + (local_pref << 8) + (256 - component)


@dataclass(slots=True)
class Candidate:
    """One ICE candidate. ``transport`` keeps the case it was written in (``UDP``/``udp``)."""

    foundation: str
    component: int
    transport: str
    priority: int
    host: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    tcptype: str | None = None
    generation: int | None = None
    ufrag: str | None = None
    network_id: int | None = None
    network_cost: int | None = None
    extensions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def protocol(self) -> str:
        """``"udp"`` or ``"tcp"``, lower case."""
        return self.transport.lower()

    @property
    def is_mdns(self) -> bool:
        """True when the host is an mDNS ``.local`` name rather than an IP address."""
        return _ip_or_none(self.host) is None

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """Parse ``candidate:...`` (with or without the ``candidate:``/``a=candidate:`` prefix)."""
        too_long = f"candidate longer than {MAX_CANDIDATE_LENGTH} characters"
        if len(text) > 2 * MAX_CANDIDATE_LENGTH:
            raise ValueError(too_long)
        body = text.strip()
        for prefix in _PREFIXES:
            if body.lower().startswith(prefix):
                body = body[len(prefix) :]
                break
        # The limit is on the value after its prefix, so that a parsed candidate's text (always
        # written with ``candidate:``) parses again.
        if len(body) > MAX_CANDIDATE_LENGTH:
            raise ValueError(too_long)
        fields = body.split()
        if len(fields) < 8:
            raise ValueError(f"candidate has {len(fields)} fields, at least 8 needed: {text!r}")
        if fields[6] != "typ":
            raise ValueError(f"candidate has {fields[6]!r} where 'typ' belongs")
        cand = cls(
            foundation=_foundation(fields[0]),
            component=_component(fields[1]),
            transport=_transport(fields[2]),
            priority=_int_field("priority", fields[3], 0, 2**32 - 1),
            host=_address(fields[4]),
            port=_int_field("port", fields[5], 0, 65535),
            type=_cand_type(fields[7]),
        )
        cand._parse_extensions(fields[8:])
        return cand

    def _parse_extensions(self, rest: list[str]) -> None:
        if len(rest) % 2:
            raise ValueError(f"candidate extension {rest[-1]!r} has no value")
        for name, value in zip(rest[::2], rest[1::2], strict=True):
            self._set_extension(name, value)
        if self.tcptype is not None and self.protocol != "tcp":
            raise ValueError("tcptype on a non-TCP candidate")

    def _set_extension(self, name: str, value: str) -> None:
        if name == "raddr":
            self.related_address = _address(value)
        elif name == "rport":
            self.related_port = _int_field("rport", value, 0, 65535)
        elif name == "tcptype":
            if value not in TCP_TYPES:
                raise ValueError(f"bad tcptype {value!r}")
            self.tcptype = value
        elif name == "generation":
            self.generation = _int_field("generation", value, 0, 2**32 - 1)
        elif name == "ufrag":
            self.ufrag = value
        elif name == "network-id":
            self.network_id = _int_field("network-id", value, 0, 2**32 - 1)
        elif name == "network-cost":
            self.network_cost = _int_field("network-cost", value, 0, 2**32 - 1)
        elif _TOKEN_RE.match(name) and _TOKEN_RE.match(value):
            self.extensions.append((name, value))
        else:
            raise ValueError(f"bad candidate extension {name!r} {value!r}")

    def __str__(self) -> str:
        parts = [
            f"candidate:{self.foundation}",
            str(self.component),
            self.transport,
            str(self.priority),
            self.host,
            str(self.port),
            "typ",
            self.type,
        ]
        optional: list[tuple[str, object]] = [
            ("raddr", self.related_address),
            ("rport", self.related_port),
            ("tcptype", self.tcptype),
            ("generation", self.generation),
            ("ufrag", self.ufrag),
            ("network-id", self.network_id),
            ("network-cost", self.network_cost),
        ]
        parts += [f"{name} {value}" for name, value in optional if value is not None]
        parts += [f"{name} {value}" for name, value in self.extensions]
        return " ".join(parts)


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _foundation(text: str) -> str:
    if not _FOUNDATION_RE.match(text):
        raise ValueError(f"bad candidate foundation {text!r}")
    return text


def _component(text: str) -> int:
    return _int_field("component", text, 1, 256)


def _transport(text: str) -> str:
    if text.lower() not in ("udp", "tcp"):
        raise ValueError(f"unsupported candidate transport {text!r}")
    return text


def _address(text: str) -> str:
    if _ip_or_none(text) is None and not _MDNS_RE.match(text):
        raise ValueError(f"candidate address {text!r} is neither an IP nor an mDNS .local name")
    return text


def _cand_type(text: str) -> str:
    if text not in CANDIDATE_TYPES:
        raise ValueError(f"bad candidate type {text!r}")
    return text


def _int_field(name: str, text: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise ValueError(f"bad candidate {name} {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"candidate {name} {value} not in {low}..{high}")
    return value
