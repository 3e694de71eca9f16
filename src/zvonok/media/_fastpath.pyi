"""Types of the compiled ``zvonok.media._fastpath`` extension (source: ``_fastpath.c``).

Describes the module exactly as the C builds it: its method tables (``PyMethodDef``), members
(``PyMemberDef``: ``READONLY`` ones are read-only properties here) and getsets. Types without
``Py_TPFLAGS_BASETYPE`` are ``@final``. The pure-Python references of the same types are in
``forwarding/forwarder.py``, ``forwarding/dispatch.py``, ``forwarding/stats.py``,
``transport/target.py``, ``transport/receiver.py`` and ``transport/udp.py``; ``fastpath.py``
chooses between the two. ``mypy.stubtest`` holds this stub to the built module
(tests/unit/media/test_fastpath_stub.py).
"""

from collections.abc import Callable, Iterable
from typing import Any, Protocol, final

from typing_extensions import disjoint_base

#: Largest plaintext RTP packet the compiled path protects (bigger: counted in srtp_errors).
MAX_PLAIN: int
#: Most copies one ``sendmmsg`` carries (a fuller batch is flushed first).
BATCH: int
#: Most datagrams one ``recvmmsg`` reads (``Demux.drain``).
RX_BATCH: int
#: Inside ``Demux.drain``, the copies of at most this many received datagrams wait for one
#: ``sendmmsg`` (bounds what the first of a burst waits).
RX_FLUSH: int
#: How far behind the newest forwarded sequence number the re-sync point trails (forwarder.py).
SYNC_TRAIL: int
#: RFC 3550 A.1 thresholds of the receive statistics (stats.py).
MAX_DROPOUT: int
MAX_MISORDER: int
#: Packets a ``SendTarget`` remembers for transport-cc feedback, arrivals a ``Receiver`` keeps
#: between two drains.
TWCC_SENT: int
TWCC_ARRIVALS: int
#: Seqs the send-side duplicate filter of a ``FeedbackCore`` remembers (twcc.py ``_SEEN``).
FEEDBACK_SEEN: int
#: The largest window a ``Trendline`` keeps (its points are a ring of this size).
TRENDLINE_WINDOW_MAX: int

#: ("host", port) or ("host6", port, flowinfo, scope_id), as ``parse_address`` accepts.
_Address = tuple[str, int] | tuple[str, int, int, int]

class _Forwards(Protocol):
    """An item of a ``Fanout`` or its stand-in: ``Forwarder``s are called without Python."""

    def forward(self, packet: bytes, keyframe: bool, /) -> object: ...

class _Updates(Protocol):
    def update(self, seq: int, ts: int, arrival: float, /) -> int: ...

def tx_batches() -> int:
    """Send batches flushed so far (one ``sendmmsg`` each unless the socket would block): a
    ``Fanout.forward`` outside ``Demux.drain`` flushes its own, a drain one per ``RX_FLUSH``
    received datagrams (and at the end of each ``recvmmsg`` batch)."""

def set_slow_rewrite(fn: Callable[..., Any], /) -> None:
    """The reference ``rewrite_rtp`` for packets with two-byte header extensions."""

def twcc_parse(fci: bytes | bytearray | memoryview, /) -> tuple[int, int, int, list[int | None]]:
    """(base_seq, reference_time, fb_count, deltas) of a transport-cc feedback FCI, as
    ``packets.rtcp.parse_twcc_fci``; malformed input raises ``ValueError``."""

def audio_levels(
    slots: list[bytes | None],
    newest: int,
    count: int,
    ext_id: int,
    packets: int,
    loud: int,
    loudness: float,
    slow: Callable[[bytes, int], int | None],
    /,
) -> tuple[int, int, float]:
    """The RFC 6464 levels of an audio ring's packets added to a loudness window, as
    ``rooms.speakers.read_levels``."""

