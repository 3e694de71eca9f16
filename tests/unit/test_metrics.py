"""The metrics registry: folding plain counters of live and closed objects, the rare-event
counters, histograms, and that the exposition parses with Prometheus' own text parser."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zvonok import metrics
from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.media import worker as worker_module
from zvonok.media.worker import MediaWorker
from zvonok.metrics import (
    METRICS_METHOD,
    Metrics,
    _Folder,
    merge_expositions,
    scrape_workers,
    serve_metrics,
)
from zvonok.rooms.quality import QualityMonitor, QualitySample
from zvonok.rooms.service import RoomService


class Thing:
    def __init__(self, packets: int = 0) -> None:
        self.packets = packets


FIELDS = (("things", "packets", "help"),)


def test_folder_stays_monotonic_as_objects_close() -> None:
    folder = _Folder(FIELDS)
    a, b = Thing(10), Thing(5)
    assert folder.totals([(a, "x"), (b, "x")])[("x", "packets")] == 15
    a.packets = 20
    folder.touch([(a, "x")])  # read one last time before it closes
    a.packets = 20
    assert folder.totals([(b, "x")])[("x", "packets")] == 25
    c = Thing(1)
    assert folder.totals([(b, "x"), (c, "y")]) == {("x", "packets"): 25, ("y", "packets"): 1}
    assert folder.totals([]) == {("x", "packets"): 25, ("y", "packets"): 1}


def test_folder_retires_an_object_whose_id_was_reused() -> None:
    folder = _Folder(FIELDS)
    a = Thing(7)
    folder.touch([(a, "x")])
    key = id(a)
    del a
    b = Thing(2)
    folder._seen[id(b)] = folder._seen.pop(key)  # as if b got the dead object's id
    assert folder.totals([(b, "x")])[("x", "packets")] == 9


def test_unknown_client_message_types_are_one_label() -> None:
    before = dict(metrics._EVENTS)
    metrics.record_signaling_message("in", "no-such-type-" + "x" * 50)
    metrics.record_signaling_message("in", "dance")
    metrics.record_signaling_message("in", "join")
    metrics.record_signaling_message("out", "no-such-type")  # our own types are kept as sent
    changed = {k: v - before.get(k, 0) for k, v in metrics._EVENTS.items() if v != before.get(k)}
    assert changed == {
        ("signaling_messages", "in", "other"): 2,
        ("signaling_messages", "in", "join"): 1,
        ("signaling_messages", "out", "no-such-type"): 1,
    }


@pytest.fixture
async def registry() -> AsyncIterator[Metrics]:
    worker = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await worker.start()
    rooms = RoomService(
        worker=worker,
        sessions=LocalSessionDirectory(),
        rooms=LocalRoomDirectory(),
        ice_servers=[],
    )
    yield Metrics(rooms=rooms, worker=worker, connections=lambda: 3, tick_interval=0.25)
    await worker.close()


def parsed(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


async def test_the_loop_lag_is_not_measured_across_a_paused_tick(registry: Metrics) -> None:
    """An idle media worker's tick sleeps: the first tick after the pause starts the clock."""
    registry.on_tick(10.0)
    registry.on_tick(70.0, restart=True)  # a minute asleep: no lag
    registry.on_tick(70.35)
    samples = parsed(registry)
    assert samples[("zvonok_event_loop_lag_seconds_count", ())] == 1
    assert samples[("zvonok_event_loop_lag_seconds_sum", ())] == pytest.approx(0.1)


async def test_exposition_parses_and_has_bounded_labels(registry: Metrics) -> None:
    metrics.record_auth_refusal("expired")
    metrics.record_signaling_error("bad-json")
    registry.observe_quality(QualitySample("video", 0.04, 0.002, 0.01))
    registry.observe_quality(QualitySample("audio", None, 0.001, 0.0))
    registry.on_tick(10.0)
    registry.on_tick(10.35)
    samples = parsed(registry)
    assert samples[("zvonok_rooms", ())] == 0
    assert samples[("zvonok_websocket_connections", ())] == 3
    assert samples[("zvonok_rtp_packets_received_total", (("kind", "video"),))] == 0
    assert samples[("zvonok_auth_refusals_total", (("reason", "expired"),))] >= 1
    assert samples[("zvonok_signaling_errors_total", (("code", "bad-json"),))] >= 1
    assert samples[("zvonok_rtt_seconds_count", (("kind", "video"),))] == 1
    assert samples[("zvonok_loss_ratio_count", (("kind", "audio"),))] == 1
    assert samples[("zvonok_event_loop_lag_seconds_count", ())] == 1
    assert samples[("zvonok_event_loop_lag_seconds_sum", ())] == pytest.approx(0.1)
    assert ("process_resident_memory_bytes", ()) in samples or (
        "python_gc_objects_collected_total",
        (("generation", "0"),),
    ) in samples
    names = {name for name, _ in samples if name.startswith("zvonok_")}
    assert len(names) > 40
    labels = {k for _, lbls in samples for k, _ in lbls}
    assert not labels & {"room", "session", "user", "session_id", "room_id"}


DOCS = Path(__file__).resolve().parents[2] / "docs"


