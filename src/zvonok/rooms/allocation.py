"""Layer allocation and dynacast: which simulcast layer each subscriber gets of each video track,
and which layers a publisher needs to send at all.

Owns two pure decision makers (no I/O, no media objects; time is passed in), the rules of
docs/media.md "## Layer allocation":

- ``LayerAllocator``: one per subscriber. Given its downlink estimate (bit/s, or ``None``), its
  wishes per track (``track-settings``: paused, largest width/height) and every received video
  track's layers (bitrate, available, width), it returns the target layer per track (``None`` =
  paused, with the reason: ``bandwidth`` or ``subscriber``). Screen shares are served before
  cameras; the budget is 90 % of the estimate minus ``AUDIO_RESERVE`` per audio track; each track
  gets the highest layer that its wishes make worth sending (up to the first that covers its
  tile) and the remaining budget carries; where its lowest layer would have been paused, that
  layer with fewer VP8 temporal layers (a lower frame rate); one that cannot carry even the
  lowest of those (judged on the whole estimate, ``LOWEST_KEEP``) is paused. Down at once
  (spatially and temporally); up only once the remaining budget
  has exceeded the higher layer's bitrate × ``UP_MARGIN`` for ``UP_HOLD`` seconds, or, when the
  estimate is only capped by what was sent (an *open* link), one layer up on trial
  (``PROBE_*``).
- ``Dynacast``: one per published simulcast track. Given the union of the layers its subscribers
  are given, it decides which layers the publisher should send: a layer nobody has wanted for
  ``OFF_AFTER`` seconds is turned off, a wanted one on at once; the lowest layer is never turned
  off. Changes are reported at most once per ``MIN_INTERVAL`` per track, except turning a layer
  on, which is reported at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

#: Share of the downlink estimate the allocator spends (the rest is headroom: RTX, RTCP, probes).
BUDGET_SHARE = 0.9
#: Bit/s set aside for each audio track the subscriber receives (audio is never paused).
AUDIO_RESERVE = 40_000
#: The lowest layer is judged on the whole estimate (minus audio), and leniently: a paused video
#: gives the estimator nothing to measure but audio, so an estimate below the lowest layer says
#: little about the link. It is kept while that share of its bitrate fits, and a paused track
#: resumes once ``LOWEST_RESUME`` of it has fitted for ``UP_HOLD`` seconds.
LOWEST_KEEP = 0.6
LOWEST_RESUME = 0.75
#: A layer *covers* a tile when it is at least this share of the tile's width or height: the
#: layers above the first that covers are not needed (they would only be scaled down).
COVER_SHARE = 0.9
#: Going up a layer: the remaining budget must exceed its bitrate by this factor ...
UP_MARGIN = 1.1
#: ... continuously for this many seconds.
UP_HOLD = 2.0
#: A track with temporal steps resumes from a bandwidth pause on its smallest step (its lowest
#: layer's base temporal layer), which a link that just paused it may carry only until the
#: resume's keyframe: a track paused again within ``RESUME_STABLE`` seconds of a resume waits
#: twice as long before the next one (from ``UP_HOLD`` up to ``RESUME_HOLD_MAX``); one that
#: stayed up that long waits ``UP_HOLD`` again.
RESUME_STABLE = 30.0
RESUME_HOLD_MAX = 32.0
#: The width assumed for the top layer of a track whose layers' widths are unknown; each lower
#: layer is taken as half the width of the one above (the SDK's 1/4, 1/2, 1 ladder).
NOMINAL_TOP_WIDTH = 1280
#: Probing up: the estimate of a link that showed no congestion may be capped by what was sent
#: (docs/media.md, "Congestion control": at most 1.5 x acknowledged), so it may never cover the
#: next layer by itself. After the link has been *open* (the estimate at that cap, no overuse,
#: little loss) for ``PROBE_WAIT`` seconds, one track goes up one layer anyway (if that layer is
#: at most ``PROBE_RATIO`` x the estimate), on trial for at most ``PROBE_TRIAL`` seconds: it fails
#: at once when the link shows congestion (overuse, loss) or the estimate falls below
#: ``PROBE_DROP`` x its highest value since, and at the end of the trial unless the estimate
#: carries the layer by itself by then (success). A failure, and any down move the estimate
#: forces, makes the wait before the next trial at least ``PUSHBACK_WAIT`` and doubles it after
#: that (up to ``PROBE_WAIT_MAX``): each trial on a link at its limit costs a congested moment,
#: so a link that pushed back is tried again only about twice a minute. A success resets it.
PROBE_WAIT = 4.0
PUSHBACK_WAIT = 32.0
PROBE_WAIT_MAX = 64.0
PROBE_TRIAL = 4.0
PROBE_DROP = 0.9
PROBE_RATIO = 2.0
#: Dynacast: a layer nobody wants is turned off after this many seconds.
OFF_AFTER = 5.0
#: Dynacast: at most one ``publish-layers`` per track per this many seconds (turning on: at once).
MIN_INTERVAL = 1.0

PauseReason = Literal["bandwidth", "subscriber"]


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer of a track as the allocator sees it (lowest quality first in a track)."""

    #: Its bitrate (bit/s): measured while it flows, else the last measure or a nominal figure.
    bitrate: int
    #: It can be sent: it flows now, or dynacast turned it off and can turn it back on.
    available: bool = True
    width: int | None = None
    height: int | None = None
    #: Its bitrate with fewer VP8 temporal layers: entry t is TIDs 0..t together, for each t
    #: below its top one (the full stream is ``bitrate``); empty without temporal layers.
    temporal: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Wish:
    """A subscriber's wish for one track (``track-settings``); the default: no limit."""

    paused: bool = False
    max_width: int | None = None
    max_height: int | None = None


