"""Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01), both
directions, above the hot path.

Owns:
- ``FeedbackBuilder`` (receive side, §3.1): the arrivals a transport's receiver recorded
  (transport-wide seq, arrival µs; ``Receiver.twcc_drain``) → ``TransportFeedback`` packets for the
  publisher, each covering the packets since the previous one (16-bit seqs unwrapped, late
  arrivals of already-reported seqs dropped, long gaps and 16-bit delta overflows split, at most
  ``MAX_STATUSES`` a packet so one stays well under the MTU).
- ``FeedbackAdapter`` (send side): a subscriber's ``TransportFeedback`` + the send history its
  transport's ``SendTarget`` keeps (``twcc_lookup``: seq → send µs, size) → ``bwe.PacketResult``s
  in sequence order, the reference time unwrapped (24 bits of 64 ms), duplicates dropped. The
  pure-Python reference: when the fast path is built, the compiled ``_fastpath.FeedbackCore``
  does exactly this and the estimator's per-packet steps in one call per feedback (reading a
  compiled target's send ring directly), and hands ``DownlinkEstimator.on_summary`` the summary
  its decisions need (tests/unit/media/test_fastpath_feedback.py compares the two).
- ``Downlink``: one session's transport-wide CC as ``MediaSession.downlink``: turns it on for the
  publisher (``produced``: the published track's negotiated transport-cc id → the transport's
  ``set_twcc_receive``) and for the subscriber (``consumed``: the publisher's id mapped through the
  consumer's extension map → ``set_twcc_send``), feeds the subscriber's feedback
  (``MediaEndpoint.on_transport_feedback``) to a ``bwe.DownlinkEstimator`` and exposes
  ``estimate_bps`` (None until enough feedback, or without transport-cc), ``loss``, ``rtt``.
  It also probes: what is forwarded only shows the link up to what it carries, so while the
  estimate sits at the cap the acknowledged rate puts on it (and the link shows neither overuse
  nor loss) it resends recent video packets as RTX (RFC 4588, through the consumer's NACK path)
  for ``PROBE_DURATION`` at ``PROBE_GAIN`` × the estimate — a probe cluster the estimator
  measures — at most every ``PROBE_INTERVAL`` (``PROBE_AGAIN`` after a probe that got through).
  One timer during a probe, none otherwise; ``close`` cancels it.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from ..fastpath import native
from ..packets.rtcp import TWCC_REFERENCE_US, TransportFeedback
from ..sdp.codecs import TWCC_URI
from .bwe import (
    ACKED_WINDOW_MAX,
    ACKED_WINDOW_US,
    BURST_US,
    LOSS_LOW,
    MAX_BPS,
    DownlinkEstimator,
    PacketResult,
    Usage,
)

if TYPE_CHECKING:
    from .. import _fastpath

#: Most packet statuses in one feedback packet (≤ ~1,000 bytes even with every delta large).
MAX_STATUSES = 400
#: A jump of more than this many seqs restarts the reported range (a new sender, a reset).
MAX_SPAN = 0x4000
#: Send-side duplicate filter: seqs remembered (a power of 2).
_SEEN = 4096
#: Probing: at most every PROBE_INTERVAL seconds (PROBE_AGAIN after a probe the link carried:
#: it delivered at least PROBE_OK of its target, or arrived as fast as it was sent), never within
#: PROBE_CALM seconds of a decrease for overuse (the link just showed its limit), for
#: PROBE_DURATION seconds in PROBE_TICK steps (short: a probe beyond the link queues at most that
#: long), at PROBE_GAIN × the estimate; a resent packet is first taken as PROBE_PACKET bytes, then
#: as the average size of those resent so far in the cluster; recent packets from up to
#: PROBE_DEPTH back are resent, at most PROBE_MAX_PER_TICK per tick.
PROBE_INTERVAL = 5.0
PROBE_AGAIN = 1.0
PROBE_OK = 0.8
PROBE_CALM = 5.0
PROBE_DURATION = 0.1
PROBE_TICK = 0.02
PROBE_GAIN = 2.0
PROBE_PACKET = 1_100
PROBE_DEPTH = 64
PROBE_MAX_PER_TICK = 48
#: No probe beyond this multiple of what the received tracks' best layers need together (their
#: producers' measured layer bitrates), or PROBE_FLOOR when that is more (a layer dynacast turned
#: off measures nothing, and it is the one a strong link must be shown able to carry): a strong
#: link is not probed up to 10 Mbit/s for nothing.
PROBE_CEILING = 1.5
PROBE_FLOOR = 3_000_000


class FeedbackBuilder:
    """Turns recorded arrivals into feedback packets; ``fb_count`` counts the packets made."""

    __slots__ = ("sender_ssrc", "fb_count", "_next", "_last", "packets")

    def __init__(self, sender_ssrc: int) -> None:
        self.sender_ssrc = sender_ssrc
        self.fb_count = 0
        self._next: int | None = None  # first extended seq not reported yet
        self._last: int | None = None  # newest extended seq seen (for unwrapping)
        self.packets = 0

    def _unwrap(self, seq: int) -> int:
        last = self._last
        if last is None:
            return seq
        ext = last + ((seq - last + 0x8000) & 0xFFFF) - 0x8000
        return ext

    def build(self, arrivals: list[tuple[int, int]], media_ssrc: int) -> list[TransportFeedback]:
        """Feedback for ``arrivals`` ((16-bit seq, arrival µs) in arrival order)."""
        received: dict[int, int] = {}
        for seq, at in arrivals:
            ext = self._unwrap(seq & 0xFFFF)
            if self._last is None or ext > self._last:
                self._last = ext
            received.setdefault(ext, at)
        if self._next is not None:
            received = {s: a for s, a in received.items() if s >= self._next}
        if not received:
            return []
        top = max(received)
        start = min(received) if self._next is None else self._next
        if top - start >= MAX_SPAN:
            start = min(s for s in received if s > top - MAX_SPAN)
        self._next = top + 1
        out: list[TransportFeedback] = []
        while start <= top:
            end = min(start + MAX_STATUSES, top + 1)
            self._emit(start, [received.get(s) for s in range(start, end)], media_ssrc, out)
            start = end
        return out

    def _emit(
        self, base: int, times: list[int | None], media_ssrc: int, out: list[TransportFeedback]
    ) -> None:
        while times and times[-1] is None:
            times.pop()  # a piece ends with its last arrival (the next one covers the rest)
        if not times:
            return
        try:
            fb = TransportFeedback.build(self.sender_ssrc, media_ssrc, self.fb_count, base, times)
        except ValueError:  # a delta beyond 16 bits (reordering across seconds): split
            half = len(times) // 2
            if half == 0:
                return
            self._emit(base, times[:half], media_ssrc, out)
            self._emit(base + half, times[half:], media_ssrc, out)
            return
        self.fb_count = (self.fb_count + 1) & 0xFF
        self.packets += 1
        out.append(fb)


class FeedbackAdapter:
    """A subscriber's feedback → packet results, using its send target's history."""

    __slots__ = ("_lookup", "_ref", "_ref_offset", "_seen", "feedbacks", "unknown")

    def __init__(self, lookup: Callable[[int], tuple[int, int] | None]) -> None:
        self._lookup = lookup
        self._ref: int | None = None
        self._ref_offset = 0
        #: seq << 1 | received, per slot; made at the first feedback (32 kB: a session that
        #: never receives media — most idle ones — never pays for it).
        self._seen: list[int] | None = None
        self.feedbacks = 0
        self.unknown = 0  # reported seqs we have no send record of

    def results(self, fb: TransportFeedback) -> list[PacketResult]:
        self.feedbacks += 1
        ref = fb.reference_time
        if self._ref is not None:
            step = ((ref - self._ref + 0x80_0000) & 0xFF_FFFF) - 0x80_0000
            self._ref_offset += step - (ref - self._ref)
        self._ref = ref
        offset = self._ref_offset * TWCC_REFERENCE_US
        out: list[PacketResult] = []
        seen = self._seen
        if seen is None:
            seen = self._seen = [-1] * _SEEN
        for seq, at in fb.arrivals():
            slot = seq & (_SEEN - 1)
            state = seen[slot]
            if state >> 1 == seq and (state & 1 or at is None):
                continue  # reported before (received), or lost again
            sent = self._lookup(seq)
            if sent is None:
                self.unknown += 1
                continue
            seen[slot] = seq << 1 | (at is not None)
            out.append(PacketResult(seq, sent[0], sent[1], None if at is None else at + offset))
        return out


class _Counts(Protocol):
    @property
    def feedbacks(self) -> int: ...
    @property
    def unknown(self) -> int: ...


def _new_core() -> _fastpath.FeedbackCore | None:
    """A compiled ``FeedbackCore`` with the estimator's constants, None without the fast path
    (``ZVONOK_PURE_PYTHON=1``, or a build from before it existed)."""
    make = getattr(native, "FeedbackCore", None) if native is not None else None
    if make is None:
        return None
    core: _fastpath.FeedbackCore = make(BURST_US, ACKED_WINDOW_US, ACKED_WINDOW_MAX)
    return core


class _TwccTransport(Protocol):
    def set_twcc_receive(self, ext_id: int, /) -> None: ...
    def set_twcc_send(self, ext_id: int, /) -> None: ...
    def twcc_lookup(self, seq: int, /) -> tuple[int, int] | None: ...


class _FeedbackRoute(Protocol):
    on_transport_feedback: Callable[[TransportFeedback], None]


class _Published(Protocol):
    @property
    def extensions(self) -> Mapping[str, int]:
        """Header-extension URI -> the publisher's id."""
        ...


