"""Prometheus metrics of a node (``GET /metrics``), all named ``zvonok_*``, labels bounded.

Owns ``Metrics`` (one registry per app: a custom collector, the quality histograms, the
event-loop lag histogram, process metrics) and the ``record_*`` functions the signaling layer
calls. Media counters cost the hot path nothing new: media objects keep plain ``int`` fields
(``Producer.packets_received``, ``Consumer.octets_sent``, ...); at scrape time ``_Folder`` sums
the live objects' fields and adds the last values seen of objects that have since closed, so
every counter stays monotonic (a session's objects are read one last time when it ends, through
the ``session_closing`` room event). No label carries a room, session or user id. A process
of a split node (issue 13) registers what it has: the front no rooms and no media, a worker no
WebSockets; ``merge_expositions`` folds the workers' expositions into the front's, each worker's
samples labelled ``worker="<id>"``.
``Metrics.add_ticks`` puts the lag probe and the quality monitor on a media worker's tick, for
a one-process node and a media worker process alike.
Imports ``rooms`` and ``media`` only for types; never ``signaling`` or ``admin``.
Implements no RFC (RTT/jitter/loss come from RFC 3550 §6.4.1 receiver reports).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from .rooms.events import BaseRoomObserver
from .rooms.mediaview import downlink_estimate, forwarded_layer
from .rooms.quality import QualitySample, temporal_layer

if TYPE_CHECKING:
    from .media.worker import MediaWorker
    from .rooms.participant import Participant
    from .rooms.quality import QualityMonitor
    from .rooms.room import Room
    from .rooms.service import RoomService

log = logging.getLogger("zvonok.metrics")
#: The label every worker sample carries on the front's ``/metrics`` (``merge_expositions``).
WORKER_LABEL = "worker"
#: The worker RPC that answers its exposition as text (``serve_metrics``, ``scrape_workers``).
METRICS_METHOD = "metrics"
#: How long a scrape waits for one worker before counting it down (``zvonok_worker_up`` 0).
SCRAPE_TIMEOUT = 2.0
#: Counters of rare events (signaling, auth, state changes), keyed by (name, *label values).
_EVENTS: Counter[tuple[str, ...]] = Counter()
#: name -> label names of the ``_EVENTS`` counters, and their help text.
_EVENT_FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "signaling_messages": (("direction", "type"), "Signaling messages by direction and type."),
    "signaling_errors": (("code",), "error messages sent to clients, by code."),
    "auth_refusals": (("reason",), "WebSocket upgrades refused, by reason."),
    "edge_refusals": (("reason",), "Connections refused or cut by the edge limits, by reason."),
    "connection_state_transitions": (("state",), "Media connection state changes, by new state."),
    "connection_failures": (("reason",), "Media connections that failed, by cause."),
    "sessions_started": ((), "Sessions that joined (resumes not counted)."),
    "sessions_ended": (("reason",), "Sessions that ended, by participant-left reason."),
    "rooms_started": ((), "Rooms created."),
    "webhook_deliveries": (("result",), "Webhook POST attempts: ok, retry, failed, dropped."),
    "admin_actions": (("action",), "Admin API actions taken."),
}
_CLIENT_TYPES = frozenset({"join", "offer", "answer", "ice", "leave", "track-settings"})


def record(name: str, *labels: str) -> None:
    """Count one event of ``name`` (a key of ``_EVENT_FAMILIES``)."""
    _EVENTS[(name, *labels)] += 1


def record_signaling_message(direction: str, msg_type: str) -> None:
    """One signaling message ``in`` (from a client) or ``out``; unknown client types: other."""
    if direction == "in" and msg_type not in _CLIENT_TYPES:
        msg_type = "other"
    _EVENTS[("signaling_messages", direction, msg_type)] += 1


def record_signaling_error(code: str) -> None:
    _EVENTS[("signaling_errors", code)] += 1


def record_auth_refusal(reason: str) -> None:
    _EVENTS[("auth_refusals", reason)] += 1


# (metric name, object attribute, help); the name gets ``zvonok_`` and ``_total``.
_PRODUCER_FIELDS = (
    ("rtp_packets_received", "packets_received", "RTP packets received from publishers."),
    ("rtp_bytes_received", "bytes_received", "RTP bytes (header + payload) from publishers."),
    ("rtx_packets_received", "rtx_received", "RFC 4588 retransmissions from publishers."),
    ("rtp_dropped_inbound", "dropped", "Inbound RTP dropped by a producer (short, closed, RTX)."),
    ("nacks_sent", "nacks_sent", "Generic NACKs sent to publishers (RFC 4585)."),
    ("keyframe_requests_sent", "keyframe_requests_sent", "PLI/FIR relayed to publishers."),
    ("keyframes_received", "keyframes", "Keyframes spotted after a keyframe request."),
)
_CONSUMER_FIELDS = (
    ("rtp_packets_sent", "packets_sent", "RTP media packets forwarded to subscribers."),
    ("rtp_bytes_sent", "octets_sent", "RTP payload bytes forwarded to subscribers."),
    ("rtp_retransmissions", "rtx_sent", "Packets resent to subscribers answering NACKs."),
    ("rtp_dropped_outbound", "dropped", "Packets not forwarded (waiting for a keyframe, ...)."),
    ("nacks_received", "nacks_received", "Generic NACKs received from subscribers."),
    ("keyframe_requests_received", "keyframe_requests_received", "PLI/FIR from subscribers."),
    ("layer_switches", "layer_switches", "Simulcast layer switches completed for subscribers."),
)
#: Per session (folded like the media objects): adaptive-media events.
_SESSION_FIELDS = (
    ("video_pauses", "bandwidth_pauses", "Received videos held back for bandwidth (track-paused)."),
)
#: ``zvonok_subscriber_downlinks`` bands: (label, upper bound in bit/s), the last unbounded.
DOWNLINK_BANDS = (("lt_300k", 300_000), ("lt_1m", 1_000_000), ("lt_3m", 3_000_000))
_ENDPOINT_FIELDS = (
    ("rtcp_packets_received", "rtcp_in", "Compound RTCP packets received."),
    ("rtcp_malformed", "rtcp_malformed", "Compound RTCP packets that did not parse."),
    ("rtp_unknown_ssrc", "unknown_ssrc", "RTP packets of an SSRC no track claims."),
    ("rtcp_pli_received", "plis", "PLI packets received (RFC 4585 §6.3.1)."),
    ("rtcp_fir_received", "firs", "FIR packets received (RFC 5104 §4.3.1)."),
    ("rtcp_nack_received", "nacks", "Generic NACK packets received (RFC 4585 §6.2.1)."),
)
_TRANSPORT_FIELDS = (
    ("transport_packets_received", "rx_packets", "SRTP/SRTCP datagrams decrypted."),
    ("transport_bytes_received", "rx_bytes", "SRTP/SRTCP bytes received (on the wire)."),
    ("transport_packets_sent", "tx_packets", "SRTP/SRTCP datagrams sent."),
    ("transport_bytes_sent", "tx_bytes", "SRTP/SRTCP bytes sent (on the wire)."),
    ("srtp_errors", "srtp_errors", "Datagrams that failed SRTP protection/authentication."),
    ("media_dropped_not_ready", "rx_dropped", "Media that arrived before DTLS-SRTP was ready."),
    ("stun_requests", "stun_requests", "ICE connectivity checks received."),
)


class _Folder:
    """Monotonic totals over objects that come and go: live values + last values of gone ones."""

    def __init__(self, fields: tuple[tuple[str, str, str], ...]) -> None:
        self.fields = fields
        self.retired: Counter[tuple[str, str]] = Counter()  # (label, attr) -> value
        self._seen: dict[int, tuple[weakref.ref[object], str, tuple[int, ...]]] = {}

    def _read(self, obj: object) -> tuple[int, ...]:
        return tuple(int(getattr(obj, attr, 0) or 0) for _, attr, _ in self.fields)

    def _retire(self, key: int) -> None:
        _, label, values = self._seen.pop(key)
        for (_, attr, _), value in zip(self.fields, values, strict=True):
            self.retired[(label, attr)] += value

    def touch(self, objects: Iterable[tuple[object, str]]) -> None:
        """Remember the current values of ``objects`` (they may be about to close)."""
        for obj, label in objects:
            key = id(obj)
            held = self._seen.get(key)
            if held is not None and held[0]() is not obj:
                self._retire(key)
            self._seen[key] = (weakref.ref(obj), label, self._read(obj))

    def retire(self, objects: Iterable[tuple[object, str]]) -> None:
        """Fold the final values of ``objects`` (about to close) into the totals now, keeping no
        reference: sessions that end between scrapes must not pile up here."""
        for obj, label in objects:
            self._seen.pop(id(obj), None)
            for (_, attr, _), value in zip(self.fields, self._read(obj), strict=True):
                self.retired[(label, attr)] += value

    def totals(self, live: Iterable[tuple[object, str]]) -> Counter[tuple[str, str]]:
        """Touch every live object, retire the others, and return (label, attr) -> total."""
        live_list = list(live)
        self.touch(live_list)
        alive = {id(obj) for obj, _ in live_list}
        for key in [k for k in self._seen if k not in alive]:
            self._retire(key)
        out = Counter(self.retired)
        for _, label, values in self._seen.values():
            for (_, attr, _), value in zip(self.fields, values, strict=True):
                out[(label, attr)] += value
        return out

    def families(self, live: Iterable[tuple[object, str]], label: str | None) -> list[Metric]:
        totals = self.totals(live)
        labels = [label] if label else []
        out: list[Metric] = []
        for name, attr, help_text in self.fields:
            family = CounterMetricFamily(f"zvonok_{name}", help_text, labels=labels)
            values = {lbl: v for (lbl, a), v in totals.items() if a == attr}
            for lbl in ("audio", "video") if label else ("",):
                family.add_metric([lbl] if label else [], values.get(lbl, 0))
            out.append(family)
        return out


def _label(obj: object) -> str:
    return "video" if getattr(obj, "kind", "audio") == "video" else "audio"


class ZvonokCollector(Collector):
    """Reads the rooms and the media worker at scrape time."""

    def __init__(
        self,
        rooms: RoomService | None,
        worker: MediaWorker | None,
        connections: Callable[[], int] | None,
        webhook_queue: Callable[[], int] | None,
    ) -> None:
        self._rooms = rooms
        self._worker = worker
        self._connections = connections
        self._webhook_queue = webhook_queue
        self.producers = _Folder(_PRODUCER_FIELDS)
        self.consumers = _Folder(_CONSUMER_FIELDS)
        self.endpoints = _Folder(_ENDPOINT_FIELDS)
        self.transports = _Folder(_TRANSPORT_FIELDS)
        self.sessions = _Folder(_SESSION_FIELDS)

    def retire_session(self, participant: Participant) -> None:
        """Read a session's media objects one last time before they close."""
        room = participant.room
        producers = [
            entry.producer
            for track_id in participant.published.values()
            if (entry := room.published.get(track_id)) is not None
        ]
        self.producers.retire((p, _label(p)) for p in producers)
        consumers = {id(c): c for p in producers for c in p.consumers}
        consumers.update((id(c), c) for c in participant.consumers.values())
        self.consumers.retire((c, _label(c)) for c in consumers.values())
        self.endpoints.retire([(participant.endpoint, "")])
        self.transports.retire([(participant.transport, "")])
        self.sessions.retire([(participant, "")])

    def collect(self) -> Iterator[Metric]:
        """Every family, in one order; what this process lacks (rooms, a media worker, the
        WebSockets: a front or a worker of a split node) is left out rather than shown as 0."""
        service, worker = self._rooms, self._worker
        rooms = list(service.rooms.values()) if service is not None else []
        sessions = list(service.sessions.values()) if service is not None else []
        if service is not None:
            yield from self._room_gauges(rooms, sessions)
        if self._connections is not None:
            yield GaugeMetricFamily(
                "zvonok_websocket_connections", "Open call WebSockets.", value=self._connections()
            )
        if worker is not None:
            yield GaugeMetricFamily(
                "zvonok_media_transports", "Live WebRTC transports.", value=len(worker.transports)
            )
            yield from self._ice_tcp(worker)
        if service is not None:
            yield GaugeMetricFamily(
                "zvonok_draining",
                "1 while the node drains (takes no new rooms) or shuts down (refuses joins).",
                value=1 if service.closing or service.draining else 0,
            )
            yield GaugeMetricFamily(
                "zvonok_drain_seconds_left",
                "Seconds until drain_timeout ends the drain (0 when not draining).",
                value=round(service.drain_seconds_left(), 1),
            )
        if self._webhook_queue is not None:
            yield GaugeMetricFamily(
                "zvonok_webhook_queue_depth", "Webhook events waiting.", value=self._webhook_queue()
            )
        if service is not None:
            producers = [p for r in rooms for p in r.router.producers.values()]
            consumers = [c for r in rooms for c in r.router.consumers.values()]
            yield from self.producers.families(((p, _label(p)) for p in producers), "kind")
            yield from self.consumers.families(((c, _label(c)) for c in consumers), "kind")
            yield from self.endpoints.families(((s.endpoint, "") for s in sessions), None)
            yield from self.sessions.families(((s, "") for s in sessions), None)
            yield from _adaptive_gauges(sessions)
        if worker is not None:
            transports = list(worker.transports.values())
            yield from self.transports.families(((t, "") for t in transports), None)
        yield from _event_families()

    def _room_gauges(
        self, rooms: list[Room[Participant]], sessions: list[Participant]
    ) -> Iterator[Metric]:
        yield GaugeMetricFamily("zvonok_rooms", "Rooms on this node.", value=len(rooms))
        by_state = GaugeMetricFamily(
            "zvonok_sessions", "Sessions by media connection state.", labels=["state"]
        )
        states = Counter(s.state.value for s in sessions)
        for state in ("new", "connecting", "connected", "disconnected", "failed", "closed"):
            by_state.add_metric([state], states.get(state, 0))
        yield by_state
        tracks = GaugeMetricFamily("zvonok_tracks", "Published tracks by kind.", labels=["kind"])
        subs = GaugeMetricFamily(
            "zvonok_subscriptions", "Forwarded copies of tracks (consumers).", labels=["kind"]
        )
        kinds = Counter(_label(e.producer) for r in rooms for e in r.published.values())
        sub_kinds = Counter(_label(c) for r in rooms for c in r.router.consumers.values())
        for kind in ("audio", "video"):
            tracks.add_metric([kind], kinds.get(kind, 0))
            subs.add_metric([kind], sub_kinds.get(kind, 0))
        yield tracks
        yield subs
        muted = sum(len(r.muted) for r in rooms)
        yield GaugeMetricFamily("zvonok_muted_tracks", "Tracks muted by an operator.", value=muted)

    def _ice_tcp(self, worker: MediaWorker) -> Iterator[Metric]:
        """Sessions by selected path, and the ICE-TCP listener's connections and refusals."""
        paths = GaugeMetricFamily(
            "zvonok_media_paths",
            "Transports by the protocol of their selected candidate pair.",
            labels=["protocol"],
        )
        counts = Counter(t.selected_protocol for t in worker.transports.values())
        for protocol in ("udp", "tcp"):
            paths.add_metric([protocol], counts.get(protocol, 0))
        yield paths
        tcp = worker.tcp
        if tcp is None:
            return
        stats = tcp.stats()
        open_ = GaugeMetricFamily(
            "zvonok_ice_tcp_connections", "Open ICE-TCP connections.", labels=["authenticated"]
        )
        open_.add_metric(["yes"], stats["connections"] - stats["unauthenticated"])
        open_.add_metric(["no"], stats["unauthenticated"])
        yield open_
        closed = CounterMetricFamily(
            "zvonok_ice_tcp_closed",
            "ICE-TCP connections closed by the server, by reason.",
            labels=["reason"],
        )
        for reason in ("over_cap", "evicted", "timed_out", "refused", "slow_readers"):
            closed.add_metric([reason], stats[reason])
        yield closed
        yield CounterMetricFamily(
            "zvonok_ice_tcp_send_dropped",
            "Packets not queued on an ICE-TCP connection (its reader too slow).",
            value=stats["tx_dropped"],
        )


