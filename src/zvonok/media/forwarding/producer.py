"""A published track: receives the publisher's RTP and fans it out to its consumers.

Owns: ``Producer`` — the track's ``layers`` (``ProducerLayer``: exactly one for a plain track,
one per simulcast rid, RFC 8853, lowest quality first, each with its own SSRC, statistics,
NACKs, receiver reports, keyframe requests and history), its consumers, the binding of learned
SSRCs to layers (RFC 8852: ``MediaEndpoint`` reads the rid, ``bind`` records it), and the
track-wide counters, and what the publisher announces it sends: libwebrtc's video layers
allocation header extension (``packets.vla``; Chromium writes it on a keyframe and on the first
frame after its encoder's allocation changed, on every stream it still sends), read from the
layers' histories when asked (``stopped_layers``), so a stream the encoder dropped for its uplink
is known at once instead of after its last queued packets drained. A plain track's attributes
(``ssrc``, ``stats``, ``history``, ``last_sr``, ``receive_rtp``, ...) are its single layer's.
Must not import anything from zvonok outside ``zvonok.media``.

``receive_rtp`` is the hot path: a plain track's is its layer's compiled core, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from ..packets.rtcp import SenderReport
from ..packets.rtp import read_extension
from ..packets.vla import VLA_URI, LayersAllocation
from .consumer import Consumer
from .history import PacketHistory
from .layers import AUDIO_HISTORY_SIZE, HISTORY_SIZE, KEYFRAME_REQUEST_INTERVAL, ProducerLayer
from .reports import ReceiverReports
from .stats import MissingPackets, ReceiveStats
from .types import MID_URI, REPAIRED_RID_URI, RID_URI, PacketSink, ProducerParams

__all__ = ["AUDIO_HISTORY_SIZE", "HISTORY_SIZE", "KEYFRAME_REQUEST_INTERVAL", "Producer"]

#: Most simulcast layers a track keeps (RFC 8853 allows more; browsers send up to 3).
MAX_LAYERS = 3
#: How long a layers allocation that left a stream out keeps that stream stopped although its
#: packets still arrive (s): the packets the publisher queued before it stopped the stream
#: drain for up to ~1.5 s behind a short uplink; later, a stream that stopped is silent anyway
#: (``ProducerLayer.active``), and a stale announcement (the publisher stopped writing the
#: extension) cannot hold a flowing stream back for longer.
ANNOUNCED_HOLD = 3.0


class Producer:
    """One published track. Created by ``Router.produce``."""

    def __init__(
        self,
        params: ProducerParams,
        *,
        sink: PacketSink,
        rtcp_ssrc: int,
        cname: str,
        clock: Callable[[], float],
        on_close: Callable[[Producer], None],
    ) -> None:
        codecs = params.codecs
        if not codecs:
            raise ValueError(f"producer {params.producer_id} has no codecs")
        self.id = params.producer_id
        self.mid = params.mid
        self.kind = params.kind
        self.codecs = dict(codecs)
        self.rids: tuple[str, ...] = tuple(dict.fromkeys(params.rids))[:MAX_LAYERS]
        self.extensions: dict[str, int] = dict(params.extensions)
        #: The publisher's ids of the rid, repaired-rid and mid extensions (None: not negotiated).
        self.rid_ext = self.extensions.get(RID_URI)
        self.repaired_rid_ext = self.extensions.get(REPAIRED_RID_URI)
        self.mid_ext = self.extensions.get(MID_URI)
        #: The publisher's id of the video layers allocation extension (simulcast only).
        self.vla_ext = self.extensions.get(VLA_URI) if len(self.rids) > 1 else None
        #: The last layers allocation read, and when (``stopped_layers``).
        self.allocation: LayersAllocation | None = None
        self.allocation_at = float("-inf")
        self.allocations_read = 0
        self._clock = clock
        self._on_close = on_close
        self.consumers: list[Consumer] = []

        def layer(rid: str | None, ssrc: int | None, rtx_ssrc: int | None) -> ProducerLayer:
            return ProducerLayer(
                rid=rid, ssrc=ssrc, rtx_ssrc=rtx_ssrc, kind=self.kind, codecs=codecs,
                rtx_payload_types=params.rtx_payload_types, sink=sink, rtcp_ssrc=rtcp_ssrc,
                cname=cname, clock=clock,
            )  # fmt: skip

        #: The track's streams, lowest quality first (SDP order); one for a plain track.
        self.layers: list[ProducerLayer] = (
            [layer(rid, None, None) for rid in self.rids]
            if self.rids
            else [layer(None, params.ssrc, params.rtx_ssrc)]
        )
        self._layer_by_rid = {layer.rid: i for i, layer in enumerate(self.layers) if layer.rid}
        #: Per layer, the newest sequence number already looked at for an allocation.
        self._vla_walked: list[int | None] = [None] * len(self.layers)
        main = self.layers[0]
        self.clock_rate = main.clock_rate
        self.closed = False

    # -- the single layer of a plain track (the first of a simulcast one) -------------------

    @property
    def simulcast(self) -> bool:
        return bool(self.rids)

    @property
    def ssrc(self) -> int | None:
        return self.layers[0].ssrc

    @property
    def rtx_ssrc(self) -> int | None:
        return self.layers[0].rtx_ssrc

    @property
    def receive_rtp(self) -> Callable[[bytes], None]:
        return self.layers[0].receive_rtp

    def receive_rtx(self, packet: bytes) -> None:
        self.layers[0].receive_rtx(packet)

    @property
    def stats(self) -> ReceiveStats:
        return self.layers[0].stats

    @property
    def missing(self) -> MissingPackets:
        return self.layers[0].missing

    @property
    def history(self) -> PacketHistory | None:
        return self.layers[0].history

    @property
    def last_sr(self) -> tuple[int, int, float] | None:
        return self.layers[0].last_sr

    def receive_sender_report(self, sr: SenderReport, now: float) -> None:
        self.layers[0].receive_sender_report(sr, now)

    def request_keyframe(self) -> None:
        """A (throttled) keyframe request on every layer (consumers ask their own layer)."""
        for layer in self.layers:
            layer.request_keyframe()

    @property
    def want_keyframe(self) -> bool:
        return self.layers[0].want_keyframe

    @want_keyframe.setter
    def want_keyframe(self, value: bool) -> None:
        self.layers[0].want_keyframe = value

    # -- track-wide counters ---------------------------------------------------------------

    @property
    def packets_received(self) -> int:
        return sum(layer.packets_received for layer in self.layers)

    @property
    def bytes_received(self) -> int:
        return sum(layer.bytes_received for layer in self.layers)

    @property
    def dropped(self) -> int:
        return sum(layer.dropped for layer in self.layers)

    @property
    def keyframes(self) -> int:
        return sum(layer.keyframes for layer in self.layers)

    @property
    def rtx_received(self) -> int:
        return sum(layer.rtx_received for layer in self.layers)

    @property
    def nacks_sent(self) -> int:
        return sum(layer.nacks_sent for layer in self.layers)

    @property
    def keyframe_requests_sent(self) -> int:
        return sum(layer.keyframe_requests_sent for layer in self.layers)

    def recent_packets(self, count: int = AUDIO_HISTORY_SIZE) -> list[bytes]:
        """The track's last ``count`` packets, oldest first (audio keeps 64: audio levels,
        RFC 6464, are read from them with ``packets.rtp.read_extension``)."""
        return self.layers[0].recent_packets(count)

    # -- SSRC learning (RFC 8852) ----------------------------------------------------------

    def layer_index(self, rid: str) -> int | None:
        """The index of the layer sent under ``rid``, None for a rid the SDP did not keep."""
        return self._layer_by_rid.get(rid)

    def bind(self, index: int, ssrc: int, *, rtx: bool, now: float) -> int | None:
        """Record that layer ``index`` is sent (``rtx``: repaired) under ``ssrc``; returns the
        SSRC it replaces (the caller unroutes it), or None."""
        layer = self.layers[index]
        if rtx:
            old, layer.rtx_ssrc = layer.rtx_ssrc, ssrc
            return old if old != ssrc else None
        old = layer.ssrc
        if old is None or old == ssrc:
            layer.rebind(ssrc, now)
            return None
        # a restarted encoder: new sequence and timestamp spaces. Consumers on the layer leave
        # it (noting their output clock from the old stream), then wait for its next keyframe.
        leaving = [c for c in self.consumers if c.leave_layer(index)]
        layer.rebind(ssrc, now)
        for consumer in leaving:
            consumer.rejoin()
        return old

    # -- what the publisher announces (video layers allocation) -----------------------------

    def stopped_layers(self, now: float) -> frozenset[int]:
        """The layers the publisher's latest layers allocation (within ``ANNOUNCED_HOLD``)
        leaves out: it stopped sending them (or was told to: dynacast). Empty without the
        extension, or when the allocation does not fit the layers."""
        if self.vla_ext is None or self.closed:
            return frozenset()
        self._read_allocations(now)
        allocation = self.allocation
        if allocation is None or now - self.allocation_at > ANNOUNCED_HOLD:
            return frozenset()
        active = allocation.active_streams
        return frozenset(i for i in range(len(self.layers)) if i not in active)

    def _read_allocations(self, now: float) -> None:
        """The newest allocation in the packets received since the last look: each layer's
        history is walked from where the last walk stopped (Python per packet, only here);
        of the layers that carried one, the lowest wins (each stream names the same
        allocation, the lowest is the one a publisher keeps longest)."""
        ext = self.vla_ext
        if ext is None:
            return
        found: LayersAllocation | None = None
        for i, layer in enumerate(self.layers):
            history, stats = layer.history, layer.stats
            if history is None or not stats.started:
                continue
            newest = stats.max_seq
            walked = self._vla_walked[i]
            self._vla_walked[i] = newest
            size = len(history.slots)
            todo = size if walked is None else min((newest - walked) & 0xFFFF, size)
            if todo >= 0x8000:
                todo = 0
            value: bytes | None = None
            for back in range(todo):  # newest first: the first one found is the newest
                packet = history.get((newest - back) & 0xFFFF)
                if packet is not None and packet[0] & 0x10:
                    value = read_extension(packet, ext)
                    if value is not None:
                        break
            if value is None or found is not None:
                continue
            try:
                allocation = LayersAllocation.parse(value)
            except ValueError:
                continue
            if allocation.layers and max(allocation.active_streams) >= len(self.layers):
                continue  # more streams than this track keeps: not ours to read
            found = allocation
        if found is not None:
            self.allocation, self.allocation_at = found, now
            self.allocations_read += 1

    # -- consumers -------------------------------------------------------------------------

    def default_layer(self) -> int:
        """A new consumer's layer until told otherwise: the highest active one, else the
        lowest."""
        for i in range(len(self.layers) - 1, -1, -1):
            if self.layers[i].active:
                return i
        return 0

    def add_consumer(self, consumer: Consumer) -> None:
        if consumer not in self.consumers:
            self.consumers.append(consumer)
            consumer.attach()

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        consumer.detach()

    # -- RTCP ------------------------------------------------------------------------------

    def tick(self, now: float, reports: ReceiverReports | None = None) -> None:
        """Each layer's receiver report (its block to ``reports`` when given), NACK retries,
        keyframe request and bitrate window."""
        if self.closed:
            return
        for layer in self.layers:
            layer.tick(now, reports)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every consumer of this track, then tell the router. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for layer in self.layers:
            layer.core.closed = True
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        for layer in self.layers:
            layer.close()
        self._on_close(self)