async def test_docs_and_dashboard_name_only_real_metrics_and_document_all(
    registry: Metrics,
) -> None:
    body, _ = registry.render()
    families = {
        f.name
        for f in text_string_to_metric_families(body.decode())
        if f.name.startswith("zvonok_")
    }
    families.add("zvonok_webhook_queue_depth")  # exposed only with webhook_urls
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {_family(m) for e in exprs for m in re.findall(r"zvonok_[a-z_]+", e)}
    # the cluster panels' families exist only with Redis: a real cluster node's /metrics shows
    # them (tests/integration/cluster/test_cluster_metrics.py)
    used = {name for name in used if not name.startswith("zvonok_cluster_")}
    assert used and used <= families, used - families
    operations = (DOCS / "operations.md").read_text()
    documented = set(re.findall(r"`(zvonok_[a-z_]+)`", operations))
    documented = {_family(n) for n in documented}
    assert families <= documented, families - documented


def _family(name: str) -> str:
    return re.sub(r"_(bucket|count|sum|total)$", "", name)


async def test_a_front_and_its_workers_render_what_they_have(registry: Metrics) -> None:
    front = Metrics(connections=lambda: 2, tick_interval=0.25)
    names = {f.name for f in text_string_to_metric_families(front.render()[0].decode())}
    assert "zvonok_websocket_connections" in names and "zvonok_auth_refusals" in names
    assert not names & {"zvonok_rooms", "zvonok_media_transports", "zvonok_rtp_packets_sent"}
    worker = Metrics(rooms=registry.collector._rooms, worker=registry.collector._worker,
                     tick_interval=0.25)  # fmt: skip
    names = {f.name for f in text_string_to_metric_families(worker.render()[0].decode())}
    assert {"zvonok_rooms", "zvonok_media_transports", "zvonok_rtp_packets_sent"} <= names
    assert "zvonok_websocket_connections" not in names


async def test_workers_expositions_merge_into_the_fronts(registry: Metrics) -> None:
    service, media = registry.collector._rooms, registry.collector._worker
    front = Metrics(connections=lambda: 5, tick_interval=0.25)
    w0 = Metrics(rooms=service, worker=media, tick_interval=0.25)
    w1 = Metrics(rooms=service, worker=media, tick_interval=0.25)
    w0.observe_quality(QualitySample("video", 0.04, 0.002, 0.01))
    metrics.record_auth_refusal("expired")
    merged = merge_expositions(
        front.render()[0],
        {"w0": w0.render()[0], "w1": w1.render()[0].decode(), "w2": None, "w3": b"x{ 1"},
    )
    text = merged.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    type_lines = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(type_lines) == len(set(type_lines)) == len(families)  # one HELP/TYPE per name

    def series(name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples}

    assert series("zvonok_rooms") == {(("worker", "w0"),): 0, (("worker", "w1"),): 0}
    assert series("zvonok_websocket_connections") == {(): 5}  # the front's own: unlabelled
    refusals = series("zvonok_auth_refusals")
    for labels in ((), (("worker", "w0"),), (("worker", "w1"),)):
        assert refusals[(("reason", "expired"), *labels)] >= 1
    packets = families["zvonok_rtp_packets_received"]
    assert packets.type == "counter"
    assert {s.name for s in packets.samples} == {"zvonok_rtp_packets_received_total"}
    assert "# TYPE zvonok_rtp_packets_received_total counter" in text
    assert {s.labels["worker"] for s in packets.samples} == {"w0", "w1"}
    rtt = series("zvonok_rtt_seconds")
    assert rtt[(("kind", "video"), ("le", "0.05"), ("worker", "w0"))] == 1
    assert families["zvonok_rtt_seconds"].type == "histogram"
    assert series("zvonok_worker_up") == {
        (("worker", "w0"),): 1,
        (("worker", "w1"),): 1,
        (("worker", "w2"),): 0,
        (("worker", "w3"),): 0,
    }
    process = series("process_cpu_seconds")  # every process's CPU: the front's and each worker's
    assert {labels for labels in process} <= {(), (("worker", "w0"),), (("worker", "w1"),)}
    assert merge_expositions(merged, {}) == merged  # what it writes, it reads back unchanged


def test_a_worker_family_of_another_type_is_dropped() -> None:
    own = b"# HELP zvonok_rooms Rooms.\n# TYPE zvonok_rooms gauge\nzvonok_rooms 1.0\n"
    other = b"# HELP zvonok_rooms Rooms.\n# TYPE zvonok_rooms counter\nzvonok_rooms 7.0\n"
    families = list(text_string_to_metric_families(merge_expositions(own, {"w0": other}).decode()))
    rooms = next(f for f in families if f.name == "zvonok_rooms")
    assert [(s.labels, s.value) for s in rooms.samples] == [({}, 1.0)]


