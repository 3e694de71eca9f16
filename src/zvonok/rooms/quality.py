"""Per-session call quality: the periodic ``stats`` message and the operators' view of it.

Owns ``QualityMonitor``: on the media worker's housekeeping tick (no timer of its own, no
per-session timer) it measures, every ``interval`` seconds, each session's bitrate in and out,
and per track the packets, loss, jitter and round-trip time, from the plain counters the media
objects already keep (``WebRtcTransport.rx_bytes``, ``Producer.stats``, ``Consumer.fraction_lost``
/ ``jitter`` / ``rtt`` taken from the subscriber's receiver reports, RFC 3550 §6.4.1 and A.8), and
the adaptive-media state (the downlink estimate, the simulcast layer each subscriber gets and how
often it switched, through ``rooms.mediaview``; the VP8 temporal cap in force,
``Consumer.current_temporal``).
It sends each session a ``stats`` message, keeps the latest one for the admin API and hands
per-subscription samples to observers (the metrics histograms). Imports ``rooms`` and the wire
vocabulary (``signaling.messages``); never the rest of ``signaling``, nor ``admin`` or ``metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..media.forwarding.layers import ProducerLayer
from ..signaling.messages import Stats
from .mediaview import current_rid, downlink_estimate
from .participant import Participant

if TYPE_CHECKING:
    from ..media.forwarding.consumer import Consumer
    from .service import RoomService

log = logging.getLogger("zvonok.rooms.quality")


@dataclass(frozen=True, slots=True)
class QualitySample:
    """What a subscriber reported about one received track in the last interval."""

    kind: str
    rtt: float | None  # seconds
    jitter: float  # seconds
    loss: float  # 0..1, the RR's fraction lost


def _bitrate(now_value: int, prev: int | None, elapsed: float) -> int | None:
    if prev is None or elapsed <= 0 or now_value < prev:
        return None
    return int((now_value - prev) * 8 / elapsed)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def temporal_layer(consumer: Consumer) -> int | None:
    """The highest VP8 temporal layer (TID) ``consumer`` forwards now (``Consumer.current_temporal``
    on the layer it forwards); ``None`` when it forwards every one, or the track has none (audio,
    another codec) or no layer is forwarded (paused for bandwidth). A cap lifted but still in
    force until a keyframe (the PictureIDs are still shifted) that keeps every TID the layer
    carries is every one too."""
    cap = consumer.current_temporal
    index = consumer.current_layer
    if cap is None or index is None:
        return None
    layer = consumer.producer.layers[index]
    top = len(layer.temporal_bitrates) - 1 if isinstance(layer, ProducerLayer) else -1
    return None if 0 <= top <= cap else cap


class QualityMonitor:
    """Measures every session each ``interval`` seconds; driven by ``tick(now)``."""

    def __init__(
        self,
        rooms: RoomService,
        *,
        interval: float = 5.0,
        send: bool = True,
        observers: list[Callable[[QualitySample], None]] | None = None,
    ) -> None:
        self._rooms = rooms
        self.interval = interval
        self._send = send
        self.observers = list(observers or [])
        self._last_run: float | None = None
        self._prev: dict[str, int] = {}  # counter key -> value at the previous run
        self._paths: dict[str, object] = {}  # session -> ICE-selected address last seen
        #: The latest ``stats`` payload of each live session (admin API).
        self.latest: dict[str, dict[str, Any]] = {}

    def tick(self, now: float) -> None:
        """The worker's housekeeping tick; measures once ``interval`` has passed."""
        if self.interval <= 0:
            return
        if self._last_run is not None and now - self._last_run < self.interval * 0.98:
            return
        elapsed = self.interval if self._last_run is None else now - self._last_run
        self._last_run = now
        self.run(elapsed)

    def run(self, elapsed: float) -> None:
        """Measure every session now, send ``stats``, feed the observers."""
        counters: dict[str, int] = {}
        latest: dict[str, dict[str, Any]] = {}
        paths: dict[str, object] = {}
        for participant in list(self._rooms.sessions.values()):
            if participant.closed:
                continue
            payload = self.measure(participant, elapsed, counters)
            latest[participant.session_id] = payload
            if self._send:
                participant.send(Stats.parse(payload))
            self._log_session(participant, payload, paths)
        self._prev = counters
        self.latest = latest
        self._paths = paths

    def _log_session(
        self, participant: Participant, payload: dict[str, Any], paths: dict[str, object]
    ) -> None:
        """ICE path changes (migrations) at INFO; the interval's figures at DEBUG."""
        path = participant.transport.selected_address
        paths[participant.session_id] = path
        before = self._paths.get(participant.session_id)
        if before is not None and path is not None and path != before:
            participant.log.info("ICE: media path moved from %s to %s", before, path)
        if participant.log.isEnabledFor(logging.DEBUG):
            receiving = payload["receiving"]
            participant.log.debug(
                "quality: in %s bit/s, out %s bit/s, rtt %s ms; keyframe requests %d, NACKs %d "
                "from this subscriber (totals)",
                payload["bitrateIn"],
                payload["bitrateOut"],
                payload["rttMs"],
                sum(r["keyframeRequests"] for r in receiving),
                sum(r["nacks"] for r in receiving),
            )

    def measure(
        self, participant: Participant, elapsed: float, counters: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """One session's quality; bitrates are against the previous run (``None`` before one)."""
        seen = counters if counters is not None else {}
        sid = participant.session_id
        transport = participant.transport

        def rate(key: str, value: int) -> int | None:
            seen[key] = value
            return _bitrate(value, self._prev.get(key), elapsed)

        published = [
            self._published(participant, mid, track_id, rate)
            for mid, track_id in participant.published.items()
        ]
        receiving = [
            self._receiving(participant, track_id, rate) for track_id in list(participant.consumers)
        ]
        rtts = [r["rttMs"] for r in receiving if r["rttMs"] is not None]
        return {
            "intervalMs": int(self.interval * 1000),
            "state": participant.state.value,
            "bitrateIn": rate(f"{sid}/in", transport.rx_bytes),
            "bitrateOut": rate(f"{sid}/out", transport.tx_bytes),
            "rttMs": round(sum(rtts) / len(rtts), 1) if rtts else None,
            "published": [p for p in published if p is not None],
            "receiving": receiving,
            "downlinkBps": downlink_estimate(participant.media),
        }

    def _published(
        self,
        participant: Participant,
        mid: str,
        track_id: str,
        rate: Callable[[str, int], int | None],
    ) -> dict[str, Any] | None:
        entry = participant.room.published.get(track_id)
        if entry is None:
            return None
        producer = entry.producer
        stats = producer.stats
        lost = max(0, stats.lost) if stats.started else 0
        return {
            "trackId": track_id,
            "mid": mid,
            "kind": producer.kind,
            "bitrate": rate(f"p/{track_id}", producer.bytes_received),
            "packets": producer.packets_received,
            "packetsLost": lost,
            "jitterMs": round(stats.jitter / producer.clock_rate * 1000, 1),
            "keyframes": producer.keyframes,
            "nacksSent": producer.nacks_sent,
            "muted": track_id in participant.room.muted,
        }

    def _receiving(
        self, participant: Participant, track_id: str, rate: Callable[[str, int], int | None]
    ) -> dict[str, Any]:
        consumer = participant.consumers[track_id]
        # Keyed by the producer it reads; its id names the track it delivers ("<session>/<track
        # id>"), also when that producer is the track's backup stream (codec steering).
        track_id = consumer.id.rpartition("/")[2]
        producer = consumer.producer
        entry = participant.room.published.get(track_id)
        jitter = consumer.jitter / producer.clock_rate
        loss = consumer.fraction_lost / 256
        paused = consumer.paused or track_id in participant.held
        sample = QualitySample(consumer.kind, consumer.rtt, jitter, loss)
        for observer in self.observers:
            try:
                observer(sample)
            except Exception:
                log.exception("quality observer %r failed", observer)
        return {
            "trackId": track_id,
            "kind": consumer.kind,
            "sessionId": entry.publisher.session_id if entry else None,
            "userId": entry.publisher.user_id if entry else None,
            "bitrate": rate(f"{participant.session_id}/c/{track_id}", consumer.octets_sent),
            "packets": consumer.packets_sent,
            "rtx": consumer.rtx_sent,
            "fractionLost": round(loss, 4),
            "packetsLost": consumer.packets_lost,
            "jitterMs": round(jitter * 1000, 1),
            "rttMs": _ms(consumer.rtt),
            "nacks": consumer.nacks_received,
            "keyframeRequests": consumer.keyframe_requests_received,
            "paused": paused,
            "layer": current_rid(consumer),
            "layerSwitches": consumer.layer_switches,
            "temporalLayer": None if paused else temporal_layer(consumer),
        }
