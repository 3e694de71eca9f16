"""Reception statistics of one inbound RTP stream and the NACK list of its missing packets.

Owns: ``ReceiveStats`` (RFC 3550 A.1 sequence validation without probation, A.3 expected/lost
and fraction lost, A.8 interarrival jitter) producing report blocks (§6.4.1) — its per-packet
``update`` compiled when the extension is built, ``PyReceiveStats`` the reference — and
``MissingPackets`` (the seqs to NACK, RFC 4585 §6.2.1, with bounded retries and age).
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..fastpath import native
from ..packets.rtcp import ReportBlock

MAX_DROPOUT = 3000
MAX_MISORDER = 100
SEQ_MOD = 1 << 16

#: NACK policy: at most this many outstanding seqs, resent this many times, for this long.
NACK_MAX_MISSING = 256
NACK_MAX_RETRIES = 4
NACK_MAX_AGE = 1.0
NACK_RETRY_INTERVAL = 0.1


class PyReceiveStatsState:
    """Sequence and jitter state of one SSRC: the pure-Python reference of the compiled
    ``ReceiveStatsBase``. ``update`` is on the hot path."""

    __slots__ = (
        "clock_rate", "started", "base_seq", "max_seq", "cycles", "bad_seq", "received",
        "expected_prior", "received_prior", "jitter", "last_transit", "last_ts",
    )  # fmt: skip

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.started = False
        self.base_seq = self.max_seq = self.cycles = 0
        self.bad_seq = SEQ_MOD + 1
        self.received = self.expected_prior = self.received_prior = 0
        self.jitter = 0.0
        self.last_transit = 0
        self.last_ts = -1

    def _init_seq(self, seq: int) -> None:
        self.started = True
        self.base_seq = self.max_seq = seq
        self.bad_seq = SEQ_MOD + 1
        self.cycles = 0
        self.received = self.expected_prior = self.received_prior = 0

    def update(self, seq: int, ts: int, arrival: float) -> int:
        """Count one packet; returns how many seqs it skipped ahead (0 when in order/late)."""
        if not self.started:
            self._init_seq(seq)
            self.received = 1
            self._jitter(ts, arrival)
            return 0
        udelta = (seq - self.max_seq) & 0xFFFF
        if 0 < udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += SEQ_MOD
            self.max_seq = seq
            self.received += 1
            if ts != self.last_ts:
                self._jitter(ts, arrival)
            return udelta - 1
        if udelta <= SEQ_MOD - MAX_MISORDER:  # a very large jump: restart after two in a row
            if seq == self.bad_seq:
                self._init_seq(seq)
                self.received = 1
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
            return 0
        self.received += 1  # duplicate or reordered
        return 0

    def _jitter(self, ts: int, arrival: float) -> None:
        transit = int(arrival * self.clock_rate) - ts
        if self.last_ts >= 0:
            d = ((transit - self.last_transit + (1 << 31)) & 0xFFFF_FFFF) - (1 << 31)
            self.jitter += (abs(d) - self.jitter) / 16
        self.last_transit = transit
        self.last_ts = ts


class _Report:
    """Loss counts and report blocks from the state (RFC 3550 A.3), for either state class."""

    __slots__ = ()
    base_seq: int
    max_seq: int
    cycles: int
    received: int
    expected_prior: int
    received_prior: int
    jitter: float

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def report_block(self, ssrc: int, lsr: int, dlsr: int) -> ReportBlock:
        """A report block for the interval since the previous call (RFC 3550 A.3)."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        # (the fields live in the state class this is mixed into)
        self.expected_prior, self.received_prior = expected, self.received  # type: ignore[misc]
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        lost = max(-(1 << 23), min((1 << 23) - 1, self.lost))
        return ReportBlock(
            ssrc, fraction, lost, self.extended_max & 0xFFFF_FFFF, int(self.jitter), lsr, dlsr
        )


class PyReceiveStats(PyReceiveStatsState, _Report):
    """The pure-Python receive statistics (reference; used without the compiled extension)."""

    __slots__ = ()


if TYPE_CHECKING or native is None:
    ReceiveStats = PyReceiveStats
else:

    class ReceiveStats(native.ReceiveStatsBase, _Report):  # type: ignore[misc,name-defined]
        """Receive statistics of one SSRC: the compiled state with the report logic above."""

        __slots__ = ()


class MissingPackets:
    """Seqs detected missing, to be NACKed now and retried (bounded) until they arrive."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        # seq -> [first seen, last sent, times sent]
        self.entries: dict[int, list[float]] = {}

    def add_gap(self, first: int, count: int, now: float) -> list[int]:
        """Record ``count`` seqs from ``first``; returns them (empty if the gap is too big)."""
        if count > NACK_MAX_MISSING:
            self.entries.clear()
            return []
        seqs = [(first + i) & 0xFFFF for i in range(count)]
        for seq in seqs:
            self.entries[seq] = [now, now, 1.0]
        while len(self.entries) > NACK_MAX_MISSING:
            del self.entries[next(iter(self.entries))]
        return seqs

    def arrived(self, seq: int) -> None:
        self.entries.pop(seq, None)

    def due(self, now: float) -> list[int]:
        """Seqs to NACK again now; drops those too old or retried enough."""
        seqs = []
        for seq, entry in list(self.entries.items()):
            first, last, sent = entry
            if now - first > NACK_MAX_AGE or sent >= NACK_MAX_RETRIES:
                del self.entries[seq]
            elif now - last >= NACK_RETRY_INTERVAL:
                entry[1], entry[2] = now, sent + 1
                seqs.append(seq)
        return seqs