async def test_the_front_scrapes_its_workers_over_their_calls(registry: Metrics) -> None:
    service, media = registry.collector._rooms, registry.collector._worker
    worker = Metrics(rooms=service, worker=media, tick_interval=0.25)

    async def live(method: str, params: dict[str, Any]) -> Any:
        assert method == METRICS_METHOD
        return json.loads(json.dumps(serve_metrics(worker)))  # JSON on the link

    async def dead(method: str, params: dict[str, Any]) -> Any:
        raise ConnectionError("worker link closed")

    async def hung(method: str, params: dict[str, Any]) -> Any:
        await asyncio.Event().wait()

    scraped = await scrape_workers({"w0": live, "w1": dead, "w2": hung}, within=0.1)
    assert scraped["w1"] is None and scraped["w2"] is None
    assert scraped["w0"] is not None and "zvonok_rooms" in scraped["w0"]
    front = Metrics(connections=lambda: 1, tick_interval=0.25)
    body, content_type = front.render_merged(scraped)
    assert content_type.startswith("text/plain")
    up = {
        s.labels["worker"]: s.value
        for f in text_string_to_metric_families(body.decode())
        if f.name == "zvonok_worker_up"
        for s in f.samples
    }
    assert up == {"w0": 1, "w1": 0, "w2": 0}


async def test_adaptive_media_families_are_there_with_bounded_labels(registry: Metrics) -> None:
    samples = parsed(registry)
    assert samples[("zvonok_layer_switches_total", (("kind", "video"),))] == 0
    assert samples[("zvonok_video_pauses_total", ())] == 0
    assert samples[("zvonok_video_held", (("reason", "bandwidth"),))] == 0
    assert samples[("zvonok_video_subscriptions_by_layer", (("layer", "none"),))] == 0
    for cap in ("0", "1", "2", "all"):
        key = ("zvonok_video_subscriptions_by_temporal_layer", (("temporal_layer", cap),))
        assert samples[key] == 0
    assert samples[("zvonok_subscriber_downlinks", (("band", "none"),))] == 0
    estimates = (None, 299_999, 300_000, 999_999, 2_999_999, 3_000_000)
    assert [metrics._band(e) for e in estimates] == [
        "none", "lt_300k", "lt_1m", "lt_1m", "lt_3m", "ge_3m"
    ]  # fmt: skip


async def test_an_empty_node_s_probes_let_its_tick_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Metrics.add_ticks``: the loop-lag probe and the quality monitor do not keep an empty
    one-process node's tick running; with a room's tick they run, and the lag is measured
    from the second tick after the pause on."""
    monkeypatch.setattr(worker_module, "TICK_INTERVAL", 0.02)
    worker = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await worker.start()
    try:
        rooms = RoomService(
            worker=worker,
            sessions=LocalSessionDirectory(),
            rooms=LocalRoomDirectory(),
            ice_servers=[],
        )
        registry = Metrics(rooms=rooms, worker=worker, connections=lambda: 0, tick_interval=0.02)
        quality = QualityMonitor(rooms, interval=0.05)
        unsubscribe = registry.add_ticks(worker, quality)
        assert worker.idle
        await asyncio.sleep(0.1)
        assert worker.awake_ticks == 0
        assert parsed(registry)[("zvonok_event_loop_lag_seconds_count", ())] == 0
        room_tick = worker.add_tick(lambda now: None)  # a room keeps it awake
        await asyncio.sleep(0.15)
        ticks = worker.awake_ticks
        assert ticks >= 3
        assert parsed(registry)[("zvonok_event_loop_lag_seconds_count", ())] == ticks - 1
        room_tick()
        for remove in unsubscribe:
            remove()
    finally:
        await worker.close()


async def test_the_loop_lag_is_measured_against_the_interval_the_tick_slept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With nothing published the worker ticks at its slow rate: the loop-lag probe measures each
    tick against the interval it slept (not the fast one), and against the short sleep a
    publish (``hurry``) brings; an unloaded loop shows no lag either way."""
    monkeypatch.setattr(worker_module, "TICK_INTERVAL", 0.02)
    monkeypatch.setattr(worker_module, "IDLE_TICK_INTERVAL", 0.08)
    worker = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await worker.start()
    try:
        rooms = RoomService(
            worker=worker,
            sessions=LocalSessionDirectory(),
            rooms=LocalRoomDirectory(),
            ice_servers=[],
        )
        registry = Metrics(rooms=rooms, worker=worker, connections=lambda: 0, tick_interval=0.02)
        unsubscribe = registry.add_ticks(worker, QualityMonitor(rooms, interval=5.0))
        room_tick = worker.add_tick(lambda now: None)
        await asyncio.sleep(0.45)
        samples = parsed(registry)
        count = samples[("zvonok_event_loop_lag_seconds_count", ())]
        assert 3 <= count <= 5  # 0.08 s apart, not 0.02
        assert samples[("zvonok_event_loop_lag_seconds_sum", ())] / count < 0.03
        await asyncio.sleep(0.05)  # mid-sleep
        release = worker.hurry()
        await asyncio.sleep(0.2)
        samples = parsed(registry)
        fast = samples[("zvonok_event_loop_lag_seconds_count", ())] - count
        assert fast >= 5
        assert samples[("zvonok_event_loop_lag_seconds_sum", ())] / (count + fast) < 0.03
        release()
        room_tick()
        for remove in unsubscribe:
            remove()
    finally:
        await worker.close()
