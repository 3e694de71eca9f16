"""RFC 4571 framing: RTP, RTCP, STUN and DTLS packets over a TCP stream (ICE-TCP, RFC 6544 §3).

Owns ``Frame`` (one packet with its 16-bit big-endian length prefix, ``parse``/``__bytes__``) and
``FrameReader``, the incremental reader of one connection's byte stream: it cuts whole frames out
of whatever chunks TCP delivers (half frames wait for the rest) and never holds more than one
partial frame, i.e. at most ``2 + max_frame`` bytes, whatever the peer sends. A frame longer
than ``max_frame`` is a protocol error (``ValueError``): the caller closes the connection.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: RFC 4571 §2: the LENGTH field is 16 bits, so no frame carries more than this.
MAX_FRAME = 0xFFFF
HEADER = 2


@dataclass(frozen=True, slots=True)
class Frame:
    """One framed packet (RFC 4571 §2: LENGTH, then that many bytes)."""

    payload: bytes

    def __post_init__(self) -> None:
        if len(self.payload) > MAX_FRAME:
            raise ValueError(f"RFC 4571 frame of {len(self.payload)} bytes exceeds {MAX_FRAME}")

    @classmethod
    def parse(cls, data: bytes) -> Frame:
        """Exactly one frame, nothing before or after it; ``ValueError`` otherwise."""
        if len(data) < HEADER:
            raise ValueError(f"RFC 4571 frame truncated: {len(data)} bytes, header needs 2")
        length = int.from_bytes(data[:HEADER], "big")
        if len(data) != HEADER + length:
            raise ValueError(
                f"RFC 4571 frame length {length} does not match the {len(data) - HEADER} "
                "bytes after it"
            )
        return cls(bytes(data[HEADER:]))

    def __bytes__(self) -> bytes:
        return len(self.payload).to_bytes(HEADER, "big") + self.payload


def frame(payload: bytes) -> bytes:
    """``bytes(Frame(payload))`` without the object (the send path)."""
    size = len(payload)
    if size > MAX_FRAME:
        raise ValueError(f"RFC 4571 frame of {size} bytes exceeds {MAX_FRAME}")
    return size.to_bytes(HEADER, "big") + payload


class FrameReader:
    """Cuts one TCP stream into RFC 4571 frames; holds at most one partial frame."""

    __slots__ = ("max_frame", "_buffer")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if not 0 <= max_frame <= MAX_FRAME:
            raise ValueError(f"max_frame must be 0..{MAX_FRAME}")
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Every frame that ``data`` completes, in order (empty frames are skipped).

        ``ValueError`` when a frame announces more than ``max_frame`` bytes; the frames before
        it in ``data`` are lost with it (the connection is closed anyway).
        """
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos = 0
        end = len(buffer)
        max_frame = self.max_frame
        while end - pos >= HEADER:
            length = buffer[pos] << 8 | buffer[pos + 1]
            if length > max_frame:
                buffer.clear()
                raise ValueError(
                    f"RFC 4571 frame of {length} bytes exceeds the {max_frame} allowed"
                )
            stop = pos + HEADER + length
            if stop > end:
                break
            if length:
                frames.append(bytes(buffer[pos + HEADER : stop]))
            pos = stop
        if pos:
            del buffer[:pos]
        return frames
