"""Adaptive media of one room: layer allocation, dynacast and the active speaker, on a tick.

Owns ``RoomAdaptation``, driven by the media worker's housekeeping tick (every 0.25 s, no timer
of its own). Each tick it runs the room's ``ActiveSpeakers`` (``rooms.speakers``); every
``ALLOCATE_EVERY`` seconds — and at once for a subscriber whose wishes (``track-settings``) or
downlink estimate changed — it runs that subscriber's ``LayerAllocator`` (``rooms.allocation``)
over the video tracks it receives, sets each consumer's target layer (and VP8 temporal cap), and
tells the subscriber ``track-paused`` when a track is held back or resumed; then each simulcast
track's ``Dynacast`` gets the union of its subscribers' layers and tells the publisher
``publish-layers`` when that changes (docs/media.md, "Layer allocation"). What it reads of the
media objects goes through ``rooms.mediaview``, and the layers a publisher announced it stopped
(``Producer.stopped_layers``: its video layers allocation). A track an operator muted is left
alone (moderation pauses it). A room with nothing published skips all of this once a tick
has found nothing left to say or undo (no speaker named, nothing held, no subscriber with wishes
or a downlink estimate): an idle room's tick costs a look at its members, and the first tick
after a track is published (or a wish or an estimate comes) runs the whole pass as before.

A layer the publisher stopped by itself (its encoder dropped it for a short uplink: announced,
or silent) is not available, and neither are — while some layer still flows — the layers
dynacast turned off above the highest one that flows: the publisher could not send them now,
and a subscriber moved there would wait for a layer that may never come instead of getting the
one that flows (docs/media.md, "Layer switching").
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from ..media.forwarding.layers import ProducerLayer
from ..signaling.messages import LayerState, PublishLayers, TrackPaused
from .allocation import Decision, Dynacast, Layer, LayerAllocator, VideoTrack, Wish
from .mediaview import (
    LayerView,
    downlink_estimate,
    is_simulcast,
    link_congested,
    link_open,
    producer_layers,
    set_target_layer,
    set_temporal_target,
    svc_layers,
    temporal_shares,
)
from .participant import Participant
from .room import PublishedEntry, Room
from .speakers import ActiveSpeakers

log = logging.getLogger("zvonok.rooms.adaptive")
#: Seconds between two allocation passes over every subscriber of a room.
ALLOCATE_EVERY = 0.5
#: An estimate that moved by more than this share since the last pass is a change (run at once).
ESTIMATE_CHANGE = 0.1
#: Per tick, how much of a layer's remembered bitrate peak is kept when it measures lower
#: (0.98 per 250 ms: about half after 8 s).
BITRATE_DECAY = 0.98
#: The bitrate assumed for a layer never measured, by its rank from the top (bit/s): the SDK's
#: 1/4, 1/2 and full-size encodings of a 720p camera as Chrome sends them uncongested.
NOMINAL_BITRATES = (1_500_000, 500_000, 150_000)


@dataclass(slots=True)
class _Subscriber:
    allocator: LayerAllocator
    estimate: int | None = None
    #: After a pass without a downlink estimate: what it decided on and left behind
    #: (``_settled_inputs``). A pass without an estimate is idempotent (wishes and the layers'
    #: availability alone decide, and it sets what it decided), so the next one is skipped
    #: when these are unchanged. None after a pass with an estimate (its hold timers move).
    inputs: tuple[object, ...] | None = None


class RoomAdaptation:
    """The adaptive-media decisions of one room; ``tick(now)`` on every housekeeping tick."""

    def __init__(self, room: Room[Participant]) -> None:
        self.room = room
        self.speakers: ActiveSpeakers[Participant] = ActiveSpeakers(room)
        self._subscribers: dict[str, _Subscriber] = {}
        self._dynacast: dict[str, Dynacast] = {}
        #: (track id, layer) -> its last measured bitrate while it flowed.
        self._measured: dict[tuple[str, int], int] = {}
        #: (track id, layer) whose VP8 temporal layers were seen (logged once).
        self._temporal_seen: set[tuple[str, int]] = set()
        #: track id -> session id -> the layer that subscriber was given (None: paused).
        self.targets: dict[str, dict[str, int | None]] = {}
        self._next_pass = float("-inf")
        #: Which layers of which tracks could be sent at the last tick: a change (a publisher's
        #: encoder stopped a layer for its uplink, or started it again) reallocates at once.
        self._available: tuple[tuple[str, tuple[bool, ...]], ...] = ()
        #: The last tick found the room without published tracks and left nothing to do
        #: (``_quiet``): the ticks after it skip the room's work until a track is published or
        #: a member sends wishes or gets a downlink estimate (``_stirred``).
        self._settled = False

    # ------------------------------------------------------------------ the tick
    def tick(self, now: float) -> None:
        room = self.room
        if room.closed:
            return
        due = now >= self._next_pass
        if due:
            self._next_pass = now + ALLOCATE_EVERY * 0.95
        if self._settled and not room.published and not self._stirred():
            return
        self.speakers.tick(now)
        tracks = self._video_tracks(now)
        available = tuple((t, tuple(x.available for x in v.layers)) for t, v in tracks.items())
        changed, self._available = available != self._available, available
        for participant in list(room.participants.values()):
            if participant.closed:
                continue
            sub = self._subscribers.get(participant.session_id)
            if sub is None:
                sub = self._subscribers[participant.session_id] = _Subscriber(LayerAllocator())
            estimate = downlink_estimate(participant.media)
            if due or changed or participant.wishes_changed or _moved(sub.estimate, estimate):
                participant.wishes_changed = False
                sub.estimate = estimate
                if estimate is not None:
                    sub.inputs = None
                elif self._same_pass(participant, sub, tracks):
                    continue  # it would decide and set what the last pass did
                self._allocate(now, participant, sub, tracks)
                if estimate is None:
                    sub.inputs = _settled_inputs(participant, tracks, self.room.muted)
        self._forget()
        if due:
            self._dynacast_pass(now, tracks)
        self._settled = not room.published and self._quiet()

    def _same_pass(
        self, participant: Participant, sub: _Subscriber, tracks: dict[str, VideoTrack]
    ) -> bool:
        """An allocation pass for ``participant`` without a downlink estimate would change
        nothing: the last pass had none either and left what this one would read and set as it
        is (``_settled_inputs``). Such a pass decides on the wishes and the layers' availability
        alone (and the tracks' sizes for a wish's size), sets the consumers' targets to what it
        decided and says nothing when what is held back stays the same."""
        inputs = sub.inputs
        return inputs is not None and inputs == _settled_inputs(
            participant, tracks, self.room.muted
        )

    def _quiet(self) -> bool:
        """After a tick of a room with no published track: nothing of it is left to say or
        undo, so the next ticks would change nothing until a track, a wish or an estimate
        comes (no speaker named, no meter, every subscriber without an estimate, nothing held)."""
        speakers = self.speakers
        if speakers.sent or speakers.ranking.meters or self.targets or self._dynacast:
            return False
        for participant in self.room.participants.values():
            if participant.held or participant.wishes or self._stirred_one(participant):
                return False
        return True

    def _stirred(self) -> bool:
        """Whether a member of a settled room brings something the tick must look at."""
        for participant in self.room.participants.values():
            if self._stirred_one(participant):
                return True
        return False

    @staticmethod
    def _stirred_one(participant: Participant) -> bool:
        return participant.wishes_changed or downlink_estimate(participant.media) is not None

    def _forget(self) -> None:
        live = self.room.participants
        for sid in [s for s in self._subscribers if s not in live]:
            del self._subscribers[sid]
        published = self.room.published
        for track_id in [t for t in self.targets if t not in published]:
            del self.targets[track_id]
        for track_id in [t for t in self._dynacast if t not in published]:
            del self._dynacast[track_id]
        for key in [k for k in self._measured if k[0] not in published]:
            del self._measured[key]
        self._temporal_seen = {k for k in self._temporal_seen if k[0] in published}

    # ------------------------------------------------------------------ allocation
    def _video_tracks(self, now: float) -> dict[str, VideoTrack]:
        """Every live video track of the room, publishers in join order, as the allocator sees
        it; a publisher's second (and later) video track is a screen share."""
        order = {sid: i for i, sid in enumerate(self.room.participants)}
        entries = sorted(
            (e for e in self.room.published.values() if e.track.kind == "video"),
            key=lambda e: order.get(e.publisher.session_id, len(order)),
        )
        seen: set[str] = set()
        out: dict[str, VideoTrack] = {}
        for entry in entries:
            if entry.producer.closed:
                continue
            screen = entry.publisher.session_id in seen
            seen.add(entry.publisher.session_id)
            out[entry.track_id] = VideoTrack(entry.track_id, self._layers(entry, now), screen)
        return out

    def _layers(self, entry: PublishedEntry[Participant], now: float) -> tuple[Layer, ...]:
        producer = entry.producer
        if len(producer.layers) == 1 and not svc_layers(producer):
            return (self._plain_layer(entry.track_id, producer.layers[0]),)
        return self._snapshot_layers(entry, now)

    def _snapshot_layers(self, entry: PublishedEntry[Participant], now: float) -> tuple[Layer, ...]:
        """The layers of any track, from ``producer_layers`` snapshots."""
        views = producer_layers(entry.producer)
        dynacast = self._dynacast.get(entry.track_id)
        stopped = entry.producer.stopped_layers(now)
        flowing = [view.active and i not in stopped for i, view in enumerate(views)]
        off = [
            dynacast is not None and i < len(dynacast.active) and not dynacast.active[i]
            for i in range(len(views))
        ]
        top_flowing = max((i for i, f in enumerate(flowing) if f), default=-1)
        # the publisher stopped a layer nobody told it to stop: its uplink is short
        limited = top_flowing >= 0 and any(not flowing[i] and not off[i] for i in range(len(views)))
        layers = []
        for i, view in enumerate(views):
            key = (entry.track_id, i)
            seen = self._remember(key, flowing[i], view.bitrate)
            # Unmeasured (a new track's first second): the nominal rate of its rank, except the
            # lowest layer, which is taken as the cheapest: a single-layer camera judged as a
            # full-size 1.5 Mbit/s stream before its first window was held back at the start of
            # calls on a 1 Mbit/s start estimate, and resumed only after UP_HOLD (a 2.5 s freeze
            # in most calls between two clients without simulcast); measured, it is judged as is.
            bitrate = seen or (NOMINAL_BITRATES[-1] if i == 0 else _nominal(i, len(views)))
            # A layer dynacast turned off can be turned on again: it stays available, unless
            # the publisher cannot send it now (above what flows while it stopped a layer).
            reachable = off[i] and not (limited and i > top_flowing)
            available = flowing[i] or reachable or (len(views) == 1)
            temporal = self._temporal_steps(
                key, view.rid or i, bitrate, view.temporal_shares, view.bitrate
            )
            layers.append(Layer(bitrate, available, view.width, view.height, temporal))
        return tuple(layers)

    def _plain_layer(self, track_id: str, layer: ProducerLayer) -> Layer:
        """``_layers`` of a track sent as one stream (no simulcast, no SVC), the common case
        (every 1:1 call without simulcast), without the snapshots: the same ``Layer``. Such a
        track announces no layers allocation and dynacast leaves it alone, so its one layer is
        always available; its remembered bitrate decays and its temporal steps are read as for
        any layer."""
        key = (track_id, 0)
        rate = layer.bitrate
        # (``active``: a look at its packet counter, as the snapshot takes)
        bitrate = self._remember(key, layer.active, rate) or NOMINAL_BITRATES[-1]
        shares = temporal_shares(layer.temporal_bitrates)
        temporal = self._temporal_steps(key, layer.rid or 0, bitrate, shares, rate)
        return Layer(bitrate, True, layer.width, layer.height, temporal)

    def _remember(self, key: tuple[str, int], flowing: bool, rate: int) -> int:
        """The layer's remembered bitrate (0: never measured), raised by ``rate`` while it
        flows. A slowly decaying peak: a layer winding down (dynacast turned it off, the
        publisher's uplink shrank) must not look cheap in its last half-empty windows."""
        seen = self._measured.get(key, 0)
        if flowing and rate > 0:
            seen = self._measured[key] = max(rate, int(seen * BITRATE_DECAY))
        return seen

    def _temporal_steps(
        self,
        key: tuple[str, int],
        label: str | int,
        bitrate: int,
        shares: tuple[float, ...],
        rate: int,
    ) -> tuple[int, ...]:
        """The layer's temporal steps: the shares last measured, of the remembered ``bitrate``
        (logged the first time a layer shows temporal layers)."""
        temporal = tuple(int(bitrate * share) for share in shares)
        if temporal and key not in self._temporal_seen:
            self._temporal_seen.add(key)
            log.info(
                "track %s layer %s: %d VP8 temporal layers, shares %s of %d bit/s",
                key[0],
                label,
                len(temporal) + 1,
                [round(share, 2) for share in shares],
                rate,
            )
        return temporal

    def _allocate(
        self,
        now: float,
        participant: Participant,
        sub: _Subscriber,
        tracks: dict[str, VideoTrack],
    ) -> None:
        muted = self.room.muted
        consumers = {
            t: c for t, c in participant.consumers.items() if not c.closed and t not in muted
        }
        video = [tracks[t] for t in tracks if t in consumers]
        audio = sum(1 for c in participant.consumers.values() if c.kind == "audio")
        for track_id in [t for t in participant.wishes if t not in tracks]:
            del participant.wishes[track_id]
        wishes = {
            t: Wish(w.paused, w.max_width, w.max_height) for t, w in participant.wishes.items()
        }
        media = participant.media
        decisions = sub.allocator.allocate(
            now,
            sub.estimate,
            video,
            audio,
            wishes,
            open_link=link_open(media),
            congested=link_congested(media),
        )
        for track_id, decision in decisions.items():
            set_target_layer(consumers[track_id], decision.layer)
            set_temporal_target(consumers[track_id], decision.temporal)
            self.targets.setdefault(track_id, {})[participant.session_id] = decision.layer
            self._tell(participant, track_id, decision)
        for track_id in [t for t in participant.held if t not in decisions]:
            del participant.held[track_id]  # gone (or muted by an operator): nothing to say

    def _tell(self, participant: Participant, track_id: str, decision: Decision) -> None:
        """``track-paused`` when whether (and why) a track is held back changed."""
        before = participant.held.get(track_id)
        reason = decision.reason if decision.layer is None else None
        if reason == before:
            return
        if reason is None:
            del participant.held[track_id]
        else:
            participant.held[track_id] = reason
            if reason == "bandwidth":
                participant.bandwidth_pauses += 1
        entry = self.room.published.get(track_id)
        if entry is None:
            return
        told = reason or before
        assert told is not None
        participant.send(
            TrackPaused(
                track_id=track_id,
                kind="video",
                session_id=entry.publisher.session_id,
                user_id=entry.publisher.user_id,
                paused=reason is not None,
                reason=told,
            )
        )
        participant.log.info(
            "video %s %s (%s; estimate %s bit/s)",
            track_id,
            "held back" if reason else "resumed",
            told,
            self._subscribers[participant.session_id].estimate,
        )

    # ------------------------------------------------------------------ dynacast
    def _dynacast_pass(self, now: float, tracks: dict[str, VideoTrack]) -> None:
        for track_id in tracks:
            entry = self.room.published.get(track_id)
            if entry is None or not is_simulcast(entry.producer) or entry.publisher.closed:
                continue
            views = producer_layers(entry.producer)
            if any(view.rid is None for view in views):
                continue
            dynacast = self._dynacast.get(track_id)
            if dynacast is None:
                dynacast = self._dynacast[track_id] = Dynacast(len(views))
            wanted = []
            for participant in self.room.participants.values():
                if track_id in participant.consumers:
                    layer = self.targets.get(track_id, {}).get(participant.session_id)
                    if layer is not None:
                        wanted.append(layer)
            active = dynacast.update(now, wanted)
            if active is None:
                continue
            self._tell_publisher(entry, views, active)

    def _tell_publisher(
        self, entry: PublishedEntry[Participant], views: list[LayerView], active: list[bool]
    ) -> None:
        layers = tuple(
            LayerState(view.rid or "", on) for view, on in zip(views, active, strict=True)
        )
        # Our later offers and answers mark the layers that are off paused (~): Chromium sets
        # each encoding's `active` from the marks of every description it applies.
        entry.publisher.negotiator.pause_layers(
            entry.track.mid, frozenset(layer.rid for layer in layers if not layer.active)
        )
        entry.publisher.send(PublishLayers(entry.track_id, entry.track.mid, layers))
        entry.publisher.log.info(
            "dynacast: track %s sends %s",
            entry.track_id,
            ", ".join(layer.rid for layer in layers if layer.active) or "nothing",
        )


