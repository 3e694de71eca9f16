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
per-subscription samples to observers (the metrics histograms). Each session is measured on a
phase of its own: the interval is cut into ``SLOTS`` slots, a session joins the least filled one,
and a tick measures only the slots whose time has come, so one tick does ~1/``SLOTS`` of the work
(measuring every session on one tick blocked the event loop ~14 ms at 50 sessions, and the media
packets waiting behind it were the SFU-added p99). The ``stats`` payload is built as the wire object
and sent as it is (``StatsFrame``), not parsed back into ``Stats``. Imports ``rooms`` and the wire
vocabulary (``signaling.messages``); never the rest of ``signaling``, nor ``admin`` or ``metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..ids import SessionId
from ..media.forwarding.layers import ProducerLayer
from ..signaling.messages import StatsFrame
from .mediaview import current_rid, downlink_estimate
from .participant import Participant

if TYPE_CHECKING:
    from ..media.forwarding.consumer import Consumer
    from .service import RoomService

log = logging.getLogger("zvonok.rooms.quality")

#: The interval is cut into this many slots; each session is measured in one of them, so a tick
#: (every 0.25 s, a twentieth of the default 5 s) measures about 1/``SLOTS`` of the sessions.
SLOTS = 20
#: While no track is published on the worker its tick may slow down to once per this share of the
#: interval (1 s at the default 5 s): each session still gets one ``stats`` per interval, up to a
#: fifth of the interval after its slot's time.
IDLE_SHARE = 5


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


class _Phase:
    """One session's place on the monitor's wheel and what its next measurement compares with."""

    __slots__ = ("slot", "owner", "last", "prev", "path")

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.owner: Participant | None = None  # the session its counters are of
        self.last: float | None = None  # when it was last measured (the tick's clock)
        self.prev: dict[str, int] = {}  # counter key -> value at that measurement
        self.path: object = None  # the ICE-selected address seen then


class QualityMonitor:
    """Measures each session every ``interval`` seconds, on a phase of its own (one of ``SLOTS``
    slots of the interval); driven by ``tick(now)``."""

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
        self._phases: dict[SessionId, _Phase] = {}
        self._slots: list[set[SessionId]] = [set() for _ in range(SLOTS)]
        self._origin: float | None = None  # the time of slot 0's first turn
        #: The next slot turn: slot ``_next % SLOTS``, due at ``_origin + _next * width`` (a
        #: slot is ``interval / SLOTS`` wide).
        self._next = 0
        #: The latest ``stats`` payload of each live session (admin API).
        self.latest: dict[str, dict[str, Any]] = {}

    @property
    def idle_period(self) -> float | None:
        """The longest the worker's tick may sleep while nothing is published (``add_tick``'s
        ``idle_period``): a fifth of the interval; None when ``stats`` are off."""
        return self.interval / IDLE_SHARE if self.interval > 0 else None

    def tick(self, now: float) -> None:
        """The worker's housekeeping tick: takes in new sessions, forgets gone ones, and measures
        the sessions of every slot whose turn has come (a slot's turn is due from half a slot
        before its time, so ticks a slot apart take one slot each)."""
        if self.interval <= 0:
            return
        if self._origin is None:
            self._origin = now
        turn = int((now - self._origin) * SLOTS / self.interval + 0.5)  # the last turn due now
        # after a stall (an idle worker's sleep, a suspended process) each slot is measured once,
        # not once per turn missed
        self._next = max(self._next, turn - SLOTS + 1)
        self._admit()
        sessions = self._rooms.sessions
        while self._next <= turn:
            for sid in list(self._slots[self._next % SLOTS]):
                participant = sessions.get(sid)
                if participant is not None:
                    phase = self._phases[sid]
                    elapsed = self.interval if phase.last is None else now - phase.last
                    self._measure_session(participant, phase, elapsed)
                    phase.last = now
            self._next += 1

    def run(self, elapsed: float) -> None:
        """Measure every session now, as if ``elapsed`` had passed since the last measurement of
        each (tests and tools; the tick measures by slot)."""
        self._admit()
        for sid, phase in list(self._phases.items()):
            participant = self._rooms.sessions.get(sid)
            if participant is not None:
                self._measure_session(participant, phase, elapsed)
                if phase.last is not None:
                    phase.last += elapsed

    def _admit(self) -> None:
        """Give each new session a slot (the least filled; of those, the one whose turn comes
        first, so its first ``stats`` comes within one interval, as soon as the balance allows),
        and forget the sessions that are gone."""
        sessions = self._rooms.sessions
        phases = self._phases
        if len(sessions) == len(phases) and sessions.keys() == phases.keys():
            return
        for sid in phases.keys() - sessions.keys():
            self._slots[phases.pop(sid).slot].discard(sid)
            self.latest.pop(sid, None)
        for sid in [sid for sid in sessions if sid not in phases]:
            fill = min(len(members) for members in self._slots)
            slot = min(
                (s for s in range(SLOTS) if len(self._slots[s]) == fill),
                key=lambda s: (s - self._next) % SLOTS,
            )
            phases[sid] = _Phase(slot)
            self._slots[slot].add(sid)

    def _measure_session(self, participant: Participant, phase: _Phase, elapsed: float) -> None:
        """Measure one session, send it its ``stats``, keep the payload for the admin API."""
        sid = participant.session_id
        if participant.closed:
            self.latest.pop(sid, None)
            return
        if phase.owner is not participant:  # the id is another session's now (a new join)
            phase.owner, phase.prev, phase.path = participant, {}, None
        counters: dict[str, int] = {}
        payload = self.measure(participant, elapsed, counters)
        phase.prev = counters
        self.latest[sid] = payload
        if self._send:
            participant.send(StatsFrame(payload))
        self._log_session(participant, payload, phase)

    def _log_session(
        self, participant: Participant, payload: dict[str, Any], phase: _Phase
    ) -> None:
        """ICE path changes (migrations) at INFO; the interval's figures at DEBUG."""
        path = participant.transport.selected_address
        before, phase.path = phase.path, path
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
        """One session's quality; bitrates are against its previous measurement (``None`` before
        one); ``counters`` gets the counters read, for the next one."""
        seen = counters if counters is not None else {}
        sid = participant.session_id
        transport = participant.transport
        phase = self._phases.get(sid)
        prev = phase.prev if phase is not None else {}

        def rate(key: str, value: int) -> int | None:
            seen[key] = value
            return _bitrate(value, prev.get(key), elapsed)

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
