"""The video layers allocation header extension, as a value.

Owns ``LayersAllocation`` (``parse`` / ``__bytes__``) for the
``http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00`` RTP header extension
(libwebrtc's docs/native-code/rtp-hdrext/video-layers-allocation00, "Video layers allocation
version 0"): a sender of simulcast (or SVC) video writes, on the first packet of a keyframe and
of the first frame after its encoder's allocation changed, which of its RTP streams and spatial
layers it sends now, each one's target bitrate per temporal layer and, optionally, its
resolution and frame rate. Chromium writes it on every stream, each naming its own index, so a
stream that stopped (the encoder dropped it for the uplink) is announced on the others at once.

Layout (after the extension element's header, RFC 8285): one byte ``RID(2) NS(2) sl_bm(4)``;
when ``sl_bm`` is 0 the per-stream spatial layer bitmasks follow, 4 bits each, in one byte for
up to 2 streams and two bytes for 3-4; then 2 bits per active spatial layer (its number of
temporal layers - 1), padded to a byte; then one LEB128 kbit/s value per temporal layer (each
the total for that layer and those below); then, optionally, 5 bytes per active spatial layer
(width - 1 and height - 1 in 16 bits each, the maximum frame rate in 8). Streams and layers
are listed in (stream index, spatial id) order. NS is the highest stream index that sends:
streams above it send nothing. A single zero byte is the empty allocation (nothing is sent on
this stream). Imports nothing from zvonok.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VLA_URI", "LayersAllocation", "SpatialLayer"]

VLA_URI = "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00"
#: At most 4 RTP streams (2 bits) and 4 spatial layers per stream (4 bits), 4 temporal layers.
MAX_STREAMS = 4
MAX_SPATIAL = 4
MAX_TEMPORAL = 4
#: A bitrate above this (kbit/s) is not a bitrate (libwebrtc rejects it too).
MAX_KBPS = 1_000_000
#: LEB128 values longer than this are malformed here (1,000,000 fits in 3 bytes).
_MAX_LEB128 = 5


@dataclass(frozen=True, slots=True)
class SpatialLayer:
    """One active spatial layer of one RTP stream: its target bitrates (kbit/s) per temporal
    layer, cumulative, and — when the sender wrote them — its size and maximum frame rate."""

    stream: int
    spatial_id: int
    kbps: tuple[int, ...]
    width: int | None = None
    height: int | None = None
    fps: int | None = None


@dataclass(frozen=True, slots=True)
class LayersAllocation:
    """What the sender sends now: ``stream`` is the index of the RTP stream this value came
    on; ``layers`` every active (stream, spatial layer), in order; empty when the value was the
    single zero byte."""

    stream: int
    layers: tuple[SpatialLayer, ...]

    @property
    def active_streams(self) -> frozenset[int]:
        """The indices of the RTP streams that send at least one spatial layer."""
        return frozenset(layer.stream for layer in self.layers)

    @property
    def has_resolution(self) -> bool:
        return bool(self.layers) and self.layers[0].width is not None

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> LayersAllocation:
        """The allocation in ``data`` (an extension element's value); ValueError when it is
        malformed (short, no active layer, trailing bytes that are not 5 per layer, its own
        stream index above NS, a bitrate above 1 Gbit/s)."""
        data = bytes(data)
        n = len(data)
        if n == 0:
            raise ValueError("empty video layers allocation")
        if n == 1 and data[0] == 0:
            return cls(0, ())
        first = data[0]
        stream = first >> 6
        streams = ((first >> 4) & 0x03) + 1
        masks = [first & 0x0F] * streams
        pos = 1
        if masks[0] == 0:
            count = 1 if streams <= 2 else 2
            if pos + count > n:
                raise ValueError("video layers allocation: short spatial layer bitmasks")
            nibbles = []
            for b in data[pos : pos + count]:
                nibbles += [b >> 4, b & 0x0F]
            masks = nibbles[:streams]  # a nibble above NS is padding
            pos += count
        if stream >= streams:
            raise ValueError(f"video layers allocation: stream {stream} of {streams}")
        active = [
            (s, sid) for s in range(streams) for sid in range(MAX_SPATIAL) if masks[s] >> sid & 1
        ]
        if not active:
            raise ValueError("video layers allocation: no active layer")
        tl_bytes = (len(active) + 3) // 4
        if pos + tl_bytes > n:
            raise ValueError("video layers allocation: short temporal layer counts")
        temporal = []
        for i in range(len(active)):
            b = data[pos + i // 4]
            temporal.append((b >> (6 - 2 * (i % 4)) & 0x03) + 1)
        pos += tl_bytes
        rates: list[tuple[int, ...]] = []
        for count in temporal:
            values = []
            for _ in range(count):
                value, pos = _read_leb128(data, pos)
                if value > MAX_KBPS:
                    raise ValueError(f"video layers allocation: {value} kbit/s")
                values.append(value)
            rates.append(tuple(values))
        rest = n - pos
        if rest == 0:
            layers = tuple(
                SpatialLayer(s, sid, kbps) for (s, sid), kbps in zip(active, rates, strict=True)
            )
            return cls(stream, layers)
        if rest != 5 * len(active):
            raise ValueError(f"video layers allocation: {rest} trailing bytes")
        out = []
        for (s, sid), kbps in zip(active, rates, strict=True):
            width = (data[pos] << 8 | data[pos + 1]) + 1
            height = (data[pos + 2] << 8 | data[pos + 3]) + 1
            out.append(SpatialLayer(s, sid, kbps, width, height, data[pos + 4]))
            pos += 5
        return cls(stream, tuple(out))

    def __bytes__(self) -> bytes:
        """The extension value (``parse`` reads it back); the bitmask is shared in the first
        byte when every stream up to NS has the same one."""
        if not self.layers:
            return b"\x00"
        top = max(layer.stream for layer in self.layers)
        masks = [0] * MAX_STREAMS
        for layer in self.layers:
            masks[layer.stream] |= 1 << layer.spatial_id
        out = bytearray([(self.stream & 0x03) << 6 | top << 4])
        if all(masks[s] == masks[0] for s in range(top + 1)):
            out[0] |= masks[0]
        else:
            out.append(masks[0] << 4 | masks[1])
            if top >= 2:
                out.append(masks[2] << 4 | masks[3])
        counts = bytearray((len(self.layers) + 3) // 4)
        for i, layer in enumerate(self.layers):
            counts[i // 4] |= (len(layer.kbps) - 1) << (6 - 2 * (i % 4))
        out += counts
        for layer in self.layers:
            for value in layer.kbps:
                out += _leb128(value)
        if self.has_resolution:
            for layer in self.layers:
                width, height = layer.width or 1, layer.height or 1
                out += (width - 1).to_bytes(2, "big") + (height - 1).to_bytes(2, "big")
                out.append((layer.fps or 0) & 0xFF)
        return bytes(out)


def _read_leb128(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 value at ``pos`` and the position after it."""
    value = 0
    for i in range(_MAX_LEB128):
        if pos + i >= len(data):
            raise ValueError("video layers allocation: short bitrate")
        b = data[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, pos + i + 1
    raise ValueError("video layers allocation: bitrate longer than 5 bytes")


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