def _settled_inputs(
    participant: Participant, tracks: dict[str, VideoTrack], muted: Collection[str]
) -> tuple[object, ...]:
    """What an allocation pass without a downlink estimate reads and sets for ``participant``:
    each video track it receives (its consumer, whether it is a screen share, its layers'
    availability and sizes — their bitrates count only against an estimate — and the
    consumer's layer and temporal targets), its wishes and the tracks it is told are held
    back. Equal before a pass to what the last pass left: that pass would change nothing."""
    consumers = participant.consumers
    received: list[object] = []
    for track_id, track in tracks.items():
        consumer = consumers.get(track_id)
        if consumer is None or consumer.closed or track_id in muted:
            continue
        received.append(
            (
                track_id,
                consumer,
                track.screen,
                tuple([(layer.available, layer.width, layer.height) for layer in track.layers]),
                consumer.target_layer,
                consumer.temporal_target,
                consumer.spatial_target,
            )
        )
    return (
        tuple(received),
        tuple(participant.wishes.items()),
        tuple(participant.held.items()),
    )


def _moved(before: int | None, now: int | None) -> bool:
    if before is None or now is None:
        return before != now
    return abs(now - before) > ESTIMATE_CHANGE * max(before, 1)


def _nominal(index: int, count: int) -> int:
    rank = count - 1 - index
    return NOMINAL_BITRATES[min(rank, len(NOMINAL_BITRATES) - 1)]
