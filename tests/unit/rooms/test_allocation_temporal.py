"""The allocator's finer ladder (docs/media.md "Layer allocation"): below the full rate of its
lowest layer a track gets that layer with fewer VP8 temporal layers — 15 fps, then 7.5 fps —
before it is paused; down at once, up after the hold; tracks without temporal layers as before."""

from __future__ import annotations

from zvonok.rooms.allocation import (
    AUDIO_RESERVE,
    BUDGET_SHARE,
    LOWEST_KEEP,
    PROBE_WAIT,
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


def test_below_the_lowest_layer_fewer_temporal_layers_before_a_pause() -> None:
    cases = [
        (200_000, Decision(0)),  # the full low layer fits
        (120_000, Decision(0, temporal=1)),  # 15 fps
        (70_000, Decision(0, temporal=0)),  # 7.5 fps
    ]
    for budget, expected in cases:
        assert LayerAllocator().allocate(0, estimate_for(budget), [cam()]) == {"c": expected}
    # the base layer judged leniently on the whole estimate, like a lowest layer was
    lenient = int(60_000 * LOWEST_KEEP) + 1
    assert LayerAllocator().allocate(0, lenient, [cam()]) == {"c": Decision(0, temporal=0)}
    assert LayerAllocator().allocate(0, lenient - 2_000, [cam()]) == {
        "c": Decision(None, "bandwidth")
    }


def test_without_temporal_layers_the_lowest_layer_is_kept_or_paused_as_before() -> None:
    assert LayerAllocator().allocate(0, estimate_for(120_000), [cam(layers=PLAIN)]) == {
        "c": Decision(0)  # 120 k of a 150 k layer: kept leniently
    }
    assert LayerAllocator().allocate(0, 80_000, [cam(layers=PLAIN)]) == {
        "c": Decision(None, "bandwidth")
    }


def test_temporal_steps_go_down_at_once_and_up_after_the_hold() -> None:
    allocator = LayerAllocator()
    assert allocator.allocate(0, estimate_for(200_000), [cam()]) == {"c": Decision(0)}
    assert allocator.allocate(0.5, estimate_for(70_000), [cam()]) == {"c": Decision(0, None, 0)}
    # room for 15 fps with the margin, not yet held long enough
    assert allocator.allocate(1.0, estimate_for(100_000), [cam()]) == {"c": Decision(0, None, 0)}
    assert allocator.allocate(2.5, estimate_for(100_000), [cam()]) == {"c": Decision(0, None, 0)}
    assert allocator.allocate(3.0, estimate_for(100_000), [cam()]) == {"c": Decision(0, None, 1)}
    # room for the full layer: again after the hold
    assert allocator.allocate(3.5, estimate_for(170_000), [cam()]) == {"c": Decision(0, None, 1)}
    assert allocator.allocate(5.5, estimate_for(170_000), [cam()]) == {"c": Decision(0)}
    # and straight down two steps
    assert allocator.allocate(6.0, estimate_for(65_000), [cam()]) == {"c": Decision(0, None, 0)}


def test_a_paused_track_resumes_on_its_base_temporal_layer() -> None:
    allocator = LayerAllocator()
    assert allocator.allocate(0, 30_000, [cam()]) == {"c": Decision(None, "bandwidth")}
    # 75 % of the 60 kbit/s base layer fits: resumed after the hold, at 7.5 fps
    assert allocator.allocate(1, 50_000, [cam()]) == {"c": Decision(None, "bandwidth")}
    assert allocator.allocate(3, 50_000, [cam()]) == {"c": Decision(0, None, 0)}


def test_the_budget_a_capped_track_leaves_serves_the_next() -> None:
    screen = VideoTrack("s", CAMERA, screen=True)
    allocator = LayerAllocator()
    # 120 k: the screen share (served first) takes 15 fps of its low layer, which costs 90 k
    # (not the layer's 150 k: that would leave nothing), and the camera keeps its base layer
    # on what is left of the whole estimate (43 k of 60 k, leniently)
    got = allocator.allocate(0, estimate_for(120_000), [cam(), screen])
    assert got == {"s": Decision(0, None, 1), "c": Decision(0, None, 0)}


def test_a_capped_track_is_not_a_probe() -> None:
    allocator = LayerAllocator()
    estimate = estimate_for(120_000)
    for step in range(int(PROBE_WAIT / 0.5) + 4):
        got = allocator.allocate(step * 0.5, estimate, [cam()], open_link=True)
        assert got == {"c": Decision(0, None, 1)}
    assert allocator.probes == 0
    assert UP_HOLD < PROBE_WAIT