NO_WISH = Wish()


@dataclass(frozen=True, slots=True)
class VideoTrack:
    """A received video track: its id, whether it is a screen share, and its layers."""

    track_id: str
    layers: tuple[Layer, ...]
    screen: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The layer a subscriber gets of one track (``None``: paused, for ``reason``), and the
    highest VP8 temporal layer of it (``temporal``; ``None``: all of them)."""

    layer: int | None
    reason: PauseReason | None = None
    temporal: int | None = None


@dataclass(slots=True)
class _TrackState:
    current: int | None = None
    #: layer index -> since when the remaining budget has carried it with the margin.
    headroom_since: dict[int, float] = field(default_factory=dict)
    #: Since when the lowest layer's ``LOWEST_RESUME`` share has fitted (resuming a pause).
    resume_since: float | None = None
    decided: bool = False
    #: The temporal cap given on the lowest layer (its step count: all of them), None when the
    #: track is not on a layer with temporal steps.
    temporal: int | None = None
    #: temporal cap -> since when it has fitted with the margin (``_temporal``).
    temporal_since: dict[int, float] = field(default_factory=dict)
    #: With temporal steps: the hold before a bandwidth pause is lifted, and the last resume.
    resume_hold: float = UP_HOLD
    resumed_at: float = float("-inf")


@dataclass(slots=True)
class _Probe:
    track_id: str
    layer: int
    started: float
    estimate: int


def eligible_layers(layers: Sequence[Layer], wish: Wish) -> list[int]:
    """The indexes of the available layers ``wish`` makes worth sending, lowest first: up to
    the first that covers the tile (its width at least ``COVER_SHARE`` of ``max_width``, or its
    height of ``max_height``), all of them when none does. Unknown widths are taken from
    ``NOMINAL_TOP_WIDTH`` and the layer's rank."""
    available = [i for i, layer in enumerate(layers) if layer.available]
    if wish.max_width is None and wish.max_height is None:
        return available
    top = len(layers) - 1
    for n, i in enumerate(available):
        layer = layers[i]
        width = layer.width if layer.width is not None else NOMINAL_TOP_WIDTH >> (top - i)
        if wish.max_width is not None and width >= COVER_SHARE * wish.max_width:
            return available[: n + 1]
        height = layer.height
        if wish.max_height is not None and height is not None:
            if height >= COVER_SHARE * wish.max_height:
                return available[: n + 1]
    return available


