"""The layer allocator and dynacast rules of docs/media.md "Layer allocation", as pure logic."""

from __future__ import annotations

import pytest

from zvonok.rooms.allocation import (
    AUDIO_RESERVE,
    BUDGET_SHARE,
    OFF_AFTER,
    PROBE_TRIAL,
    PROBE_WAIT,
    PROBE_WAIT_MAX,
    PUSHBACK_WAIT,
    UP_HOLD,
    Decision,
    Dynacast,
    Layer,
    LayerAllocator,
    VideoTrack,
    Wish,
    eligible_layers,
)

#: A 720p camera's three layers as Chrome sends them: 320, 640, 1280 px wide.
CAMERA = (
    Layer(150_000, True, 320, 180),
    Layer(500_000, True, 640, 360),
    Layer(1_500_000, True, 1280, 720),
)


def cam(track_id: str = "c", layers: tuple[Layer, ...] = CAMERA) -> VideoTrack:
    return VideoTrack(track_id, layers)


def estimate_for(bits: float, audio: int = 0) -> int:
    """The estimate whose budget is exactly ``bits`` (with ``audio`` audio tracks)."""
    return int((bits + AUDIO_RESERVE * audio) / BUDGET_SHARE) + 1


def test_no_estimate_means_wishes_alone() -> None:
    allocator = LayerAllocator()
    assert allocator.allocate(0, None, [cam()]) == {"c": Decision(2)}
    wishes = {"c": Wish(max_width=640)}
    assert allocator.allocate(1, None, [cam()], wishes=wishes) == {"c": Decision(1)}
    assert allocator.allocate(2, None, [cam()], wishes={"c": Wish(paused=True)}) == {
        "c": Decision(None, "subscriber")
    }


def test_the_first_decision_takes_what_fits_and_audio_is_reserved_first() -> None:
    allocator = LayerAllocator()
    # 600 kbit/s of budget: the 500 kbit/s layer fits, not the 1.5 Mbit/s one
    assert allocator.allocate(0, estimate_for(600_000), [cam()]) == {"c": Decision(1)}
    # the same estimate with 3 audio tracks leaves less than 500 kbit/s for video
    other = LayerAllocator()
    estimate = estimate_for(600_000)
    assert other.allocate(0, estimate, [cam()], audio_tracks=3) == {"c": Decision(0)}


def test_too_little_for_the_lowest_layer_pauses_for_bandwidth() -> None:
    allocator = LayerAllocator()
    assert allocator.allocate(0, 64_000, [cam()], audio_tracks=1) == {
        "c": Decision(None, "bandwidth")
    }
    # the lowest layer may use the whole estimate: no 10 % headroom for it
    assert LayerAllocator().allocate(0, 150_000 + AUDIO_RESERVE, [cam()], audio_tracks=1) == {
        "c": Decision(0)
    }


def test_down_at_once_up_only_after_the_margin_held_two_seconds() -> None:
    allocator = LayerAllocator()
    assert allocator.allocate(0, estimate_for(2_000_000), [cam()])["c"].layer == 2
    assert allocator.allocate(0.5, estimate_for(300_000), [cam()])["c"].layer == 0  # at once
    roomy = estimate_for(1_500_000 * 1.1)
    assert allocator.allocate(1.0, roomy, [cam()])["c"].layer == 0
    assert allocator.allocate(2.5, roomy, [cam()])["c"].layer == 0
    assert allocator.allocate(3.0, roomy, [cam()])["c"].layer == 2  # 2 s with the margin
    # just enough for a layer, without the 10 % margin, is no reason to go up
    tight = LayerAllocator()
    assert tight.allocate(0, estimate_for(160_000), [cam()])["c"].layer == 0
    assert tight.allocate(5, estimate_for(510_000), [cam()])["c"].layer == 0
    assert tight.allocate(10, estimate_for(510_000), [cam()])["c"].layer == 0


def test_a_dip_restarts_the_hold() -> None:
    allocator = LayerAllocator()
    allocator.allocate(0, estimate_for(200_000), [cam()])
    roomy = estimate_for(600_000)
    allocator.allocate(1, roomy, [cam()])
    allocator.allocate(2, estimate_for(520_000), [cam()])  # below 500k x 1.1: the hold restarts
    assert allocator.allocate(3.5, roomy, [cam()])["c"].layer == 0
    assert allocator.allocate(3.5 + UP_HOLD, roomy, [cam()])["c"].layer == 1


