"""Codec steering: which video codec a publisher should send so its subscribers can decode it.

Owns the rule (docs/media.md, "Codec steering"), as a pure function of what the room knows: the
codecs a publisher can send on a track (its negotiated list), the one it prefers (the first in its
own order: what it sends when left alone), and the codecs each subscriber accepted for that track
in its answer or offer. The server never decodes: steering only changes which codec the
publisher *sends*, by listing only the decodable codecs in the server's next offer or answer to
it (``SessionNegotiator.restrict_receive``); payload types stay the same, and every subscriber
was offered every codec the publisher can send, so the forwarder maps the new payload type
without renegotiating them.

Also owns the choice of a **backup stream** (issue 19): when no single codec fits every
subscriber, the codec in which our SDK should publish a second, low-resolution encoding of the
camera (``Steering.backup``: the one most of the ``codec-conflict`` subscribers decode), and which
of those subscribers a backup sending a given codec serves (``backup_served``): they receive the
backup in place of the camera, on the same m-line and SSRCs.

No I/O, no imports from outside ``zvonok.media.sdp``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..media.sdp.codecs import CodecKey

#: Why a subscriber gets no decodable video of a track: it decodes none of the codecs the
#: publisher can send, or it decodes another one than the rest of the room can share.
Unavailable = Literal["unsupported-codec", "codec-conflict"]


@dataclass(frozen=True, slots=True)
class Steering:
    """The decision for one published video track."""

    #: The codec keys the publisher may send with (``None``: whatever it prefers).
    allowed: frozenset[CodecKey] | None
    #: Subscribers (by key) that will get no video they can decode, and why.
    unavailable: Mapping[str, Unavailable]
    #: The codec a backup stream of this track should be sent in for the ``codec-conflict``
    #: subscribers (``None``: none is needed).
    backup: CodecKey | None = None


def steer(
    caps: Sequence[CodecKey],
    preferred: CodecKey | None,
    subscribers: Mapping[str, frozenset[CodecKey]],
    *,
    fixed: bool = False,
) -> Steering:
    """Pick the codecs a publisher may send.

    ``caps``: what the publisher can send, in our order (VP8, VP9, H.264); ``preferred``: what it
    prefers, so sends when unrestricted (``None``: unknown, taken as ``caps[0]``);
    ``subscribers``: subscriber → the codec keys it accepted for this track. Rules, in order:

    1. A subscriber that accepts none of ``caps`` cannot be helped (``unsupported-codec``) and is
       left out of the choice.
    2. If the preferred codec suits every other subscriber, the publisher is left alone.
    3. Else, if some codecs suit every subscriber, the publisher is restricted to all of them
       (it picks among them in its own order).
    4. Else the codec most subscribers decode wins (the preferred one on a tie, then our order);
       the publisher is restricted to it unless it is the preferred one, and those who cannot
       decode it get ``codec-conflict``; ``backup`` is then the codec most of them decode (our
       order on a tie), for a backup stream that serves them (``backup_served``).

    ``fixed``: the publisher's codec cannot be changed (its m-line also carries one of our
    tracks, so its codec list is shared by both directions); ``preferred`` is then what it
    sends, rules 3 and 4 keep it, and everyone else who cannot decode it is ``codec-conflict``.
    """
    if not caps:
        return Steering(None, {})
    offered = set(caps)
    able = {s: keys & offered for s, keys in subscribers.items()}
    unavailable: dict[str, Unavailable] = {s: "unsupported-codec" for s, k in able.items() if not k}
    others = {s: k for s, k in able.items() if k}
    current = preferred if preferred in offered else caps[0]
    if all(current in k for k in others.values()):
        return Steering(None, unavailable)
    common = frozenset(c for c in caps if all(c in k for k in others.values()))
    if common and not fixed:
        return Steering(common, unavailable)
    coverage = {c: sum(c in k for k in others.values()) for c in caps}
    best = max(coverage.values())
    if fixed or coverage[current] == best:
        target = current
    else:
        target = next(c for c in caps if coverage[c] == best)
    conflict = [keys for s, keys in others.items() if target not in keys]
    for s, keys in others.items():
        if target not in keys:
            unavailable[s] = "codec-conflict"
    rest = {c: sum(c in k for k in conflict) for c in caps if c != target}
    most = max(rest.values(), default=0)
    backup = next(c for c in caps if rest.get(c) == most) if most else None
    return Steering(None if target == current else frozenset({target}), unavailable, backup)


def backup_served(
    decision: Steering, subscribers: Mapping[str, frozenset[CodecKey]], sending: CodecKey | None
) -> frozenset[str]:
    """The ``codec-conflict`` subscribers of ``decision`` that a backup stream sending the codec
    ``sending`` serves (``None``: no backup flows): those that accept that codec."""
    if sending is None:
        return frozenset()
    return frozenset(
        s
        for s, reason in decision.unavailable.items()
        if reason == "codec-conflict" and sending in subscribers.get(s, frozenset())
    )
