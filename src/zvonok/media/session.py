"""One session's media: its transport, its endpoint, and the producers and consumers it owns.

Owns ``MediaSession`` (mediasoup's ``WebRtcTransport`` with ``produce``/``consume``): the
session's ``WebRtcTransport`` (ICE-lite/DTLS/SRTP, created on the worker), its ``MediaEndpoint``
(RTP/RTCP demux by SSRC) and the producers of the tracks it publishes and consumers of the tracks
it receives, keyed by producer id. ``produce(ProducerParams)`` and ``consume(producer,
ConsumerParams)`` create them on the room's ``Router`` with this session's transport as their
sink and put them in the endpoint's routing tables; ``close_producer`` / ``close_consumer`` (by
producer id) and ``close`` undo that. So a producer or consumer is registered in two places: the
room's router (room-wide: RTCP ticks, the close cascade, metrics) and its session (ownership and
teardown; the endpoint's SSRC tables are the session's private index, nobody else touches them).

Also owns the translation of a negotiated SDP into those parameter objects:
``producer_params`` (a published m-line → ``ProducerParams``) and ``consumer_params`` (a
publisher's track and what the subscriber's m-line accepted → ``ConsumerParams``: payload-type,
RTX and header-extension id maps, RFC 8285). Knows nothing of rooms or signaling: the rooms
layer decides *what* a session publishes and receives, this module *how*.
Must not import anything from zvonok outside ``zvonok.media``. Implements no RFC of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Protocol

from .forwarding.consumer import Consumer
from .forwarding.endpoint import MediaEndpoint
from .forwarding.producer import Producer
from .forwarding.router import Router
from .forwarding.twcc import Downlink
from .forwarding.types import CodecInfo, ConsumerParams, ProducerParams
from .sdp.codecs import codec_key
from .sdp.slots import AcceptedSend, PublishedTrack
from .transport.transport import ConnectionState, TransportListener, WebRtcTransport

__all__ = [
    "ConsumerParams",
    "MediaSession",
    "ProducerParams",
    "TransportFactory",
    "consumer_params",
    "producer_params",
]


class TransportFactory(Protocol):
    """Where a session's transport comes from (``media.worker.MediaWorker`` satisfies it)."""

    def create_transport(self, listener: TransportListener) -> WebRtcTransport: ...


class _TransportEvents:
    """The transport's listener: RTP/RTCP go straight to the endpoint (hot path)."""

    __slots__ = ("on_rtp", "on_rtcp", "on_state")

    def __init__(self, endpoint: MediaEndpoint, on_state: Callable[[ConnectionState], None]):
        self.on_rtp = endpoint.on_rtp
        self.on_rtcp = endpoint.on_rtcp
        self.on_state = on_state


