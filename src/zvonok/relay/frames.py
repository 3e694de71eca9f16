"""Frames of the worker link (and, with issue 10, of the cluster's SignalBus), as values.

A frame on the wire is a 4-byte big-endian length followed by that many bytes of one JSON
object (UTF-8)::

    {"k": "req" | "res" | "note" | "ack",
     "s": seq, "a": ack,            # this sender's sequence number; the last one it received
     "r": relay,                    # the relayed session a frame belongs to (0: the link itself)
     "i": id,                       # request id (req, res)
     "m": method, "p": {...},       # req, note: what to do and its parameters
     "v": value | "e": {...}}       # res: the result, or the error

``seq`` counts every non-``ack`` frame a sender sends from 1; ``ack`` is cumulative. A frame is
small (signaling, load reports, metric expositions): ``MAX_FRAME`` bounds what a reader accepts
before it has read the body. ``Frame.parse`` raises ``FrameError`` with what is wrong for any
input that is not exactly one frame body. Implements no RFC (the framing is RFC 4571's idea with
a 32-bit length).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, Final, Literal

#: The length prefix.
HEADER: Final = struct.Struct("!I")
#: The largest frame body a reader accepts (a 16 MiB metrics exposition is far beyond need).
MAX_FRAME: Final = 16 * 1024 * 1024
#: The largest sequence number or id (JSON-safe integers).
MAX_COUNTER: Final = 2**53 - 1

FrameKind = Literal["req", "res", "note", "ack"]
_KINDS: Final = frozenset({"req", "res", "note", "ack"})


class FrameError(ValueError):
    """Bytes that are not a valid frame; the link that carried them is closed."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    seq: int = 0
    ack: int = 0
    relay: int = 0
    id: int = 0
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"k": self.kind, "s": self.seq, "a": self.ack}
        if self.relay:
            obj["r"] = self.relay
        if self.kind in ("req", "res"):
            obj["i"] = self.id
        if self.kind in ("req", "note"):
            obj["m"] = self.method
            obj["p"] = self.params
        if self.kind == "res":
            if self.error is not None:
                obj["e"] = self.error
            else:
                obj["v"] = self.value
        return obj

    def body(self) -> bytes:
        obj = self.to_json()
        try:
            return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:
            # a lone surrogate (JSON lets a client escape one: "\ud800") has no UTF-8; as an
            # escape it travels and parses back to the same string
            return json.dumps(obj, separators=(",", ":")).encode()

    def __bytes__(self) -> bytes:
        body = self.body()
        if len(body) > MAX_FRAME:
            raise FrameError(f"frame of {len(body)} bytes is above {MAX_FRAME}")
        return HEADER.pack(len(body)) + body

    @classmethod
    def parse(cls, body: bytes) -> Frame:
        """One frame from its body (the bytes after the length prefix)."""
        if len(body) > MAX_FRAME:
            raise FrameError(f"frame of {len(body)} bytes is above {MAX_FRAME}")
        try:
            obj = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise FrameError(f"frame is not JSON: {exc}") from None
        except RecursionError:  # deeply nested arrays/objects: json's C decoder gives up
            raise FrameError("frame is nested too deeply") from None
        if not isinstance(obj, dict):
            raise FrameError("frame is not a JSON object")
        kind = obj.get("k")
        if not isinstance(kind, str) or kind not in _KINDS:
            raise FrameError(f"unknown frame kind {kind!r}")
        seq = _counter(obj, "s")
        ack = _counter(obj, "a")
        relay = _counter(obj, "r")
        if kind == "ack":
            return cls("ack", seq, ack, relay)
        if kind in ("req", "note"):
            method = obj.get("m")
            if not isinstance(method, str) or not method:
                raise FrameError(f"{kind} frame without a method")
            params = obj.get("p", {})
            if not isinstance(params, dict):
                raise FrameError(f"{kind} frame params must be an object")
            if kind == "note":
                return cls("note", seq, ack, relay, 0, method, params)
            return cls("req", seq, ack, relay, _counter(obj, "i"), method, params)
        ident = _counter(obj, "i")
        error = obj.get("e")
        if error is not None and not isinstance(error, dict):
            raise FrameError("res frame error must be an object")
        value = obj.get("v") if error is None else None  # an error answer has no value
        return cls("res", seq, ack, relay, ident, value=value, error=error)


def _counter(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
        raise FrameError(f"frame field {key!r} must be an integer in 0..2^53-1")
    return value


def frame_length(header: bytes) -> int:
    """The body length announced by a 4-byte header; ``FrameError`` above ``MAX_FRAME``."""
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"announced frame of {length} bytes is above {MAX_FRAME}")
    return int(length)
