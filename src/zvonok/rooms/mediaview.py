"""What the rooms layer reads and sets of the adaptive media objects, in one place.

Owns the small surface between ``rooms`` (allocation, dynacast, stats, active speaker) and the
media layer's simulcast and congestion control (docs/media.md "Simulcast", "Congestion
control"): a producer's ``layers`` (``ProducerLayer``: ``rid``, ``bitrate``, ``active``,
``width``, ``height``, ``temporal_bitrates``; one for a plain track — except a VP9 SVC
track, whose spatial layers are shown as its layers: ``spatial_bitrates``, ``spatial_sizes``,
``spatial_temporal_bitrates``), a consumer's ``target_layer`` / ``current_layer`` /
``layer_switches`` / ``temporal_target`` (and ``spatial_target`` for SVC), an audio
producer's ring of packets (``packet_ring``) and the newest sequence number it received
(``newest_seq``), and a media session's downlink estimate
(``MediaSession.downlink.estimate_bps``: ``None`` until the subscriber's transport-wide CC
feedback gave one).
Implements no RFC.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..media.forwarding.bwe import ACKED_CAP, Usage
from ..media.forwarding.consumer import ConsumedTrack, Consumer
from ..media.forwarding.history import PacketHistory
from ..media.forwarding.layers import ProducerLayer
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


def svc_layers(producer: Producer | ConsumedTrack) -> int:
    """How many spatial layers the VP9 SVC stream of ``producer`` carries (measured over the
    last bitrate window); 0 when it is not one (simulcast, one spatial layer, other codecs)."""
    layers = producer.layers
    if len(layers) != 1 or not isinstance(layers[0], ProducerLayer):
        return 0
    count = len(layers[0].spatial_bitrates)
    return count if count > 1 else 0


def producer_layers(producer: Producer) -> list[LayerView]:
    """The layers of ``producer``, lowest quality first; a plain producer has one, a VP9 SVC
    one a layer per spatial layer (its bitrate: that spatial layer and those below together,
    what a subscriber capped there receives; its size from the scalability structure)."""
    spatial = svc_layers(producer)
    if spatial:
        layer = producer.layers[0]
        assert isinstance(layer, ProducerLayer)
        sizes = layer.spatial_sizes if len(layer.spatial_sizes) == spatial else ()
        per_spatial = layer.spatial_temporal_bitrates
        return [
            LayerView(
                None,
                layer.spatial_bitrates[sid],
                layer.active,
                sizes[sid][0] if sizes else None,
                sizes[sid][1] if sizes else None,
                temporal_shares(per_spatial[sid]) if sid < len(per_spatial) else (),
            )
            for sid in range(spatial)
        ]
    return [
        LayerView(
            layer.rid,
            layer.bitrate,
            layer.active,
            layer.width,
            layer.height,
            temporal_shares(layer.temporal_bitrates),
        )
        for layer in producer.layers
    ]


def temporal_shares(cumulative: tuple[int, ...]) -> tuple[float, ...]:
    """The share of the top rate each lower temporal cap keeps, from cumulative bitrates per
    TID (``ProducerLayer.temporal_bitrates``); empty without temporal layers."""
    if len(cumulative) < 2 or cumulative[-1] <= 0:
        return ()
    return tuple(rate / cumulative[-1] for rate in cumulative[:-1])


def is_simulcast(producer: Producer) -> bool:
    return len(producer.layers) > 1


def set_target_layer(consumer: Consumer, layer: int | None) -> None:
    """Ask ``consumer`` to forward ``layer`` (``None``: hold the video back); the switch itself
    waits for a keyframe of that layer (``Consumer.target_layer``). For a VP9 SVC track the
    layer is a spatial layer: the consumer forwards spatial layers up to it
    (``Consumer.spatial_target``; the top one: all of them)."""
    spatial = svc_layers(consumer.producer)
    if spatial or consumer.spatial_target is not None:
        sid = None if layer is None or layer >= spatial - 1 else layer
        if consumer.spatial_target != sid:
            consumer.spatial_target = sid
        if spatial:
            layer = None if layer is None else 0
    if consumer.target_layer != layer:
        consumer.target_layer = layer


def set_temporal_target(consumer: Consumer, tid: int | None) -> None:
    """Ask ``consumer`` to forward VP8 temporal layers up to ``tid`` (``None``: all); a lower
    cap applies at the next frame, a higher one at a layer-sync frame
    (``Consumer.temporal_target``)."""
    if consumer.temporal_target != tid:
        consumer.temporal_target = tid


def current_rid(consumer: Consumer) -> str | None:
    """The rid of the layer ``consumer`` forwards (``None``: a plain track, audio, or paused);
    for a VP9 SVC track ``s0``, ``s1``...: the highest spatial layer forwarded."""
    index = forwarded_layer(consumer)
    if index is None:
        return None
    if svc_layers(consumer.producer):
        return f"s{index}"
    if len(consumer.producer.layers) < 2:
        return None
    return consumer.producer.layers[index].rid


def forwarded_layer(consumer: Consumer) -> int | None:
    """The layer ``consumer`` forwards, 0 lowest (``None``: paused, or nothing yet): the
    simulcast layer's index, or for a VP9 SVC track the highest spatial layer forwarded."""
    index = consumer.current_layer
    if index is None:
        return None
    spatial = svc_layers(consumer.producer)
    if spatial:
        cap = consumer.current_spatial
        return spatial - 1 if cap is None else min(cap, spatial - 1)
    return index


def packet_ring(producer: Producer) -> PacketHistory | None:
    """The ring of ``producer``'s last packets by sequence number (an audio producer's 64,
    ``PacketHistory.get``), to read packets in place; None when it keeps none."""
    return producer.layers[0].ring


def newest_seq(producer: Producer) -> int | None:
    """The highest sequence number ``producer`` received (RFC 3550 A.1 ``max_seq``; ``None``
    before its first packet): a plain attribute read, so a track that received nothing since
    the last look costs nothing more."""
    stats = producer.layers[0].stats
    return stats.max_seq if stats.started else None


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