@final
class SendTarget:
    """One transport's socket, peer address and outbound SRTP context."""

    def __init__(self, fd: int, fallback: Callable[[bytes, Any], object]) -> None: ...
    @property
    def fd(self) -> int: ...
    @property
    def address(self) -> Any:
        """The address last given to ``set_address`` (None until then)."""
    @property
    def source(self) -> str | None:
        """The local address packets leave from (IP_PKTINFO / IPV6_PKTINFO; None: the
        kernel chooses)."""
    tx_packets: int
    tx_bytes: int
    srtp_errors: int
    send_errors: int
    @property
    def ready(self) -> bool:
        """Enabled, keyed and addressed."""
    @property
    def enabled(self) -> bool:
        """True while the transport is connected."""
    @enabled.setter
    def enabled(self, value: object) -> None: ...
    def set_srtp(self, ctx: int, protect: int, keep: object, protect_rtcp: int = 0, /) -> None: ...
    def clear_srtp(self) -> None: ...
    def set_address(self, addr: _Address | None, source: str | None = None, /) -> None: ...
    def send(self, packet: bytes | bytearray | memoryview, /) -> None: ...
    def send_rtcp(self, packet: bytes | bytearray | memoryview, /) -> None:
        """SRTCP-protect (``protect_rtcp`` given to ``set_srtp``) and send one RTCP packet."""
    @property
    def twcc_id(self) -> int:
        """The transport-cc extension id stamped (0: none)."""
    twcc_seq: int
    """The next transport-wide sequence number."""
    twcc_stamped: int
    def set_twcc(self, ext_id: int, /) -> None:
        """Stamp transport-wide sequence numbers into this extension id (0: stop)."""
    def twcc_lookup(self, seq: int, /) -> tuple[int, int] | None:
        """(send µs, size) of the packet stamped ``seq``, None when not (or no longer) kept."""

@final
class Forwarder:
    """One consumer's rewriting state: offsets, payload type and extension maps."""

    def __init__(
        self,
        target: SendTarget,
        ssrc: int,
        payload_types: dict[int, int],
        ext_table: bytes,
        video: bool,
        ts_offset: int,
        last_out_seq: int,
        vp8_payload_types: Iterable[int] = ...,
    ) -> None: ...
    @property
    def target(self) -> SendTarget: ...
    @property
    def ssrc(self) -> int: ...
    @property
    def video(self) -> bool: ...
    blocked: bool
    held: bool
    seq_offset: int
    sync_in_seq: int
    last_out_seq: int
    @property
    def ts_offset(self) -> int: ...
    packets_sent: int
    octets_sent: int
    dropped: int
    #: VP8 index continuity (``forwarding.forwarder.Forwarder``): the offsets added to
    #: PictureID, TL0PICIDX and KEYIDX, the newest values sent (-1: none), and whether the next
    #: VP8 packet sent sets the offsets (after a restart).
    pid_offset: int
    tl0_offset: int
    keyidx_offset: int
    last_pid: int
    last_tl0: int
    last_keyidx: int
    vp8_resync: bool
    def forward(self, packet: bytes, keyframe: bool = False, /) -> None: ...

@final
class Fanout:
    """A producer's consumers: one rewritten copy each, sent with one ``sendmmsg`` (inside
    ``Demux.drain`` the drain sends the copies of up to ``RX_FLUSH`` received datagrams
    together)."""

    def __init__(self) -> None: ...
    @property
    def items(self) -> tuple[_Forwards, ...]:
        """The forwarders, in order."""
    def set(self, items: Iterable[_Forwards], /) -> None: ...
    def forward(self, packet: bytes, keyframe: bool, /) -> None: ...

@final
class RtpDispatcher:
    """Decrypted RTP to the producer owning its SSRC."""

    def __init__(
        self,
        handlers: dict[int, Callable[[bytes], object]],
        unknown: Callable[[int, bytes], object],
    ) -> None: ...
    @property
    def handlers(self) -> dict[int, Callable[[bytes], object]]: ...
    packets_in: int
    bytes_in: int
    dropped: int
    unknown_ssrc: int
    def dispatch(self, packet: bytes, /) -> None: ...