def _adaptive_gauges(sessions: list[Participant]) -> Iterator[Metric]:
    """Subscribers by downlink estimate band, received videos by layer, by VP8 temporal cap and
    by hold reason."""
    bands = GaugeMetricFamily(
        "zvonok_subscriber_downlinks",
        "Sessions by their downlink estimate (bit/s band; none: no estimate yet).",
        labels=["band"],
    )
    by_band: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    temporal: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for session in sessions:
        if session.closed:
            continue
        estimate = downlink_estimate(session.media)
        by_band[_band(estimate)] += 1
        for consumer in session.consumers.values():
            if consumer.kind == "video" and not consumer.closed:
                layer = forwarded_layer(consumer)
                layers["none" if layer is None else str(min(layer, 2))] += 1
                if layer is not None:
                    cap = temporal_layer(consumer)
                    temporal["all" if cap is None else str(min(cap, 2))] += 1
        held.update(session.held.values())
    for band in ("none", *(name for name, _ in DOWNLINK_BANDS), "ge_3m"):
        bands.add_metric([band], by_band.get(band, 0))
    yield bands
    by_layer = GaugeMetricFamily(
        "zvonok_video_subscriptions_by_layer",
        "Received video tracks by the layer forwarded: simulcast layer, or VP9 spatial layer"
        " (0 lowest; none: paused).",
        labels=["layer"],
    )
    for name in ("0", "1", "2", "none"):
        by_layer.add_metric([name], layers.get(name, 0))
    yield by_layer
    by_temporal = GaugeMetricFamily(
        "zvonok_video_subscriptions_by_temporal_layer",
        "Received video tracks with a layer forwarded, by the highest VP8 temporal layer "
        "forwarded (0: the base, 7.5 fps of Chrome's 30; all: not capped).",
        labels=["temporal_layer"],
    )
    for name in ("0", "1", "2", "all"):
        by_temporal.add_metric([name], temporal.get(name, 0))
    yield by_temporal
    paused = GaugeMetricFamily(
        "zvonok_video_held",
        "Received video tracks held back now, by reason (bandwidth, subscriber).",
        labels=["reason"],
    )
    for reason in ("bandwidth", "subscriber"):
        paused.add_metric([reason], held.get(reason, 0))
    yield paused


