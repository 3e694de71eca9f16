"""A room's adaptive media with VP8 temporal layers, on real media objects: the publisher's
layers carry TIDs (RFC 7741 §4.2, the 0, 2, 1, 2 pattern as Chrome sends it), each layer measures
its temporal rates, and a subscriber whose estimate would have paused the lowest layer gets that
layer at a lower frame rate instead."""

from __future__ import annotations

import pytest

from zvonok.media.packets.codecs import Vp8Descriptor
from zvonok.media.packets.rtp import RtpPacket

from ..media.forwarding_fakes import FakeSink
from .test_adaptive import KEYFRAMES, SIZES, Call

PATTERN = (0, 2, 1, 2)


class TemporalCall(Call):
    """``Call`` whose layers carry three temporal layers, one packet a frame at 20 fps."""

    def payload(self, layer: int, step: int) -> bytes:
        key = step % 20 == 0
        tid = 0 if key else PATTERN[step % 4]
        sync = not key and step % 8 in (1, 2)
        pid = (1000 * layer + step) & 0x7FFF
        desc = bytes((0x90, 0xE0, 0x80 | pid >> 8, pid & 0xFF, step // 4 & 0xFF))
        desc += bytes((tid << 6 | (0x20 if sync else 0),))
        body = KEYFRAMES[layer][3:] if key else bytes.fromhex("01 02 03")
        return (desc + body).ljust(SIZES[layer], b"\0")


def tids(sink: FakeSink) -> list[int]:
    out = []
    for data in sink.rtp:
        d = Vp8Descriptor.parse(RtpPacket.parse(data).payload)
        assert d.temporal_id is not None
        out.append(d.temporal_id)
    return out


def test_a_weak_subscriber_gets_the_low_layer_at_a_lower_frame_rate_not_a_pause() -> None:
    call = TemporalCall("wide", "weak")
    weak = call.subs["weak"]
    call.run(2.0)
    q = call.producer.layers[0]
    assert q.temporal_fps == pytest.approx((5.0, 10.0, 20.0), abs=0.5)  # windows of 1-1.25 s
    assert len(q.temporal_bitrates) == 3 and q.temporal_bitrates[-1] == q.bitrate
    # ~151 kbit/s for the low layer: at 80 kbit/s of estimate it would have been paused (60 %
    # of it does not fit); its TIDs 0-1 (~76 k) are kept instead
    weak.media.downlink.estimate_bps = 80_000
    call.run(1.0)
    consumer = weak.consumers["cam"]
    assert call.target("weak") == 0 and consumer.temporal_target == 1
    assert weak.paused_told() == []
    sink = consumer._sink
    assert isinstance(sink, FakeSink)
    sink.rtp.clear()
    call.run(2.0)
    assert set(tids(sink)) == {0, 1} and len(sink.rtp) in range(18, 23)  # ~10 fps for 2 s
    # the wide subscriber is not filtered: its forwarder is in the fan-out itself
    wide = call.subs["wide"].consumers["cam"]
    assert wide.temporal_target is None and call.producer.layers[2].items == (wide.core,)
    # the link recovers: after the hold, the whole low layer again, then up the layers
    weak.media.downlink.estimate_bps = 250_000
    call.run(3.0)
    assert consumer.temporal_target is None and call.target("weak") == 0