def test_a_paused_track_resumes_by_itself_after_the_hold() -> None:
    allocator = LayerAllocator()
    # the lowest layer is kept down to 60 % of its bitrate: 80 kbit/s is too little for 150
    assert allocator.allocate(0, 80_000, [cam()])["c"] == Decision(None, "bandwidth")
    assert allocator.allocate(1, 100_000, [cam()])["c"] == Decision(None, "bandwidth")
    # resuming needs 75 % of it (112.5 kbit/s) for 2 s
    assert allocator.allocate(2, 120_000, [cam()])["c"] == Decision(None, "bandwidth")
    assert allocator.allocate(3.5, 120_000, [cam()])["c"] == Decision(None, "bandwidth")
    assert allocator.allocate(4, 120_000, [cam()])["c"] == Decision(0)
    assert allocator.allocate(5, 95_000, [cam()])["c"] == Decision(0)  # kept at 60 %


def test_screen_share_is_served_before_cameras() -> None:
    screen = VideoTrack("s", (Layer(800_000, True, 1920, 1080),), screen=True)
    allocator = LayerAllocator()
    decisions = allocator.allocate(0, estimate_for(900_000), [cam("a"), screen, cam("b")])
    assert decisions == {"s": Decision(0), "a": Decision(0), "b": Decision(None, "bandwidth")}


def test_cameras_in_join_order_share_what_is_left() -> None:
    allocator = LayerAllocator()
    decisions = allocator.allocate(0, estimate_for(700_000), [cam("a"), cam("b")])
    assert decisions == {"a": Decision(1), "b": Decision(0)}


def test_wishes_stop_at_the_first_layer_that_covers_the_tile() -> None:
    assert eligible_layers(CAMERA, Wish(max_width=720)) == [0, 1, 2]  # 640 < 90 % of 720
    assert eligible_layers(CAMERA, Wish(max_width=680)) == [0, 1]
    assert eligible_layers(CAMERA, Wish(max_width=1200, max_height=675)) == [0, 1, 2]
    assert eligible_layers(CAMERA, Wish(max_width=100)) == [0]
    assert eligible_layers(CAMERA, Wish(max_width=2000, max_height=200)) == [0]  # a wide strip
    assert eligible_layers(CAMERA, Wish(max_width=4000)) == [0, 1, 2]  # none covers: all
    blind = (Layer(150_000), Layer(500_000), Layer(1_500_000))  # 320, 640, 1280 nominally
    assert eligible_layers(blind, Wish(max_width=640)) == [0, 1]
    assert eligible_layers(blind, Wish()) == [0, 1, 2]


def test_unavailable_layers_are_skipped_and_a_track_with_none_waits_at_the_top() -> None:
    top_off = (CAMERA[0], CAMERA[1], Layer(1_500_000, False, 1280, 720))
    allocator = LayerAllocator()
    assert allocator.allocate(0, None, [cam(layers=top_off)]) == {"c": Decision(1)}
    nothing = tuple(Layer(0, False) for _ in range(3))
    assert allocator.allocate(1, None, [cam(layers=nothing)]) == {"c": Decision(2)}


def test_a_lifted_width_limit_climbs_once_the_estimate_held() -> None:
    allocator = LayerAllocator()
    roomy = estimate_for(3_000_000)
    small = {"c": Wish(max_width=320)}
    assert allocator.allocate(0, roomy, [cam()], wishes=small)["c"].layer == 0
    # the estimate has carried every layer for 2 s already: the wish alone held it back
    assert allocator.allocate(2.5, roomy, [cam()])["c"].layer == 2


def test_forgotten_tracks_are_dropped() -> None:
    allocator = LayerAllocator()
    allocator.allocate(0, None, [cam("a"), cam("b")])
    assert set(allocator.allocate(1, None, [cam("b")])) == {"b"}


def test_dynacast_turns_unwanted_layers_off_after_5_s_and_on_at_once() -> None:
    dynacast = Dynacast(3)
    assert dynacast.update(0, [0]) is None  # everything is on at first
    assert dynacast.update(OFF_AFTER - 0.5, [0]) is None
    assert dynacast.update(OFF_AFTER, [0]) == [True, False, False]
    assert dynacast.update(OFF_AFTER + 0.1, [0]) is None  # no repeat
    assert dynacast.update(OFF_AFTER + 0.2, [2]) == [True, False, True]  # at once
    assert dynacast.update(OFF_AFTER + 0.3, [1]) == [True, True, True]  # at once again
    # turning off waits for the 1 s interval and the 5 s of nobody wanting it
    assert dynacast.update(OFF_AFTER + 0.4, [1]) is None
    assert dynacast.update(2 * OFF_AFTER + 0.25, [1]) is None  # layer 2 was wanted at +0.2
    assert dynacast.update(2 * OFF_AFTER + 0.3, [1]) == [True, True, False]