class MediaSession:
    """One session's transport + endpoint and the producers and consumers it created."""

    def __init__(
        self,
        *,
        worker: TransportFactory,
        router: Router,
        on_state: Callable[[ConnectionState], None],
    ) -> None:
        self._router = router
        self.endpoint = MediaEndpoint()
        self.transport: WebRtcTransport = worker.create_transport(
            _TransportEvents(self.endpoint, on_state)
        )
        # ICE-TCP: the forwarders follow the transport's send target when its path changes.
        self.transport.on_target_change = self.endpoint.retarget
        self.downlink = Downlink(self.transport, self.endpoint)  # transport-cc both ways
        self._producers: dict[str, Producer] = {}  # producer id -> producer
        self._consumers: dict[str, Consumer] = {}  # producer id -> this session's consumer
        #: Read-only views of the session's registries (publish order, receive order).
        self.producers = MappingProxyType(self._producers)
        self.consumers = MappingProxyType(self._consumers)
        self.closed = False

    def produce(self, params: ProducerParams) -> Producer:
        """A producer for a track this session publishes; its RTP and RTX are routed to it."""
        if self.closed:
            raise ValueError("media session is closed")
        producer = self._router.produce(params, sink=self.transport)
        self.endpoint.add_producer(producer)
        self._producers[producer.id] = producer
        self.downlink.produced(producer)
        return producer

    def consume(self, producer: Producer, params: ConsumerParams) -> Consumer:
        """A started consumer of ``producer`` (another session's) sending on this transport."""
        if self.closed:
            raise ValueError("media session is closed")
        if producer.id in self._consumers:
            raise ValueError(f"already consuming {producer.id!r}")
        consumer = self._router.consume(producer, params, sink=self.transport)
        self.endpoint.add_consumer(consumer)
        self._consumers[producer.id] = consumer
        self.downlink.consumed(producer, params, consumer)
        return consumer

    def update_consumer(self, producer: Producer, params: ConsumerParams) -> None:
        """The subscriber renegotiated the m-line of its consumer of ``producer``: new payload
        types or extension ids from the next packet on, the transport-wide seq stamped into the
        new id. Nothing when this session does not consume it."""
        consumer = self._consumers.get(producer.id)
        if consumer is None or consumer.closed:
            return
        consumer.update(params)
        self.downlink.consumed(producer, params, consumer)

    def close_producer(self, producer_id: str) -> None:
        """Stop routing the track's packets and close its producer (and so its consumers)."""
        producer = self._producers.pop(producer_id, None)
        if producer is not None:
            self.endpoint.remove_producer(producer)
            producer.close()

    def close_consumer(self, producer_id: str) -> None:
        """Close this session's consumer of ``producer_id``, if it has one."""
        consumer = self._consumers.pop(producer_id, None)
        if consumer is not None:
            self.endpoint.remove_consumer(consumer)
            consumer.close()

    def close(self) -> None:
        """Close every producer and consumer, then the transport. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.downlink.close()
        for producer_id in list(self._producers):
            self.close_producer(producer_id)
        for producer_id in list(self._consumers):
            self.close_consumer(producer_id)
        self.transport.close()


def producer_params(producer_id: str, track: PublishedTrack) -> ProducerParams:
    """What the forwarding layer needs of a negotiated published m-line: codecs with the RTCP
    feedback the publisher accepts (RFC 4585 ``nack``/``nack pli``, RFC 5104 ``ccm fir``), the
    simulcast rids (RFC 8853, lowest first) and the header-extension ids (RFC 8285) by which
    the SSRCs of rids are learned (RFC 8852)."""
    return ProducerParams(
        producer_id=producer_id,
        kind="video" if track.kind == "video" else "audio",
        codecs={
            pt: CodecInfo(
                mime=c.name,
                clock_rate=c.clock_rate,
                nack="nack" in c.rtcp_fb,
                pli="nack pli" in c.rtcp_fb,
                fir="ccm fir" in c.rtcp_fb,
            )
            for pt, c in track.codecs.items()
        },
        ssrc=None if track.rids else track.ssrc,
        rtx_ssrc=None if track.rids else track.rtx_ssrc,
        rtx_payload_types=track.rtx,
        mid=track.mid,
        rids=tuple(track.rids),
        extensions=dict(track.extensions),
    )


def consumer_params(
    consumer_id: str,
    source: PublishedTrack,
    accepted: AcceptedSend,
    *,
    ssrc: int,
    rtx_ssrc: int,
    cname: str,
) -> ConsumerParams | None:
    """How a subscriber receives ``source`` given what its m-line ``accepted``, in the SSRCs the
    server announced for it; None when no codec is common to both."""
    by_key = {codec_key(c): c.payload_type for c in accepted.codecs}
    pt_map = {pt: by_key[codec_key(c)] for pt, c in source.codecs.items() if codec_key(c) in by_key}
    if not pt_map:
        return None
    rtx_map = {apt: rtx for rtx, apt in accepted.rtx.items()}
    ext_map = {
        pub_id: accepted.extensions[uri]
        for uri, pub_id in source.extensions.items()
        if uri in accepted.extensions and not uri.endswith(":sdes:mid")
    }
    return ConsumerParams(
        consumer_id=consumer_id,
        ssrc=ssrc,
        rtx_ssrc=rtx_ssrc if rtx_map else None,
        payload_types=pt_map,
        rtx_payload_types=rtx_map,
        ext_id_map=ext_map,
        cname=cname,
    )