class LayerAllocator:
    """One subscriber's allocation, with its hysteresis state; call ``allocate`` periodically
    (every ~0.5 s) and when its wishes or its estimate change."""

    def __init__(self) -> None:
        self._tracks: dict[str, _TrackState] = {}
        self._open_since: float | None = None
        self._probe: _Probe | None = None
        self._probe_wait = PROBE_WAIT
        self._next_probe = float("-inf")
        self._failed_at = float("-inf")
        self.probes = 0
        self.failed_probes = 0

    def allocate(
        self,
        now: float,
        estimate: int | None,
        video: Sequence[VideoTrack],
        audio_tracks: int = 0,
        wishes: Mapping[str, Wish] | None = None,
        *,
        open_link: bool = False,
        congested: bool = False,
    ) -> dict[str, Decision]:
        """Decide every track of ``video`` (given in join order; screen shares go first).
        ``open_link``: the estimate sits at the cap of what was sent, with no congestion seen
        (the only way up past that cap is a probe); ``congested``: the link shows congestion
        now (delay overuse or loss): a probe on trial fails."""
        wishes = wishes or {}
        live = {v.track_id for v in video}
        for track_id in [t for t in self._tracks if t not in live]:
            del self._tracks[track_id]
        if not open_link or estimate is None:
            self._open_since = None
        elif self._open_since is None:
            self._open_since = now
        probe = self._check_probe(now, estimate, live, congested)
        budget: float | None = None
        raw: float | None = None
        if estimate is not None:
            budget = estimate * BUDGET_SHARE - AUDIO_RESERVE * audio_tracks
            raw = estimate - AUDIO_RESERVE * audio_tracks
        order = sorted(range(len(video)), key=lambda i: (not video[i].screen, i))
        out: dict[str, Decision] = {}
        for i in order:
            track = video[i]
            state = self._tracks.setdefault(track.track_id, _TrackState())
            wish = wishes.get(track.track_id, NO_WISH)
            before = state.current if state.decided else None
            decision = self._one(now, state, track, wish, budget, raw)
            if probe is not None and probe.track_id == track.track_id:
                if decision.layer is not None and decision.layer >= probe.layer:
                    self._probe_done(now, held=True)  # the estimate carries it now
                    probe = None
                elif now - probe.started >= PROBE_TRIAL:
                    self._probe_done(now, held=False)  # the estimate never came to carry it
                    probe = None
                else:
                    decision = Decision(probe.layer)  # on trial: kept while the estimate holds
                    state.current = probe.layer
            elif before is not None and decision.reason != "subscriber":
                if decision.layer is None or decision.layer < before:
                    self._pushed_back(now)  # the estimate forced it down: probe later
            out[track.track_id] = decision
            if budget is not None and raw is not None and decision.layer is not None:
                layer = track.layers[decision.layer]
                cost = layer.bitrate
                if decision.temporal is not None and decision.temporal < len(layer.temporal):
                    cost = layer.temporal[decision.temporal]
                budget -= min(cost, max(budget, 0.0))
                raw -= min(cost, max(raw, 0.0))
        if self._probe is None and estimate is not None:
            self._start_probe(now, estimate, video, order, wishes, out)
        return out

    def _check_probe(
        self, now: float, estimate: int | None, live: set[str], congested: bool
    ) -> _Probe | None:
        """The probe still on trial, or None (there is none, or the link just pushed back)."""
        probe = self._probe
        if probe is None:
            return None
        if probe.track_id not in live:
            self._probe = None
            return None
        if congested or estimate is None or estimate < probe.estimate * PROBE_DROP:
            self._probe_done(now, held=False)
            return None
        probe.estimate = max(probe.estimate, estimate)
        return probe

    def _pushed_back(self, now: float) -> None:
        """The estimate forced a track down: wait longer before trying higher again."""
        if self._failed_at == now:
            return  # the probe that failed just now was this down move: counted once
        self._probe_wait = _longer(self._probe_wait)
        self._next_probe = max(self._next_probe, now + self._probe_wait)
        self._open_since = None

    def _probe_done(self, now: float, *, held: bool) -> None:
        self._probe = None
        if held:
            self._probe_wait = PROBE_WAIT
        else:
            self.failed_probes += 1
            self._failed_at = now
            self._probe_wait = _longer(self._probe_wait)
        self._next_probe = now + self._probe_wait
        self._open_since = None

    def _start_probe(
        self,
        now: float,
        estimate: int,
        video: Sequence[VideoTrack],
        order: Sequence[int],
        wishes: Mapping[str, Wish],
        out: dict[str, Decision],
    ) -> None:
        since = self._open_since
        if since is None or now - since < PROBE_WAIT or now < self._next_probe:
            return
        for i in order:
            track = video[i]
            layer = out[track.track_id].layer
            if layer is None:
                continue  # a paused track is not a probe (audio shares that link)
            if out[track.track_id].temporal is not None:
                continue  # below its lowest layer's full rate: it climbs by the budget alone
            wish = wishes.get(track.track_id, NO_WISH)
            if wish.paused:
                continue
            up = [a for a in eligible_layers(track.layers, wish) if a > layer]
            if not up or track.layers[up[0]].bitrate > PROBE_RATIO * estimate:
                continue
            self._probe = _Probe(track.track_id, up[0], now, estimate)
            self._tracks[track.track_id].current = up[0]
            out[track.track_id] = Decision(up[0])
            self.probes += 1
            return

    def _one(
        self,
        now: float,
        state: _TrackState,
        track: VideoTrack,
        wish: Wish,
        budget: float | None,
        raw: float | None = None,
    ) -> Decision:
        if wish.paused:
            state.current, state.decided = None, True
            state.headroom_since.clear()
            state.temporal = None
            return Decision(None, "subscriber")
        allowed = eligible_layers(track.layers, wish)
        if not allowed:
            # Nothing flows yet (a new track): the best it will allow, once layers show up.
            state.current, state.decided = None, False
            return Decision(len(track.layers) - 1 if track.layers else 0)
        if budget is None:  # no estimate: wishes alone
            state.current, state.decided = allowed[-1], True
            state.headroom_since.clear()
            return Decision(allowed[-1])
        layers = track.layers
        low = layers[allowed[0]]
        steps = low.temporal
        # the smallest rate the track can be sent at: its lowest layer's base temporal layer
        lowest = steps[0] if steps else low.bitrate
        room = raw if raw is not None else budget
        fits = [i for i in allowed if layers[i].bitrate <= budget]
        if not fits and lowest * LOWEST_KEEP <= room:
            fits = allowed[:1]  # the lowest layer, maybe with fewer temporal layers: leniently
        best = fits[-1] if fits else None
        for i, layer in enumerate(layers):
            if layer.available and layer.bitrate * UP_MARGIN <= budget:
                state.headroom_since.setdefault(i, now)
            else:
                state.headroom_since.pop(i, None)
        if lowest * LOWEST_RESUME <= room:
            state.resume_since = now if state.resume_since is None else state.resume_since
        else:
            state.resume_since = None
        current = state.current
        # with temporal steps a pause is lifted on the smallest one, after a hold that doubles
        # each time the track is paused again soon after a resume (``RESUME_HOLD_MAX``)
        resume_hold = state.resume_hold if steps else UP_HOLD
        if not state.decided:
            chosen = best  # the first decision: what fits now
        elif best is None:
            chosen = None  # down at once
        elif current is None or current not in allowed:
            # paused (or its layer went away): resume / move once a layer has held the margin
            hold = resume_hold if current is None else UP_HOLD
            held = [i for i in allowed if now - state.headroom_since.get(i, now) >= hold]
            resume = state.resume_since is not None and now - state.resume_since >= hold
            if current is None:
                chosen = held[-1] if held else (allowed[0] if resume else None)
            else:
                chosen = max([i for i in allowed if i <= current] or [allowed[0]])
                chosen = min(chosen, best)
        elif best < current:
            chosen = best  # down at once
        elif best > current:
            held = [i for i in allowed if current < i <= best]
            held = [i for i in held if now - state.headroom_since.get(i, now) >= UP_HOLD]
            chosen = held[-1] if held else current
        else:
            chosen = current
        first = not state.decided or state.current != chosen
        if steps and state.decided:
            if current is None and chosen is not None:
                state.resumed_at = now
            elif current is not None and chosen is None:
                if now - state.resumed_at < RESUME_STABLE:  # paused again soon: wait longer
                    state.resume_hold = min(state.resume_hold * 2, RESUME_HOLD_MAX)
            elif chosen is not None and now - state.resumed_at >= RESUME_STABLE:
                state.resume_hold = UP_HOLD
        state.current, state.decided = chosen, True
        if chosen is None or chosen != allowed[0] or not steps:
            state.temporal = None
            state.temporal_since.clear()
            return Decision(chosen, "bandwidth" if chosen is None else None)
        cap = self._temporal(now, state, low, budget, room, first)
        return Decision(chosen, None, None if cap >= len(steps) else cap)

    @staticmethod
    def _temporal(
        now: float, state: _TrackState, low: Layer, budget: float, room: float, first: bool
    ) -> int:
        """The temporal cap on the lowest layer (``len(low.temporal)``: all of it). Each step —
        TIDs 0..t, and the whole layer — is judged like a lowest layer: it is kept while it fits
        the budget or ``LOWEST_KEEP`` of it fits the whole estimate (``room``), so the whole
        layer is kept exactly where it was before temporal steps existed, and the steps below
        it only replace a pause. Down at once; up only to a step that has fitted with the
        margin (``UP_MARGIN`` x it in the budget, or ``LOWEST_RESUME`` of it in ``room``) for
        ``UP_HOLD`` seconds."""
        rates = (*low.temporal, low.bitrate)
        want = max(
            (t for t, rate in enumerate(rates) if rate <= budget or rate * LOWEST_KEEP <= room),
            default=0,
        )
        for t, rate in enumerate(rates):
            if rate * UP_MARGIN <= budget or rate * LOWEST_RESUME <= room:
                state.temporal_since.setdefault(t, now)
            else:
                state.temporal_since.pop(t, None)

        def held(t: int) -> bool:
            return now - state.temporal_since.get(t, now) >= UP_HOLD

        current = state.temporal
        if first or current is None or want < current:
            current = want
        elif want > current:
            up = [t for t in range(current + 1, want + 1) if held(t)]
            current = up[-1] if up else current
        state.temporal = current
        return current


