"""Simulcast in SDP: which RTP streams a client sends on one m-line, and what we answer.

Owns the value grammar of ``a=simulcast`` (RFC 8853 §5.1: ``send``/``recv`` stream lists, ``;``
between streams, ``,`` between alternatives of one stream, ``~`` for a paused one; rid-ids as in
RFC 8851 §10) and the rule that turns a client's m-line into the rids zvonok receives
(``send_layers``):

- the client's ``a=simulcast:send`` order (lowest layer first, what browsers write), taking the
  first alternative of each ``,`` group (RFC 8853 §5.2: the answerer may pick any; we take the
  first);
- a rid with no ``a=rid:<id> send`` line (RFC 8853 §5.1 requires one), a rid longer than 16
  characters (it cannot be carried in a one-byte RFC 8285 header element, nor does libwebrtc
  accept it) and a repeated rid are dropped;
- a paused (``~``) stream is kept, with its mark: Chromium writes ``~`` for an encoding the
  page turned off (``setParameters``, ``active: false``; dynacast), *removes* any encoding an
  answer leaves out from ``getParameters()`` for good (libwebrtc
  ``UpdateSimulcastLayerStatusInSender``; a later answer naming it does not restore it), and sets
  each encoding's ``active`` from the pause marks of the answers and offers it receives
  (seen in the capture, tests/fixtures/sdp/README.md). So dropping it would lose that layer for
  the rest of the session; which marks we write is ``negotiation``'s choice (``pause_layers``);
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


def send_layers(
    media: MediaDescription, offered: Collection[str] | None = None
) -> tuple[tuple[str, bool], ...]:
    """The simulcast layers a client sends on ``media`` (its offer or its answer) as
    ``(rid, paused)``, by the rule in the module docstring; ``()`` for no simulcast.
    ``ValueError`` on a malformed a=simulcast. For an answer, ``offered`` are the rids our offer
    named: the only ones it may pick (RFC 8853 §5.3), others are dropped like undeclared ones."""
    if media.simulcast is None:
        return ()
    streams = parse_simulcast(media.simulcast).get("send")
    if not streams or not any(e.uri == RID_URI for e in media.extensions):
        return ()
    declared = {r.id for r in media.rids if r.direction == "send"}
    out: dict[str, bool] = {}
    for stream in streams:
        rid, paused = stream[0]
        if rid not in declared or len(rid) > MAX_RID_LENGTH or rid in out:
            continue
        if offered is not None and rid not in offered:
            continue
        out[rid] = paused
    return tuple(out.items())[:MAX_LAYERS]


def send_rids(media: MediaDescription, offered: Collection[str] | None = None) -> tuple[str, ...]:
    """The rids of ``send_layers`` (paused ones included)."""
    return tuple(rid for rid, _ in send_layers(media, offered))


def receive_attributes(
    rids: tuple[str, ...], paused: Collection[str] = ()
) -> tuple[list[Rid], str | None]:
    """What we write to receive ``rids``: ``a=rid:<id> recv`` lines and the
    ``a=simulcast:recv`` value (``None`` without rids), ``~`` before the ``paused`` ones."""
    if not rids:
        return [], None
    streams = ";".join("~" + rid if rid in paused else rid for rid in rids)
    return [Rid(rid, "recv") for rid in rids], "recv " + streams