def test_dynacast_never_turns_the_lowest_layer_off() -> None:
    dynacast = Dynacast(3)
    dynacast.update(0, [])
    assert dynacast.update(OFF_AFTER, []) == [True, False, False]
    assert dynacast.update(100, []) is None


def test_an_open_link_probes_one_layer_up_and_keeps_it_while_the_estimate_holds() -> None:
    allocator = LayerAllocator()
    run = allocator.allocate
    assert run(0, 300_000, [cam()], open_link=True)["c"].layer == 0
    assert run(PROBE_WAIT - 0.5, 300_000, [cam()], open_link=True)["c"].layer == 0
    assert run(PROBE_WAIT, 300_000, [cam()], open_link=True)["c"].layer == 1  # on trial
    assert allocator.probes == 1
    # the estimate grows as the new layer flows: kept, and once it carries it, a success
    assert run(PROBE_WAIT + 1, 320_000, [cam()], open_link=False)["c"].layer == 1
    assert run(PROBE_WAIT + 2, 620_000, [cam()], open_link=False)["c"].layer == 1
    assert allocator.failed_probes == 0
    # the next probe (to 1.5 Mbit/s: at most twice the estimate) after another open stretch
    assert run(PROBE_WAIT + 3, 800_000, [cam()], open_link=True)["c"].layer == 1
    assert run(2 * PROBE_WAIT + 3, 800_000, [cam()], open_link=True)["c"].layer == 2
    assert allocator.probes == 2


def test_a_probe_the_link_punishes_goes_down_at_once_and_backs_off() -> None:
    allocator = LayerAllocator()
    run = allocator.allocate
    run(0, 300_000, [cam()], open_link=True)
    assert run(PROBE_WAIT, 300_000, [cam()], open_link=True)["c"].layer == 1
    assert run(PROBE_WAIT + 0.5, 260_000, [cam()], open_link=False)["c"].layer == 0
    assert allocator.failed_probes == 1
    # the wait became PUSHBACK_WAIT: open from now on, the next probe comes that much later
    t = PROBE_WAIT + 0.5
    while run(t, 300_000, [cam()], open_link=True)["c"].layer == 0:
        t += 0.5
    assert t == pytest.approx(PROBE_WAIT + 0.5 + PUSHBACK_WAIT)
    run(t + 0.5, 200_000, [cam()])  # punished again: twice as long, then capped
    t2 = t + 0.5
    while run(t2, 300_000, [cam()], open_link=True)["c"].layer == 0:
        t2 += 0.5
    assert t2 - (t + 0.5) == pytest.approx(min(2 * PUSHBACK_WAIT, PROBE_WAIT_MAX))


def test_no_probe_on_a_congested_link_nor_for_a_paused_track() -> None:
    allocator = LayerAllocator()
    for t in range(20):
        assert allocator.allocate(t, 300_000, [cam()])["c"].layer == 0
    starved = LayerAllocator()
    for t in range(20):
        decision = starved.allocate(t, 100_000, [cam()], audio_tracks=1, open_link=True)
        assert decision["c"] == Decision(None, "bandwidth")
    assert allocator.probes == starved.probes == 0


def test_a_probe_fails_on_congestion_or_when_the_estimate_never_carries_it() -> None:
    congested = LayerAllocator()
    congested.allocate(0, 300_000, [cam()], open_link=True)
    assert congested.allocate(PROBE_WAIT, 300_000, [cam()], open_link=True)["c"].layer == 1
    decision = congested.allocate(PROBE_WAIT + 0.5, 300_000, [cam()], congested=True)
    assert decision["c"].layer == 0 and congested.failed_probes == 1
    slow = LayerAllocator()
    slow.allocate(0, 300_000, [cam()], open_link=True)
    assert slow.allocate(PROBE_WAIT, 300_000, [cam()], open_link=True)["c"].layer == 1
    assert slow.allocate(PROBE_WAIT + PROBE_TRIAL - 0.5, 310_000, [cam()])["c"].layer == 1
    assert slow.allocate(PROBE_WAIT + PROBE_TRIAL, 310_000, [cam()])["c"].layer == 0
    assert slow.failed_probes == 1


def test_a_down_move_the_estimate_forces_delays_the_next_probe() -> None:
    allocator = LayerAllocator()
    allocator.allocate(0, 3_000_000, [cam()])
    assert allocator.allocate(1, 300_000, [cam()], open_link=True)["c"].layer == 0
    t = 1.0
    while allocator.allocate(t, 300_000, [cam()], open_link=True)["c"].layer == 0:
        t += 0.5
    assert t == pytest.approx(1 + PUSHBACK_WAIT)  # the push back set the wait
