"""Simulcast in SDP: which RTP streams a client sends on one m-line, and what we answer.

Owns the value grammar of ``a=simulcast`` (RFC 8853 §5.1: ``send``/``recv`` stream lists, ``;``
between streams, ``,`` between alternatives of one stream, ``~`` for a paused one; rid-ids as in
RFC 8851 §10) and the rule that turns a client's m-line into the rids zvonok receives
(``send_rids``):

- the client's ``a=simulcast:send`` order (lowest layer first, what browsers write), taking the
  first alternative of each ``,`` group (RFC 8853 §5.2: the answerer may pick any; we take the
  first);
- a paused (``~``) stream is dropped, as is a rid with no ``a=rid:<id> send`` line (RFC 8853
  §5.1 requires one), a rid longer than 16 characters (it cannot be carried in a one-byte
  RFC 8285 header element, nor does libwebrtc accept it) and a repeated rid;
- at most ``MAX_LAYERS`` streams, the first ones kept;
- nothing when the m-line does not negotiate the ``rtp-stream-id`` header extension (RFC 8852):
  without it the streams cannot be told apart. An ``a=simulcast`` with ``recv`` only (the client
  wants to receive simulcast, which zvonok does not send) gives nothing either.

A malformed ``a=simulcast`` value raises ``ValueError`` (the offer or answer is refused); rid
restrictions (``max-width=…``, ``pt=…``) are accepted and not echoed. Imports only
``zvonok.media.sdp``.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from ._model import MediaDescription, Rid

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
#: The most simulcast layers zvonok receives per m-line.
MAX_LAYERS = 3
#: libwebrtc's limit, and what fits one one-byte RFC 8285 header element.
MAX_RID_LENGTH = 16

_RID_ID = re.compile(r"[A-Za-z0-9_-]{1,255}", re.ASCII)
_DIRECTIONS = ("send", "recv")

#: One stream of a simulcast list: its alternatives as (rid-id, paused).
Stream = list[tuple[str, bool]]


def parse_simulcast(value: str) -> dict[str, list[Stream]]:
    """``"send q;h,~h2;f recv r"`` -> ``{"send": [[("q", False)], [("h", False), ("h2", True)],
    [("f", False)]], "recv": [[("r", False)]]}``; ``ValueError`` on anything else."""
    parts = value.strip().split(" ")
    if len(parts) not in (2, 4):
        raise ValueError(f"bad a=simulcast value {value[:80]!r}")
    out: dict[str, list[Stream]] = {}
    for direction, text in zip(parts[::2], parts[1::2], strict=True):
        if direction not in _DIRECTIONS or direction in out:
            raise ValueError(f"bad a=simulcast direction {direction[:16]!r}")
        streams: list[Stream] = []
        for group in text.split(";"):
            stream: Stream = []
            for alternative in group.split(","):
                rid = alternative.removeprefix("~")
                if not _RID_ID.fullmatch(rid):
                    raise ValueError(f"bad a=simulcast rid {alternative[:80]!r}")
                stream.append((rid, alternative.startswith("~")))
            streams.append(stream)
        out[direction] = streams
    return out


def send_rids(media: MediaDescription, offered: Collection[str] | None = None) -> tuple[str, ...]:
    """The simulcast rids a client sends on ``media`` (its offer or its answer), by the rule in
    the module docstring; ``()`` for no simulcast. ``ValueError`` on a malformed a=simulcast.
    For an answer, ``offered`` are the rids our offer named: the only ones it may pick
    (RFC 8853 §5.3), others are dropped like undeclared ones."""
    if media.simulcast is None:
        return ()
    streams = parse_simulcast(media.simulcast).get("send")
    if not streams or not any(e.uri == RID_URI for e in media.extensions):
        return ()
    declared = {r.id for r in media.rids if r.direction == "send"}
    out: list[str] = []
    for stream in streams:
        rid, paused = stream[0]
        if paused or rid not in declared or len(rid) > MAX_RID_LENGTH or rid in out:
            continue
        if offered is not None and rid not in offered:
            continue
        out.append(rid)
    return tuple(out[:MAX_LAYERS])


def receive_attributes(rids: tuple[str, ...]) -> tuple[list[Rid], str | None]:
    """What we write to receive ``rids``: ``a=rid:<id> recv`` lines and the
    ``a=simulcast:recv`` value (``None`` without rids)."""
    if not rids:
        return [], None
    return [Rid(rid, "recv") for rid in rids], "recv " + ";".join(rids)