class _Consumed(Protocol):
    @property
    def ext_id_map(self) -> Mapping[int, int]:
        """The publisher's extension id -> the subscriber's."""
        ...


class _Numbering(Protocol):
    @property
    def last_out_seq(self) -> int: ...
    @property
    def packets_sent(self) -> int: ...


class _Resender(Protocol):
    """A consumer, as far as probing uses it."""

    @property
    def rtx_ssrc(self) -> int | None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def paused(self) -> bool: ...
    @property
    def current_layer(self) -> int | None: ...
    @property
    def core(self) -> _Numbering: ...
    @property
    def producer(self) -> object: ...
    @property
    def rtx_sent(self) -> int: ...
    @property
    def rtx_bytes(self) -> int: ...
    def receive_nack(self, seqs: Iterable[int], /) -> None: ...


def _best_layer_bps(consumer: _Resender) -> int:
    """The measured bitrate of the consumer's producer's best layer (0: unknown)."""
    layers = getattr(consumer.producer, "layers", ())
    return max((int(getattr(layer, "bitrate", 0) or 0) for layer in layers), default=0)


class Downlink:
    """One session's transport-wide CC: feedback to it as a publisher, the estimate of its
    downlink as a subscriber."""

    def __init__(
        self,
        transport: _TwccTransport,
        endpoint: _FeedbackRoute,
        *,
        clock_us: Callable[[], int] = lambda: time.monotonic_ns() // 1000,
        compiled: bool = True,
    ) -> None:
        self._transport = transport
        self._clock_us = clock_us
        self.estimator = DownlinkEstimator(compiled=compiled)
        #: The compiled per-packet part (adapter state + the estimator's per-packet state) when
        #: built, else the pure-Python adapter feeding ``estimator.on_feedback``; both count
        #: ``feedbacks`` and ``unknown`` seqs. ``compiled=False``: the pure-Python one (and the
        #: estimator's pure-Python detector) even when built (the tests compare the two).
        self._core = _new_core() if compiled else None
        self._reference: FeedbackAdapter | None = None
        self.adapter: _Counts
        if self._core is None:
            self.adapter = self._reference = FeedbackAdapter(transport.twcc_lookup)
        else:
            self.adapter = self._core
        self.receive_id = 0
        self.send_id = 0
        #: Probe when the estimate is capped by what is forwarded (the rooms layer may turn it
        #: off); counts of probes started and packets resent for them.
        self.probing = True
        self.probes = 0
        self.probe_packets = 0
        self._consumers: list[_Resender] = []
        self._probe_timer: asyncio.Handle | None = None
        self._last_probe_us = -(1 << 62)
        self._probe_ticks = 0
        self._probe_tick_bytes = 0.0
        self._probe_sent = (0, 0)  # resends and their bytes in this cluster
        self._probe_back = 0
        self.closed = False
        endpoint.on_transport_feedback = self.on_feedback

    @property
    def estimate_bps(self) -> int | None:
        """The downlink estimate (bits/s); None until enough feedback or without transport-cc."""
        return self.estimator.estimate_bps if self.send_id else None

    @property
    def loss(self) -> float:
        """The last measured fraction of packets lost on the way to the subscriber."""
        return self.estimator.loss

    @property
    def rtt(self) -> float | None:
        """Send → feedback time (seconds, smoothed): the round trip plus feedback delay."""
        return self.estimator.rtt

    def produced(self, producer: _Published) -> None:
        """A track this session publishes: feedback for it when it negotiated transport-cc."""
        ext_id = producer.extensions.get(TWCC_URI, 0)
        if ext_id and ext_id != self.receive_id:
            self.receive_id = ext_id
            self._transport.set_twcc_receive(ext_id)

    def consumed(self, producer: _Published, params: _Consumed, consumer: _Resender) -> None:
        """A track this session receives: stamp what goes to it when both sides negotiated
        transport-cc (the publisher's id is kept in place by the consumer's extension map); its
        consumer may carry probes. Called again when the subscriber renegotiated that consumer's
        m-line (aiortc renumbers extension ids in every offer it makes): the stamping follows."""
        self._consumers = [c for c in self._consumers if not c.closed and c is not consumer]
        self._consumers.append(consumer)
        pub_id = producer.extensions.get(TWCC_URI)
        ext_id = params.ext_id_map.get(pub_id, 0) if pub_id else 0
        if ext_id and ext_id != self.send_id:
            self.send_id = ext_id
            self._transport.set_twcc_send(ext_id)

    def on_feedback(self, feedback: TransportFeedback) -> None:
        """The subscriber's feedback (from the endpoint): into the estimator."""
        core = self._core
        if core is not None:
            # the send history: the transport's current target (a compiled one is read in C)
            history = getattr(self._transport, "rtp_target", self._transport)
            est = self.estimator
            summary = core.feed(
                feedback.base_seq, feedback.reference_time, feedback.deltas, history,
                est.measuring_probe,
            )  # fmt: skip
            if summary is None:
                return
            now = self._clock_us()
            received, lost, newest_send, acked_bps, groups, packets = summary
            results = None if packets is None else [PacketResult._make(p) for p in packets]
            est.on_summary(received, lost, newest_send, acked_bps, groups, results, now)
        else:
            assert self._reference is not None  # no core: the reference adapter reads it
            results = self._reference.results(feedback)
            if not results:
                return
            now = self._clock_us()
            self.estimator.on_feedback(results, now)
        if self.probing and self._probe_timer is None and not self.closed:
            self._maybe_probe(now)

    def close(self) -> None:
        """Stop probing (the session is closing). Idempotent."""
        self.closed = True
        timer, self._probe_timer = self._probe_timer, None
        if timer is not None:
            timer.cancel()
        self._consumers = []

    # -- probing ------------------------------------------------------------------------------

    def _sources(self) -> list[_Resender]:
        """Consumers whose RTX resends can carry a probe: video with RTX, flowing."""
        return [
            c
            for c in self._consumers
            if c.rtx_ssrc is not None
            and not c.closed
            and not c.paused
            and c.current_layer is not None
            and c.core.packets_sent > 0
        ]

    def _maybe_probe(self, now_us: int) -> None:
        est = self.estimator
        estimate = est.estimate_bps
        if not self.send_id or estimate is None or not est.app_limited:
            return
        if est.usage is not Usage.NORMAL or est.loss > LOSS_LOW:
            return
        cut = est.last_decrease_us
        if cut is not None and now_us - cut < PROBE_CALM * 1e6:
            return
        last = est.probe_result
        carried = last is not None and (not est.probe_limited or last[0] >= PROBE_OK * last[1])
        wait = PROBE_AGAIN if carried else PROBE_INTERVAL
        if now_us - self._last_probe_us < wait * 1e6 or not self._sources():
            return
        live = [c for c in self._consumers if not c.closed]
        wanted = sum(_best_layer_bps(c) for c in live)
        ceiling = max(int(PROBE_CEILING * wanted), PROBE_FLOOR)
        target = min(int(PROBE_GAIN * estimate), MAX_BPS, ceiling)
        extra = target - (est.acked_bps or 0)
        if target < 1.1 * estimate or extra <= 0:
            return  # the estimate already covers what the tracks could use
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not in the event loop (a unit test feeding feedback by hand)
        self._last_probe_us = now_us
        self._probe_ticks = round(PROBE_DURATION / PROBE_TICK)
        self._probe_tick_bytes = extra * PROBE_TICK / 8
        self._probe_sent = (0, 0)
        self.probes += 1
        est.start_probe(now_us, target)
        self._probe_timer = loop.call_soon(self._probe_tick)

    def _probe_tick(self) -> None:
        self._probe_timer = None
        sources = self._sources()
        if self.closed or not sources or self._probe_ticks <= 0:
            self.estimator.end_probe(self._clock_us())
            return
        self._probe_ticks -= 1
        packets, size = self._probe_sent
        average = size / packets if packets else PROBE_PACKET
        count = min(PROBE_MAX_PER_TICK, max(1, round(self._probe_tick_bytes / average)))
        share, extra = divmod(count, len(sources))
        back = self._probe_back
        before = [(c.rtx_sent, c.rtx_bytes) for c in sources]
        for i, consumer in enumerate(sources):
            n = share + (i < extra)
            if n:
                last = consumer.core.last_out_seq
                consumer.receive_nack([(last - back - k) & 0xFFFF for k in range(n)])
        for consumer, (sent, sent_bytes) in zip(sources, before, strict=True):
            packets += consumer.rtx_sent - sent
            size += consumer.rtx_bytes - sent_bytes
        self._probe_sent = (packets, size)
        self.probe_packets += count
        self._probe_back = (back + max(share, 1)) % PROBE_DEPTH
        self._probe_timer = asyncio.get_running_loop().call_later(PROBE_TICK, self._probe_tick)
