"""What the rooms layer reads and sets of the adaptive media objects, in one place.

Owns the small surface between ``rooms`` (allocation, dynacast, stats, active speaker) and the
media layer's simulcast and congestion control (docs/media.md "Simulcast", "Congestion
control"): a producer's ``layers`` (``ProducerLayer``: ``rid``, ``bitrate``, ``active``,
``width``, ``height``, ``temporal_bitrates``; one for a plain track), a consumer's
``target_layer`` / ``current_layer`` / ``layer_switches`` / ``temporal_target``, an audio
producer's ``recent_packets()``, and a media session's downlink estimate
(``MediaSession.downlink.estimate_bps``: ``None`` until the subscriber's transport-wide CC
feedback gave one).
Implements no RFC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..media.forwarding.bwe import ACKED_CAP, Usage
from ..media.forwarding.consumer import Consumer
from ..media.forwarding.producer import Producer
from ..media.session import MediaSession


@dataclass(frozen=True, slots=True)
class LayerView:
    """One layer of a producer as the allocator needs it (a snapshot)."""

    rid: str | None
    bitrate: int
    active: bool
    width: int | None
    height: int | None
    #: The share of ``bitrate`` each VP8 temporal cap keeps (TIDs 0..t), for every t below the
    #: top one; empty without temporal layers.
    temporal_shares: tuple[float, ...] = ()


def producer_layers(producer: Producer) -> list[LayerView]:
    """The layers of ``producer``, lowest quality first; a plain producer has one."""
    return [
        LayerView(
            layer.rid,
            layer.bitrate,
            layer.active,
            layer.width,
            layer.height,
            _shares(layer.temporal_bitrates),
        )
        for layer in producer.layers
    ]


def _shares(cumulative: tuple[int, ...]) -> tuple[float, ...]:
    if len(cumulative) < 2 or cumulative[-1] <= 0:
        return ()
    return tuple(rate / cumulative[-1] for rate in cumulative[:-1])


def is_simulcast(producer: Producer) -> bool:
    return len(producer.layers) > 1


def set_target_layer(consumer: Consumer, layer: int | None) -> None:
    """Ask ``consumer`` to forward ``layer`` (``None``: hold the video back); the switch itself
    waits for a keyframe of that layer (``Consumer.target_layer``)."""
    if consumer.target_layer != layer:
        consumer.target_layer = layer


def set_temporal_target(consumer: Consumer, tid: int | None) -> None:
    """Ask ``consumer`` to forward VP8 temporal layers up to ``tid`` (``None``: all); a lower
    cap applies at the next frame, a higher one at a layer-sync frame
    (``Consumer.temporal_target``)."""
    if consumer.temporal_target != tid:
        consumer.temporal_target = tid


def current_rid(consumer: Consumer) -> str | None:
    """The rid of the layer ``consumer`` forwards (``None``: a plain track, audio, or paused)."""
    index = consumer.current_layer
    if index is None or len(consumer.producer.layers) < 2:
        return None
    return consumer.producer.layers[index].rid


def recent_packets(producer: Producer) -> Sequence[bytes]:
    """The last packets an audio producer received (its short history), oldest first."""
    return producer.recent_packets()


def downlink_estimate(media: MediaSession) -> int | None:
    """A media session's downlink estimate in bit/s (``None`` until it has one)."""
    return media.downlink.estimate_bps


#: The link counts as open while the estimate is within this share of its cap (1.5 x acked).
OPEN_SHARE = 0.9
#: ... and the loss the estimator measured is below this.
OPEN_LOSS = 0.02


def link_open(media: MediaSession) -> bool:
    """The downlink estimate is capped by what was sent, not by congestion: it sits at its
    ceiling (``ACKED_CAP`` x the acknowledged bitrate), the delay detector does not see overuse
    and loss is low. The allocator may then try a higher layer (docs/media.md)."""
    downlink = media.downlink
    estimate = downlink.estimate_bps
    estimator = downlink.estimator
    acked = estimator.acked_bps
    if estimate is None or acked is None or estimator.usage is Usage.OVERUSE:
        return False
    if downlink.loss >= OPEN_LOSS:
        return False
    return estimate >= OPEN_SHARE * (ACKED_CAP * acked + 10_000)


#: Loss that counts as congestion (a probe on trial fails).
CONGESTED_LOSS = 0.05


def link_congested(media: MediaSession) -> bool:
    """The downlink shows congestion now: delay overuse, or ``CONGESTED_LOSS`` lost."""
    downlink = media.downlink
    return downlink.estimator.usage is Usage.OVERUSE or downlink.loss >= CONGESTED_LOSS