def _band(estimate: int | None) -> str:
    if estimate is None:
        return "none"
    for name, bound in DOWNLINK_BANDS:
        if estimate < bound:
            return name
    return "ge_3m"


def _event_families() -> Iterator[Metric]:
    counts = dict(_EVENTS)
    for name, (labels, help_text) in _EVENT_FAMILIES.items():
        family = CounterMetricFamily(f"zvonok_{name}", help_text, labels=list(labels))
        found = False
        for key, value in counts.items():
            if key[0] == name:
                family.add_metric(list(key[1:]), value)
                found = True
        if not found and not labels:
            family.add_metric([], 0)
        yield family


class MetricsObserver(BaseRoomObserver):
    """Room events → rare-event counters; a closing session's counters are read one last time."""

    def __init__(self, collector: ZvonokCollector) -> None:
        self._collector = collector

    def room_started(self, room: Room[Participant]) -> None:
        record("rooms_started")

    def participant_joined(self, participant: Participant) -> None:
        record("sessions_started")

    def participant_left(self, participant: Participant, reason: str) -> None:
        record("sessions_ended", reason)

    def session_closing(self, participant: Participant) -> None:
        self._collector.retire_session(participant)

    def connection_state(self, participant: Participant, previous: str, state: str) -> None:
        record("connection_state_transitions", state)
        if state == "failed":
            record("connection_failures", _failure_cause(participant, previous))