def _longer(wait: float) -> float:
    """The wait before the next probe after the link pushed back."""
    return min(max(wait * 2, PUSHBACK_WAIT), PROBE_WAIT_MAX)


class Dynacast:
    """Which layers of one simulcast track the publisher should send (lowest first)."""

    def __init__(self, layers: int) -> None:
        self.active = [True] * layers
        self._unwanted_since: list[float | None] = [None] * layers
        self._told_at = float("-inf")

    def update(self, now: float, wanted: Iterable[int]) -> list[bool] | None:
        """``wanted``: the layers some subscriber is given now. Returns the new ``active`` list
        when the publisher should be told, else ``None``. The lowest layer is always wanted."""
        wanted_set = {*wanted, 0}
        n = len(self.active)
        for i in range(n):
            if i in wanted_set:
                self._unwanted_since[i] = None
            elif self._unwanted_since[i] is None:
                self._unwanted_since[i] = now
        turn_on = [i for i in range(n) if i in wanted_set and not self.active[i]]
        if turn_on:  # at once; turning others off waits for the next interval
            for i in turn_on:
                self.active[i] = True
            self._told_at = now
            return list(self.active)
        if now - self._told_at < MIN_INTERVAL:
            return None
        turn_off = []
        for i in range(n):
            since = self._unwanted_since[i]
            if self.active[i] and since is not None and now - since >= OFF_AFTER:
                turn_off.append(i)
        if not turn_off:
            return None
        for i in turn_off:
            self.active[i] = False
        self._told_at = now
        return list(self.active)