@final
class Receiver:
    """One peer's inbound SRTP: decrypts RTP for ``deliver``, hands SRTCP to ``rtcp``."""

    def __init__(
        self, rtcp: Callable[[bytes], object], deliver: Callable[[bytes], object]
    ) -> None: ...
    rx_packets: int
    rx_bytes: int
    srtp_errors: int
    rx_dropped: int
    @property
    def ready(self) -> bool:
        """Keyed (DTLS done)."""
    def set_srtp(self, ctx: int, unprotect: int, keep: object, /) -> None: ...
    def clear_srtp(self) -> None: ...
    def receive(self, datagram: bytes, /) -> None: ...
    @property
    def twcc_id(self) -> int:
        """The transport-cc extension id whose arrivals are recorded (0: none)."""
    @property
    def twcc_ssrc(self) -> int:
        """The SSRC of the last packet recorded."""
    twcc_recorded: int
    twcc_overflow: int
    def set_twcc(self, ext_id: int, wake: Callable[[], object] | None = None, /) -> None:
        """Record arrivals of this extension id (0: stop); ``wake()`` on the first arrival
        after an empty drain."""
    def twcc_drain(self) -> list[tuple[int, int]]:
        """(seq, arrival µs) recorded since the last drain, in arrival order."""

@final
class Demux:
    """RFC 7983: SRTP/SRTCP from a bound address to its endpoint's ``media_in``; the rest to
    ``fallback``."""

    fd: int
    """The socket ``drain`` reads (-1: none; set to -1 on close and a drain under way stops)."""
    pktinfo: bool
    """The socket reports each datagram's destination (bound to a wildcard address): ``drain``
    calls ``fallback(data, addr, local)`` for STUN, ``local`` the address it was sent to."""
    @property
    def rx_wakeups(self) -> int:
        """``drain`` calls."""
    @property
    def rx_calls(self) -> int:
        """``recvmmsg`` calls that returned datagrams."""
    @property
    def rx_datagrams(self) -> int:
        """Datagrams ``drain`` read."""
    @property
    def peer_hits(self) -> int:
        """SRTP/SRTCP datagrams ``drain`` handed over through the peer table."""
    @property
    def peers(self) -> int:
        """Bound peers the peer table remembers (socket address -> compiled receiver)."""
    def __init__(
        self, by_addr: dict[Any, Any], fallback: Callable[..., object], fd: int = -1
    ) -> None: ...
    def changed(self) -> None:
        """``by_addr`` was changed: forget every peer the table remembers."""
    def datagram_received(self, data: bytes, addr: Any, /) -> Any: ...
    def drain(self, max_batches: int, /) -> int:
        """Read ``fd`` with ``recvmmsg`` (``RX_BATCH`` a call, at most ``max_batches`` calls,
        stopping at a short batch or when it would block) and demultiplex every datagram in
        order, as ``datagram_received``; how many were read. A handler's exception is raised
        once the rest of its batch is delivered."""

@disjoint_base
class ReceiveStatsBase:
    """Sequence and jitter state of one inbound RTP stream (subclassed in stats.py)."""

    def __init__(self, clock_rate: int) -> None: ...
    @property
    def clock_rate(self) -> int: ...
    started: bool
    base_seq: int
    max_seq: int
    bad_seq: int
    cycles: int
    received: int
    expected_prior: int
    received_prior: int
    last_transit: int
    last_ts: int
    jitter: float
    def update(self, seq: int, ts: int, arrival: float, /) -> int:
        """Seqs skipped ahead (RFC 3550 A.1, A.8)."""