def _failure_cause(participant: Participant, previous: str) -> str:
    """``dtls`` (handshake failed or timed out) or ``ice-consent`` (RFC 7675 consent lost)."""
    if previous in ("new", "connecting"):
        return "dtls"
    return "ice-consent"


#: Buckets for the RR-derived histograms (seconds, seconds, ratio) and the loop lag.
RTT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
JITTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
LOSS_BUCKETS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The registry of one app, plus the hooks that feed it (room events, quality, tick)."""

    def __init__(
        self,
        *,
        rooms: RoomService | None = None,
        worker: MediaWorker | None = None,
        connections: Callable[[], int] | None = None,
        tick_interval: float,
        webhook_queue: Callable[[], int] | None = None,
    ) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = ZvonokCollector(rooms, worker, connections, webhook_queue)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        self.registry.register(GC_COLLECTOR)
        self.observer = MetricsObserver(self.collector)
        self._tick_interval = tick_interval
        self._last_tick: float | None = None
        kind = ("kind",)
        self.rtt = Histogram(
            "zvonok_rtt_seconds", "Round-trip time to subscribers, from receiver reports.",
            kind, buckets=RTT_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.jitter = Histogram(
            "zvonok_jitter_seconds", "Interarrival jitter subscribers report.",
            kind, buckets=JITTER_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.loss = Histogram(
            "zvonok_loss_ratio", "Fraction lost subscribers report per interval.",
            kind, buckets=LOSS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "zvonok_event_loop_lag_seconds", "How late the media housekeeping tick ran.",
            buckets=LAG_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._quality_children: dict[str, tuple[Histogram, Histogram, Histogram]] = {}

    def observe_quality(self, sample: QualitySample) -> None:
        """One subscription's receiver-report figures (called once per stats interval). The
        labelled children are looked up once per kind (``labels`` locks and builds a key on every
        call); a kind's series still appear with its first sample."""
        children = self._quality_children.get(sample.kind)
        if children is None:
            kind = sample.kind
            children = (self.rtt.labels(kind), self.jitter.labels(kind), self.loss.labels(kind))
            self._quality_children[kind] = children
        rtt, jitter, loss = children
        if sample.rtt is not None:
            rtt.observe(sample.rtt)
        jitter.observe(sample.jitter)
        loss.observe(sample.loss)

    def on_tick(self, now: float, *, restart: bool = False, interval: float | None = None) -> None:
        """The worker's housekeeping tick: its lateness is the event loop's lag. ``restart``:
        the tick was paused before this one (an idle media worker sleeps), so this one only
        starts the clock. ``interval``: what the tick slept before this one (a media worker's
        tick is slower while nothing is published); default the ``tick_interval`` given."""
        last, self._last_tick = self._last_tick, now
        if last is not None and not restart:
            expected = self._tick_interval if interval is None else interval
            self.loop_lag.observe(max(0.0, now - last - expected))

    def add_ticks(self, worker: MediaWorker, quality: QualityMonitor) -> list[Callable[[], None]]:
        """This loop-lag probe and ``quality`` on ``worker``'s tick, without keeping it awake:
        they have nothing to do while the process holds no transport, so an empty node's (or
        media worker process's) tick sleeps (``MediaWorker.idle``); the first tick after a pause
        only restarts the lag probe's clock. Returns the unsubscribe functions."""

        def loop_lag(now: float) -> None:
            self.on_tick(now, restart=worker.awake_ticks <= 1, interval=worker.slept)

        return [
            worker.add_tick(loop_lag, keep_awake=False),
            worker.add_tick(quality.tick, keep_awake=False, idle_period=quality.idle_period),
        ]

    def render(self) -> tuple[bytes, str]:
        """The text exposition of everything (``GET /metrics``)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def render_merged(self, workers: Mapping[str, bytes | str | None]) -> tuple[bytes, str]:
        """This process's exposition with every worker's merged in (``merge_expositions``)."""
        return merge_expositions(self.render()[0], workers), CONTENT_TYPE_LATEST


class _Families(Collector):
    """Already-built families, for ``generate_latest``."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge_expositions(own: bytes | str, workers: Mapping[str, bytes | str | None]) -> bytes:
    """One Prometheus text exposition of a front and its workers (what the front's ``/metrics``
    serves on a split node).

    ``own`` is the front's exposition, kept as it is: its samples stay unlabelled, so a
    one-process node's series are unchanged. ``workers`` maps a worker id to its exposition
    (``None``: it did not answer); each of its samples gets ``worker="<id>"`` (replacing any
    ``worker`` label it had). Families of one name are merged under one HELP/TYPE (the first
    seen); a worker family whose type disagrees is dropped (logged). Both are parsed with
    prometheus_client's text parser and written back with its writer, so counters keep their
    ``_total``. ``zvonok_worker_up{worker}`` is 1 for each worker whose exposition was merged,
    0 for one that did not answer or sent something that does not parse. Summing a family
    over ``worker`` (``sum without (worker)``) gives the node's figure.
    """
    merged: dict[str, Metric] = {family.name: family for family in _parse(own)}
    up = GaugeMetricFamily(
        "zvonok_worker_up", "1 if the worker's metrics were in this scrape.", labels=[WORKER_LABEL]
    )
    for worker, exposition in workers.items():
        try:
            families = _parse(exposition) if exposition is not None else None
        except Exception as exc:  # a worker's garbage must not break the front's /metrics
            log.warning("metrics of worker %s do not parse: %r", worker, exc)
            families = None
        up.add_metric([worker], 0 if families is None else 1)
        for family in families or []:
            target = merged.get(family.name)
            if target is None:
                target = Metric(family.name, family.documentation, family.type)
                merged[family.name] = target
            elif target.type != family.type:
                log.warning(
                    "metric %s of worker %s is a %s, not a %s: dropped",
                    family.name, worker, family.type, target.type,
                )  # fmt: skip
                continue
            target.samples.extend(
                sample._replace(labels={**sample.labels, WORKER_LABEL: worker})
                for sample in family.samples
            )
    if workers:
        merged[up.name] = up
    return generate_latest(_Families(list(merged.values())))


def _parse(exposition: bytes | str) -> list[Metric]:
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    return list(text_string_to_metric_families(text))


def serve_metrics(metrics: Metrics) -> str:
    """A worker's answer to ``METRICS_METHOD``: its exposition, as JSON-able text."""
    return metrics.render()[0].decode()


async def scrape_workers(
    calls: Mapping[str, Callable[[str, dict[str, Any]], Awaitable[Any]]],
    *,
    within: float = SCRAPE_TIMEOUT,
) -> dict[str, str | None]:
    """The front asks every worker for its exposition at once: worker id → text, or None for a
    worker that failed, took longer than ``within`` seconds or answered something else."""
    items = list(calls.items())
    replies = await asyncio.gather(
        *(asyncio.wait_for(call(METRICS_METHOD, {}), within) for _, call in items),
        return_exceptions=True,
    )
    out: dict[str, str | None] = {}
    for (worker, _), reply in zip(items, replies, strict=True):
        if isinstance(reply, BaseException) and not isinstance(reply, Exception):
            raise reply
        if not isinstance(reply, str):
            log.warning("metrics of worker %s not scraped: %r", worker, reply)
            out[worker] = None
        else:
            out[worker] = reply
    return out
