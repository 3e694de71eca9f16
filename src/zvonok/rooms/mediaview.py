"""What the rooms layer reads and sets of the adaptive media objects, in one place.

Owns the small adapter between ``rooms`` (allocation, dynacast, stats, active speaker) and the
media layer's simulcast and congestion-control surface (docs/media.md "Simulcast", "Congestion
control"): a producer's ``layers`` (each with ``rid``, ``bitrate``, ``active``, ``width``,
``height``), a consumer's ``target_layer`` / ``current_layer`` / ``layer_switches``, an audio
producer's ``recent_packets()`` (on the producer or its one layer) and a media session's
``downlink.estimate_bps``. A media object without that surface (a plain producer, a session
without transport-wide CC feedback) reads as one layer, no estimate, no switches: the rooms
layer never needs to know which it has. Imports nothing; implements no RFC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LayerView:
    """One layer of a producer as the allocator needs it."""

    rid: str | None
    bitrate: int
    active: bool
    width: int | None
    height: int | None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def producer_layers(producer: Any) -> list[LayerView]:
    """The layers of ``producer`` (lowest quality first); a plain producer has one."""
    layers: Sequence[Any] | None = getattr(producer, "layers", None)
    if not layers:
        return [LayerView(None, 0, True, None, None)]
    return [
        LayerView(
            rid=getattr(layer, "rid", None),
            bitrate=_int(getattr(layer, "bitrate", 0)) or 0,
            active=bool(getattr(layer, "active", True)),
            width=_int(getattr(layer, "width", None)),
            height=_int(getattr(layer, "height", None)),
        )
        for layer in layers
    ]


def is_simulcast(producer: Any) -> bool:
    layers: Sequence[Any] | None = getattr(producer, "layers", None)
    return layers is not None and len(layers) > 1


def set_target_layer(consumer: Any, layer: int | None) -> None:
    """Ask ``consumer`` to forward ``layer`` (``None``: hold the video back, for bandwidth)."""
    if hasattr(consumer, "target_layer"):
        if consumer.target_layer != layer:
            consumer.target_layer = layer
    elif layer is None:  # a media layer without layers: pausing is all it can do
        if not consumer.paused:
            consumer.pause()
    elif consumer.paused:
        consumer.resume()


def current_layer(consumer: Any) -> int | None:
    """The layer ``consumer`` forwards now (``None``: none yet, or paused)."""
    value = getattr(consumer, "current_layer", None)
    return _int(value)


def layer_switches(consumer: Any) -> int:
    return _int(getattr(consumer, "layer_switches", 0)) or 0


def recent_packets(producer: Any) -> Sequence[bytes]:
    """The last packets an audio producer received (its short history), oldest first."""
    read = getattr(producer, "recent_packets", None)
    if read is None:
        layers: Sequence[Any] | None = getattr(producer, "layers", None)
        read = getattr(layers[0], "recent_packets", None) if layers else None
    return read() if read is not None else ()


def downlink_estimate(media: Any) -> int | None:
    """A media session's downlink estimate in bit/s (``None`` until it has one)."""
    downlink = getattr(media, "downlink", None)
    if downlink is None:
        return None
    return _int(getattr(downlink, "estimate_bps", None))