@final
class ProducerCore:
    """A published track's per-packet work: stats, NACK bookkeeping, history, fan-out."""

    def __init__(
        self,
        stats: _Updates,
        missing: dict[int, Any],
        history: list[bytes | None] | None,
        fanout: _Forwards,
        on_gap: Callable[[int, int, float], object],
        spot_keyframe: Callable[[bytes], object],
        clock: Callable[[], float] | None,
    ) -> None: ...
    @property
    def stats(self) -> Any: ...
    closed: bool
    want_keyframe: bool
    packets_received: int
    bytes_received: int
    dropped: int
    def receive(self, packet: bytes, /) -> None: ...

class _History(Protocol):
    def twcc_lookup(self, seq: int, /) -> tuple[int, int] | None: ...

@final
class FeedbackCore:
    """The per-packet part of reading a subscriber's transport-cc feedback: exactly
    ``twcc.FeedbackAdapter.results`` and the per-packet steps of
    ``bwe.DownlinkEstimator.on_feedback`` (the acknowledged-rate window, the send groups); the
    decisions stay in ``DownlinkEstimator.on_summary``."""

    def __init__(self, burst_us: int, window_us: int, window_max: int = ...) -> None: ...
    @property
    def feedbacks(self) -> int: ...
    @property
    def unknown(self) -> int: ...
    @property
    def window_len(self) -> int:
        """Packets in the acknowledged-rate window."""
    @property
    def acked_bps(self) -> int | None:
        """The acknowledged rate (bits/s) after the last feedback, None before two packets."""
    @property
    def filter_allocated(self) -> bool:
        """Whether the duplicate filter was allocated (at the first feedback)."""
    def feed(
        self,
        base_seq: int,
        reference_time: int,
        deltas: list[int | None],
        history: SendTarget | _History,
        want_results: object,
        /,
    ) -> (
        tuple[
            int,
            int,
            int | None,
            int | None,
            list[tuple[float, float, float]],
            list[tuple[int, int, int, int | None]] | None,
        ]
        | None
    ):
        """One feedback: None when it reported no new, known packet, else (received, lost,
        newest send µs of the received, acknowledged bits/s, closed send groups as
        (variation ms, arrival ms, send delta ms), the packets as (seq, send µs, size,
        arrival µs or None) when ``want_results``)."""

@final
class Trendline:
    """The delay-based detector of a downlink estimate: exactly ``bwe._Trendline`` (the
    trendline's least squares over the last ``window`` send groups, the overuse detector, the
    adaptive threshold), every double bit-identical; the window is a fixed ring."""

    def __init__(
        self,
        window: int,
        smoothing: float,
        gain: float,
        max_deltas: int,
        threshold: float,
        k_up: float,
        k_down: float,
        threshold_min: float,
        threshold_max: float,
        max_jump: float,
        max_dt_ms: float,
        overuse_time_ms: float,
        overuse_count: int,
    ) -> None: ...
    @property
    def window(self) -> int: ...
    @property
    def accumulated(self) -> float: ...
    @property
    def smoothed(self) -> float: ...
    @property
    def deltas(self) -> int: ...
    @property
    def trend(self) -> float: ...
    @property
    def threshold(self) -> float: ...
    @property
    def usage(self) -> int:
        """The usage signal, an index into ``bwe._USAGES`` (0 normal, 1 overuse, 2 underuse)."""
    @property
    def overuse_ms(self) -> float: ...
    @property
    def overuse_count(self) -> int: ...
    @property
    def prev_trend(self) -> float: ...
    @property
    def first_arrival_ms(self) -> float | None:
        """The first group's arrival (ms), None before any."""
    @property
    def last_threshold_ms(self) -> float | None:
        """When the threshold was last adapted (ms), None before any trend."""
    @property
    def points(self) -> list[tuple[float, float]]:
        """The window's (arrival - first arrival ms, smoothed delay ms), oldest first."""
    def update(self, variation_ms: float, arrival_ms: float, /) -> float | None:
        """The window's slope after this group, or None until it is full."""
    def detect(self, groups: list[tuple[float, float, float]], /) -> None:
        """Each closed send group (variation ms, arrival ms, send delta ms) through the
        trendline, the overuse detector and the adaptive threshold."""
