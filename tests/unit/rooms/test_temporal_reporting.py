"""The VP8 temporal cap a subscriber gets, as ``stats`` (``temporalLayer``) and ``/metrics``
(``zvonok_video_subscriptions_by_temporal_layer``) report it: on the real media objects of
test_adaptive_temporal.py (a 3-layer simulcast camera with three temporal layers, real
consumers capped by the room's allocation), read through ``QualityMonitor`` and the metrics'
adaptive gauges. The session around the consumers is a stand-in with what those two read of a
``Participant``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

from zvonok import metrics
from zvonok.ids import SessionId, UserId
from zvonok.media.forwarding.consumer import Consumer
from zvonok.media.transport.transport import ConnectionState
from zvonok.rooms.allocation import PauseReason
from zvonok.rooms.participant import Participant
from zvonok.rooms.quality import QualityMonitor
from zvonok.rooms.room import Room
from zvonok.rooms.service import RoomService
from zvonok.signaling.messages import Stats

from .test_adaptive import Media, Member
from .test_adaptive_temporal import TemporalCall


@dataclass
class Transport:
    rx_bytes: int = 0
    tx_bytes: int = 0
    selected_address: object = None


@dataclass
class Session:
    """What ``QualityMonitor.measure`` and ``metrics._adaptive_gauges`` read of a session."""

    member: Member
    room: Room[Member]
    transport: Transport = field(default_factory=Transport)
    state: ConnectionState = ConnectionState.CONNECTED
    published: dict[str, str] = field(default_factory=dict)
    closed: bool = False
    log: Any = field(default_factory=lambda: logging.getLogger("test.temporal"))

    @property
    def session_id(self) -> SessionId:
        return self.member.session_id

    @property
    def user_id(self) -> UserId:
        return self.member.user_id

    @property
    def consumers(self) -> dict[str, Consumer]:
        return self.member.consumers

    @property
    def held(self) -> dict[str, PauseReason]:
        return self.member.held

    @property
    def media(self) -> Media:
        return self.member.media


@dataclass
class Service:
    sessions: dict[str, Session]


def receiving(monitor: QualityMonitor, session: Session) -> list[dict[str, Any]]:
    monitor.run(5.0)
    payload = monitor.latest[session.session_id]
    # what goes on the wire: the payload parses as the message and writes back the same
    wire = Stats.parse(payload).to_json()
    assert wire["receiving"] == payload["receiving"]
    return cast(list[dict[str, Any]], wire["receiving"])


def by_temporal(sessions: list[Session]) -> dict[str, float]:
    families = metrics._adaptive_gauges(cast(list[Participant], sessions))
    family = next(f for f in families if f.name == "zvonok_video_subscriptions_by_temporal_layer")
    return {s.labels["temporal_layer"]: s.value for s in family.samples}


def test_stats_and_metrics_name_the_temporal_cap_in_force() -> None:
    call = TemporalCall("wide", "weak")
    weak = Session(call.subs["weak"], call.room)
    wide = Session(call.subs["wide"], call.room)
    monitor = QualityMonitor(
        cast(RoomService, Service({"s-weak": weak, "s-wide": wide})), interval=5.0, send=False
    )
    call.run(2.0)
    [entry] = receiving(monitor, weak)
    assert entry["kind"] == "video" and entry["temporalLayer"] is None  # all forwarded
    assert by_temporal([weak, wide]) == {"0": 0, "1": 0, "2": 0, "all": 2}
    # the lowest layer does not fit: TIDs 0-1 of it (half the frames) instead of a pause
    weak.media.downlink.estimate_bps = 80_000
    call.run(2.0)  # the switch down waits for a keyframe of the lowest layer
    consumer = weak.consumers["cam"]
    assert consumer.temporal_target == 1 and consumer.current_temporal == 1
    [entry] = receiving(monitor, weak)
    assert entry["layer"] == "q" and not entry["paused"] and entry["temporalLayer"] == 1
    [other] = receiving(monitor, wide)
    assert other["temporalLayer"] is None
    assert by_temporal([weak, wide]) == {"0": 0, "1": 1, "2": 0, "all": 1}
    # held back by its subscriber: nothing forwarded, so no cap named
    weak.held["cam"] = "subscriber"
    [entry] = receiving(monitor, weak)
    assert entry["paused"] and entry["temporalLayer"] is None
    del weak.held["cam"]
    # the link recovers: the whole layer again. Until a keyframe resets the PictureIDs the filter
    # stays, its cap climbed to TID 2 at a layer-sync frame: every TID of this layer, so "all"
    weak.media.downlink.estimate_bps = 250_000
    call.run(3.0)
    assert consumer.temporal_target is None and consumer.current_temporal == 2
    [entry] = receiving(monitor, weak)
    assert entry["temporalLayer"] is None
    assert by_temporal([weak, wide]) == {"0": 0, "1": 0, "2": 0, "all": 2}
    call.run(1.0)  # a keyframe: the filter leaves
    assert consumer.current_temporal is None
    [entry] = receiving(monitor, weak)
    assert entry["temporalLayer"] is None
