"""One room's media: its producers, its consumers and their periodic RTCP.

Owns: ``Router`` (creates and closes ``Producer``s and ``Consumer``s from their parameter
objects — ``produce``/``consume``, or ``create_producer``/``create_consumer`` with the fields
spelled out — and runs their ``tick``: receiver reports and NACK retries to publishers, sender
reports to subscribers, RFC 3550 §6.2 at about one a second driven by the owner's clock; it has
no timers of its own; the receiver reports of one publisher's streams leave as one compound
packet, ``reports.ReceiverReports``) and the RTCP sender SSRC (RFC 3550 §8.1: random) and CNAME
the router uses when it reports as a receiver. While it has a producer it holds its ``hurry``
(``MediaWorker.hurry``: the tick at ~4 Hz; with no published track in any room it slows down).
The router is one of the two registries of a
producer or consumer (the room-wide one); the other is the ``media.session.MediaSession`` that
created it.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Literal

from .consumer import Consumer
from .layers import EARLY_SHARE
from .producer import Producer
from .reports import ReceiverReports
from .types import CodecInfo, ConsumerParams, PacketSink, ProducerParams

__all__ = [
    "CodecInfo",
    "Consumer",
    "ConsumerParams",
    "PacketSink",
    "Producer",
    "ProducerParams",
    "Router",
]


class Router:
    """Producers and consumers of one room. ``close`` cascades; ``tick`` is called ~4x/s while it
    has a producer (it holds ``hurry``), ~1x/s otherwise."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        hurry: Callable[[], Callable[[], None]] | None = None,
    ) -> None:
        self._clock = clock
        #: Called when the first producer comes; returns the release called when the last goes.
        self._hurry = hurry
        self._release: Callable[[], None] | None = None
        self.rtcp_ssrc = secrets.randbits(32) or 1
        self.cname = "zvonok-" + secrets.token_hex(4)
        self._reports = ReceiverReports(self.rtcp_ssrc, self.cname)
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.closed = False

    def create_producer(
        self,
        *,
        producer_id: str,
        sink: PacketSink,
        kind: Literal["audio", "video"],
        codecs: Mapping[int, CodecInfo],
        ssrc: int,
        rtx_ssrc: int | None,
        rtx_payload_types: Mapping[int, int],
    ) -> Producer:
        """A producer for a published track; ``sink`` is the publisher's transport."""
        return self.produce(
            ProducerParams(
                producer_id=producer_id,
                kind=kind,
                codecs=codecs,
                ssrc=ssrc,
                rtx_ssrc=rtx_ssrc,
                rtx_payload_types=rtx_payload_types,
            ),
            sink=sink,
        )

    def produce(self, params: ProducerParams, *, sink: PacketSink) -> Producer:
        """A producer for ``params``; ``sink`` is the publisher's transport."""
        if self.closed:
            raise ValueError("router is closed")
        if params.producer_id in self.producers:
            raise ValueError(f"producer {params.producer_id!r} already exists")
        producer = Producer(
            params,
            sink=sink,
            rtcp_ssrc=self.rtcp_ssrc,
            cname=self.cname,
            clock=self._clock,
            on_close=self._producer_closed,
        )
        if not self.producers and self._hurry is not None and self._release is None:
            self._release = self._hurry()
        self.producers[params.producer_id] = producer
        return producer

    def create_consumer(
        self,
        producer: Producer,
        *,
        consumer_id: str,
        sink: PacketSink,
        ssrc: int,
        rtx_ssrc: int | None,
        payload_types: Mapping[int, int],
        rtx_payload_types: Mapping[int, int],
        ext_id_map: Mapping[int, int],
        cname: str,
    ) -> Consumer:
        """A consumer of ``producer`` for one subscriber; ``sink`` is the subscriber's transport.

        ``payload_types``: publisher pt -> subscriber pt; ``rtx_payload_types``: subscriber
        media pt -> subscriber rtx pt; ``ext_id_map``: publisher ext id -> subscriber ext id.
        """
        return self.consume(
            producer,
            ConsumerParams(
                consumer_id=consumer_id,
                ssrc=ssrc,
                rtx_ssrc=rtx_ssrc,
                payload_types=payload_types,
                rtx_payload_types=rtx_payload_types,
                ext_id_map=ext_id_map,
                cname=cname,
            ),
            sink=sink,
        )

    def consume(self, producer: Producer, params: ConsumerParams, *, sink: PacketSink) -> Consumer:
        """A started consumer of ``producer``; ``sink`` is the subscriber's transport."""
        if self.closed or producer.closed:
            raise ValueError("router or producer is closed")
        if self.producers.get(producer.id) is not producer:
            raise ValueError(f"producer {producer.id!r} does not belong to this router")
        if params.consumer_id in self.consumers:
            raise ValueError(f"consumer {params.consumer_id!r} already exists")
        consumer = Consumer(
            producer,
            params,
            sink=sink,
            clock=self._clock,
            on_close=self._consumer_closed,
        )
        self.consumers[params.consumer_id] = consumer
        producer.add_consumer(consumer)
        consumer.start()
        return consumer

    def tick(self, now: float) -> None:
        """Periodic RTCP of every producer and consumer (no timers of the router's own): the
        receiver reports due go out one compound packet per publisher transport, with the
        reports of that publisher's other streams that may go early (``EARLY_SHARE``)."""
        reports = self._reports
        producers = list(self.producers.values())
        for producer in producers:
            producer.tick(now, reports)
        if reports:
            for producer in producers:
                if producer.closed:
                    continue
                for layer in producer.layers:
                    if reports.waiting(layer.sink) and layer.report_due(now, EARLY_SHARE):
                        reports.add(layer.sink, layer.report_block(now))
            reports.flush()
        for consumer in list(self.consumers.values()):
            consumer.tick(now)

    def close(self) -> None:
        """Close every producer (which closes its consumers) and any consumer left. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for producer in list(self.producers.values()):
            producer.close()
        for consumer in list(self.consumers.values()):
            consumer.close()
        self._let_go()

    def _producer_closed(self, producer: Producer) -> None:
        if self.producers.get(producer.id) is producer:
            del self.producers[producer.id]
            if not self.producers:
                self._let_go()

    def _let_go(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def _consumer_closed(self, consumer: Consumer) -> None:
        if self.consumers.get(consumer.id) is consumer:
            del self.consumers[consumer.id]
