"""A publisher whose uplink shrinks: its encoder stops the top simulcast stream and says so in
the video layers allocation extension (``packets.vla``) on the streams it still sends, while the
packets it queued before still drain for a while. The room moves the subscribers of the stopped
stream at the next tick, not once that stream fell silent, and never onto a layer dynacast
turned off above what still flows (the same real media objects as test_adaptive.py)."""

from __future__ import annotations

from zvonok.media.forwarding.producer import ANNOUNCED_HOLD
from zvonok.media.packets.vla import LayersAllocation, SpatialLayer
from zvonok.rooms.allocation import OFF_AFTER

from ..media.forwarding_fakes import rtp
from .test_adaptive import MID_ID, RID_ID, RIDS, SSRCS, STEP, Call

VLA_ID = 9


def allocation(*streams: int) -> bytes:
    """What Chromium writes on each stream it sends: those streams, 3 temporal layers each."""
    layers = tuple(
        SpatialLayer(s, 0, (100 * (s + 1), 150 * (s + 1), 200 * (s + 1))) for s in streams
    )
    return bytes(LayersAllocation(0, layers))


class UplinkCall(Call):
    """``Call`` whose publisher writes the layers allocation on the first packet of each stream
    after a change (and on keyframes), and whose stopped streams keep ``draining`` packets for
    a while (what the publisher had queued)."""

    def __init__(self, *subscribers: str, announce: bool = True) -> None:
        super().__init__(*subscribers)
        if announce:
            self.producer.vla_ext = VLA_ID
        self.announce = announce
        self.sends = [True, True, True]
        self.draining = [0.0, 0.0, 0.0]
        self.value = allocation(0, 1, 2)
        self.told = [True, True, True]

    def stop(self, layer: int, drain: float) -> None:
        """The publisher's encoder stops ``layer``; its queue drains for ``drain`` seconds."""
        self.sends[layer] = False
        self.draining[layer] = drain
        self.value = allocation(*(i for i in range(3) if self.sends[i] and self.sending[i]))
        self.told = [True, True, True]

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.clock.now += STEP
            for layer in range(3):
                drains = self.draining[layer] > 0
                if not (self.sends[layer] and self.sending[layer]) and not drains:
                    continue
                self.draining[layer] -= STEP
                payload = self.payload(layer, self.steps)
                ext = [(MID_ID, b"1"), (RID_ID, RIDS[layer].encode())]
                if self.announce and not drains and (self.told[layer] or self.steps % 20 == 0):
                    ext.append((VLA_ID, self.value))
                    self.told[layer] = False
                ts = 90_000 * self.steps // 20
                packet = rtp(self.seqs[layer], ts, ssrc=SSRCS[layer], payload=payload, ext=ext)
                self.endpoint.on_rtp(packet)
                self.seqs[layer] += 1
            self.steps += 1
            if self.steps % 5 == 0:
                self.router.tick(self.clock.now)
                self.adaptation.tick(self.clock.now)
                told = self.publisher.layers_told()
                if told and told[-1] != self.sending:
                    self.sending = told[-1]
                    active = [i for i in range(3) if self.sending[i] and self.sends[i]]
                    self.value = allocation(*active)
                    self.told = [True, True, True]


def test_a_stopped_top_stream_moves_its_subscriber_at_the_next_tick() -> None:
    call = UplinkCall("sub")
    call.run(3.0)
    consumer = call.subs["sub"].consumers["cam"]
    assert call.target("sub") == 2 and consumer.current_layer == 2
    assert call.producer.stopped_layers(call.clock.now) == frozenset()
    call.stop(2, drain=1.5)
    call.run(0.25)  # the allocation arrives on "q" and "h"; "f" still drains
    assert call.producer.stopped_layers(call.clock.now) == {2}
    assert call.target("sub") == 1
    call.run(1.0)  # "h"'s next keyframe (one a second here)
    assert consumer.current_layer == 1


def test_without_the_announcement_the_drain_holds_the_subscriber() -> None:
    call = UplinkCall("sub", announce=False)
    call.run(3.0)
    call.stop(2, drain=1.5)
    call.run(1.25)  # "f" still drains: it looks alive
    assert call.target("sub") == 2
    call.run(1.0)  # silent for its activity window: it is not
    assert call.target("sub") == 1


def test_not_onto_a_layer_dynacast_turned_off_above_what_flows() -> None:
    call = UplinkCall("sub")
    call.run(OFF_AFTER + 2)
    assert call.publisher.layers_told() == [[True, False, True]]  # nobody gets "h"
    call.stop(2, drain=1.0)
    call.run(0.25)
    # "h" could be turned on again, but the publisher just stopped "f" for its uplink: the
    # subscriber goes to "q", which flows, instead of waiting for "h"
    assert call.target("sub") == 0
    call.run(1.0)
    assert call.subs["sub"].consumers["cam"].current_layer == 0


def test_an_announcement_is_held_only_for_a_while() -> None:
    call = UplinkCall("sub")
    call.run(2.0)
    call.stop(2, drain=ANNOUNCED_HOLD + 2)  # "f" keeps coming
    call.run(0.5)
    assert call.producer.stopped_layers(call.clock.now) == {2}
    call.announce = False  # and the publisher writes no allocation any more: a stale one
    call.run(ANNOUNCED_HOLD)
    assert call.producer.stopped_layers(call.clock.now) == frozenset()


def test_a_malformed_or_foreign_allocation_is_ignored() -> None:
    call = UplinkCall("sub")
    call.value = b"\x20"  # NS=2 with per-stream bitmasks, and nothing after
    call.run(1.5)
    assert call.producer.allocation is None
    assert call.producer.stopped_layers(call.clock.now) == frozenset()
    call.value = allocation(0, 1, 2, 3)  # a fourth stream this track does not have
    call.told = [True, True, True]
    call.run(0.5)
    assert call.producer.allocation is None
