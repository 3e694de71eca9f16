"""The evidence rules of the SignalBus's peer checks (``zvonok.cluster.peers.PeerWatch``; issue
14 "Node killed"): a peer is reaped only when silent (no subscriber) on two checks in a row and
stale (no heartbeat for 1.5 intervals) on the last; a resubscribing peer (fresh heartbeat) and a
late one (still subscribed) never are; a gone or restarted peer is lost after two checks; the
next check comes when a silent peer's heartbeat turns stale. The Redis side (sighting, atomic
reaping) runs against a real redis-server in tests/integration/cluster/test_signal_bus.py."""

from __future__ import annotations

import math

from zvonok.cluster.peers import (
    GONE,
    PEER_CHECK_INTERVAL,
    STALE_AFTER,
    STALE_MARGIN,
    PeerWatch,
    Sighting,
)
from zvonok.cluster.redis_nodes import HEARTBEAT_INTERVAL, NODE_TTL

BOOT = "b00t"


def seen(age: float, subscribers: int, boot: str | None = BOOT) -> Sighting:
    return Sighting(boot, age, subscribers)


def test_stale_means_one_and_a_half_heartbeat_intervals_well_inside_the_ttl() -> None:
    assert STALE_AFTER == 1.5 * HEARTBEAT_INTERVAL and STALE_AFTER < NODE_TTL


def test_a_killed_peer_is_reaped_on_the_check_its_heartbeat_turns_stale() -> None:
    watch = PeerWatch()
    # killed 0.1 s after a heartbeat: its subscription vanished at once
    assert watch.judge({"n2": (BOOT, seen(0.3, 0))}) == {"n2": "wait"}
    wait = watch.wake_in(PEER_CHECK_INTERVAL)
    assert wait == PEER_CHECK_INTERVAL  # 2.7 s until stale: the regular check
    assert watch.judge({"n2": (BOOT, seen(2.8, 0))}) == {"n2": "wait"}
    wait = watch.wake_in(PEER_CHECK_INTERVAL)
    assert math.isclose(wait, STALE_AFTER - 2.8 + STALE_MARGIN)  # due right when it turns stale
    assert watch.judge({"n2": (BOOT, seen(2.8 + wait, 0))}) == {"n2": "reap"}


def test_one_silent_stale_sighting_is_not_enough() -> None:
    watch = PeerWatch()
    assert watch.judge({"n2": ("", seen(4.0, 0))}) == {"n2": "wait"}
    assert watch.judge({"n2": ("", seen(4.5, 0))}) == {"n2": "reap"}


def test_a_resubscribing_peer_heartbeats_and_is_never_reaped() -> None:
    watch = PeerWatch()
    for n in range(20):
        assert watch.judge({"n2": (BOOT, seen(n % 4 * 0.5, 0))}) == {"n2": "wait"}


def test_a_late_heartbeat_of_a_subscribed_peer_is_no_evidence() -> None:
    watch = PeerWatch()
    for age in (2.0, 3.5, 4.0, 5.5):
        assert watch.judge({"n2": (BOOT, seen(age, 1))}) == {"n2": "alive"}
    assert watch.wake_in(PEER_CHECK_INTERVAL) == PEER_CHECK_INTERVAL


def test_a_subscriber_between_silent_sightings_starts_the_count_again() -> None:
    watch = PeerWatch()
    assert watch.judge({"n2": (BOOT, seen(3.5, 0))}) == {"n2": "wait"}
    assert watch.judge({"n2": (BOOT, seen(4.0, 1))}) == {"n2": "alive"}
    assert watch.judge({"n2": (BOOT, seen(4.5, 0))}) == {"n2": "wait"}
    assert watch.judge({"n2": (BOOT, seen(5.0, 0))}) == {"n2": "reap"}


def test_a_gone_or_restarted_peer_is_lost_after_two_checks() -> None:
    watch = PeerWatch()
    sighted = {"gone": (BOOT, GONE), "restarted": (BOOT, seen(0.1, 1, boot="other"))}
    assert watch.judge(sighted) == {"gone": "wait", "restarted": "wait"}
    assert watch.judge(sighted) == {"gone": "lost", "restarted": "lost"}
    # before its link heard anything, any boot on the key is the peer's
    assert PeerWatch().judge({"n2": ("", seen(0.1, 1, boot="other"))}) == {"n2": "alive"}


def test_a_silent_peer_whose_key_is_gone_now_was_reaped_elsewhere() -> None:
    watch = PeerWatch()
    assert watch.judge({"n2": (BOOT, seen(2.9, 0))}) == {"n2": "wait"}
    assert watch.judge({"n2": (BOOT, GONE)}) == {"n2": "lost"}
    # a key gone while the peer is still subscribed: two checks, as before
    watch = PeerWatch()
    assert watch.judge({"n2": (BOOT, seen(2.9, 0))}) == {"n2": "wait"}
    assert watch.judge({"n2": (BOOT, seen(math.inf, 1, boot=None))}) == {"n2": "wait"}


def test_clear_and_unsighted_peers_forget_the_evidence() -> None:
    watch = PeerWatch()
    watch.judge({"n2": (BOOT, GONE), "n3": (BOOT, seen(4.0, 0))})
    watch.clear()  # this node could not judge for a while (Redis trouble, not settled)
    assert watch.judge({"n2": (BOOT, GONE), "n3": (BOOT, seen(4.0, 0))}) == {
        "n2": "wait",
        "n3": "wait",
    }
    watch.judge({"n3": (BOOT, seen(4.0, 1))})  # n2's link closed meanwhile
    assert watch.judge({"n2": (BOOT, GONE)}) == {"n2": "wait"}


def test_the_stale_deadline_is_never_sooner_than_the_margin_and_scales() -> None:
    watch = PeerWatch(timing=0.25)
    assert watch.stale_after == STALE_AFTER * 0.25
    watch.judge({"n2": (BOOT, seen(watch.stale_after, 0))})
    assert watch.wake_in(PEER_CHECK_INTERVAL * 0.25) == STALE_MARGIN * 0.25
