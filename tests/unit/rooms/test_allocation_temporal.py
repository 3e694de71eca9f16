"""The allocator's finer ladder (docs/media.md "Layer allocation"): where its lowest layer would
have been paused, a track gets that layer with fewer VP8 temporal layers — 15 fps, then 7.5
fps — before it is paused; down at once, up after the hold; tracks without temporal layers as
before."""

from __future__ import annotations

from zvonok.rooms.allocation import (
    AUDIO_RESERVE,
    BUDGET_SHARE,
    LOWEST_KEEP,
    PROBE_WAIT,
    RESUME_HOLD_MAX,
    RESUME_STABLE,
    UP_HOLD,
    Decision,
    Layer,
    LayerAllocator,
    VideoTrack,
)

#: Chrome's VP8 simulcast with three temporal layers: TID 0 carries ~40 % of a layer's bits
#: (7.5 fps), TIDs 0-1 ~60 % (15 fps), all of them 100 % (30 fps).
CAMERA = (
    Layer(150_000, True, 320, 180, (60_000, 90_000)),
    Layer(500_000, True, 640, 360, (200_000, 300_000)),
    Layer(1_500_000, True, 1280, 720, (600_000, 900_000)),
)
PLAIN = tuple(Layer(x.bitrate, True, x.width, x.height) for x in CAMERA)


def cam(track_id: str = "c", layers: tuple[Layer, ...] = CAMERA) -> VideoTrack:
    return VideoTrack(track_id, layers)


def estimate_for(bits: float, audio: int = 0) -> int:
    """The estimate whose budget is exactly ``bits`` (with ``audio`` audio tracks)."""
    return int((bits + AUDIO_RESERVE * audio) / BUDGET_SHARE) + 1


def test_where_the_lowest_layer_would_pause_fewer_temporal_layers_first() -> None:
    # each step judged like a lowest layer: kept while it fits the budget (90 % of the
    # estimate) or 60 % of it fits the whole estimate
    cases = [
        (200_000, Decision(0)),  # the whole low layer fits the budget
        (95_000, Decision(0)),  # 60 % of 150 k fits: kept whole, as without temporal layers
        (80_000, Decision(0, temporal=1)),  # 15 fps: 60 % of its 90 k fits
        (45_000, Decision(0, temporal=0)),  # 7.5 fps: 60 % of its 60 k fits
        (30_000, Decision(None, "bandwidth")),  # below that: paused
    ]
    for estimate, expected in cases:
        assert LayerAllocator().allocate(0, estimate, [cam()]) == {"c": expected}, estimate
    # audio is reserved first, from the whole estimate too
    assert LayerAllocator().allocate(0, 45_000 + AUDIO_RESERVE, [cam()], audio_tracks=1) == {
        "c": Decision(0, temporal=0)
    }
    assert int(60_000 * LOWEST_KEEP) <= 45_000 - 9_000


def test_without_temporal_layers_the_lowest_layer_is_kept_or_paused_as_before() -> None:
    assert LayerAllocator().allocate(0, 95_000, [cam(layers=PLAIN)]) == {"c": Decision(0)}
    assert LayerAllocator().allocate(0, 80_000, [cam(layers=PLAIN)]) == {
        "c": Decision(None, "bandwidth")
    }


def test_temporal_steps_go_down_at_once_and_up_after_the_hold() -> None:
    allocator = LayerAllocator()
    assert allocator.allocate(0, 200_000, [cam()]) == {"c": Decision(0)}
    assert allocator.allocate(0.5, 40_000, [cam()]) == {"c": Decision(0, None, 0)}
    # room for 15 fps with the margin (75 % of 90 k fits 80 k), not yet held long enough
    assert allocator.allocate(1.0, 80_000, [cam()]) == {"c": Decision(0, None, 0)}
    assert allocator.allocate(2.5, 80_000, [cam()]) == {"c": Decision(0, None, 0)}
    assert allocator.allocate(3.0, 80_000, [cam()]) == {"c": Decision(0, None, 1)}
    # room for the whole layer (75 % of 150 k): again after the hold
    assert allocator.allocate(3.5, 120_000, [cam()]) == {"c": Decision(0, None, 1)}
    assert allocator.allocate(5.5, 120_000, [cam()]) == {"c": Decision(0)}
    # and straight down two steps
    assert allocator.allocate(6.0, 40_000, [cam()]) == {"c": Decision(0, None, 0)}


def test_a_paused_track_resumes_on_its_base_step_and_backs_off_when_paused_again() -> None:
    allocator = LayerAllocator()
    assert allocator.allocate(0, 30_000, [cam()]) == {"c": Decision(None, "bandwidth")}
    # 75 % of the 60 kbit/s base layer fits 50 k: resumed after the hold, at 7.5 fps
    assert allocator.allocate(1, 50_000, [cam()]) == {"c": Decision(None, "bandwidth")}
    assert allocator.allocate(3, 50_000, [cam()]) == {"c": Decision(0, None, 0)}
    # paused again soon after (the resume's keyframe): the next resume waits 4 s, then 8 s
    t = 3.0
    for hold in (4.0, 8.0, 16.0, 32.0, 32.0):
        t += 1
        assert allocator.allocate(t, 30_000, [cam()]) == {"c": Decision(None, "bandwidth")}
        t += 0.5
        assert allocator.allocate(t, 50_000, [cam()]) == {"c": Decision(None, "bandwidth")}
        assert allocator.allocate(t + hold - 0.5, 50_000, [cam()])["c"].layer is None
        t += hold
        assert allocator.allocate(t, 50_000, [cam()]) == {"c": Decision(0, None, 0)}
    # up for RESUME_STABLE seconds: the next pause is lifted after UP_HOLD again
    t += RESUME_STABLE
    assert allocator.allocate(t, 50_000, [cam()]) == {"c": Decision(0, None, 0)}
    assert allocator.allocate(t + 1, 30_000, [cam()])["c"].layer is None
    assert allocator.allocate(t + 1.5, 50_000, [cam()])["c"].layer is None
    assert allocator.allocate(t + 1.5 + UP_HOLD, 50_000, [cam()]) == {"c": Decision(0, None, 0)}
    assert RESUME_HOLD_MAX == 32.0


def test_without_temporal_steps_a_pause_is_lifted_as_before() -> None:
    allocator = LayerAllocator()
    layers = (Layer(150_000, True, 320, 180),)
    for t in range(3):
        assert allocator.allocate(t * 10, 30_000, [cam(layers=layers)])["c"].layer is None
        assert allocator.allocate(t * 10 + 1, 130_000, [cam(layers=layers)])["c"].layer is None
        assert allocator.allocate(t * 10 + 3, 130_000, [cam(layers=layers)])["c"].layer == 0


def test_the_budget_a_capped_track_leaves_serves_the_next() -> None:
    # a screen share (served first) whose one layer is 400 k, 100 k at TIDs 0-1
    screen = VideoTrack("s", (Layer(400_000, True, 1280, 720, (40_000, 100_000)),), screen=True)
    allocator = LayerAllocator()
    # 150 k: the share takes its 100 k step (not its 400 k: nothing would be left), and the
    # camera keeps its base layer on the 50 k left of the whole estimate (60 % of 60 k)
    got = allocator.allocate(0, 150_000, [cam(), screen])
    assert got == {"s": Decision(0, None, 1), "c": Decision(0, None, 0)}


def test_a_capped_track_is_not_a_probe() -> None:
    allocator = LayerAllocator()
    for step in range(int(PROBE_WAIT / 0.5) + 4):
        got = allocator.allocate(step * 0.5, 80_000, [cam()], open_link=True)
        assert got == {"c": Decision(0, None, 1)}
    assert allocator.probes == 0
    assert UP_HOLD < PROBE_WAIT
