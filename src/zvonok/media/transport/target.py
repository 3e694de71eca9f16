"""Where one transport's outbound RTP goes: its SRTP context, its selected address, its socket.

Owns ``SendTarget``, the pure-Python reference of ``zvonok.media._fastpath.SendTarget``, and
``make_send_target``, which gives a transport the compiled one when the extension is built and
the worker's socket has a real file descriptor (the compiled forwarders then protect and send a
whole fan-out with one ``sendmmsg``). The transport keeps it current: ``enabled`` while
CONNECTED, the SRTP session once DTLS is done (RFC 5764 §4.2), the address ICE selected and,
on a wildcard-bound socket, the local address that pair's checks arrived on (``source``: the
compiled target sends from it with ``IP_PKTINFO`` / ``IPV6_PKTINFO``; the Python one leaves that
to the socket's ``sendto``, udp.py). RTCP leaves through the same target (``send_rtcp``:
SRTCP protection, RFC 3711 §3.4, then the same socket and address; in C for the compiled one).
Also owns ``TwccStamper``, the send half of transport-wide congestion control
(draft-holmer-rmcat-transport-wide-cc-extensions-01 §2) that every target runs once given the
subscriber's transport-cc id (``set_twcc``): it writes the transport's own 16-bit counter into
that header extension element (RFC 8285 one-byte or two-byte form) of each packet sent and keeps
(seq → send time µs on the CLOCK_MONOTONIC clock, size) in a ring of ``TWCC_SENT`` for the
feedback (``twcc_lookup``), exactly as the compiled target.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..fastpath import native
from .ice import Address
from .srtp import SrtpSession

if TYPE_CHECKING:
    from .. import _fastpath


class SendTargetLike(Protocol):
    """What the transport reads and calls on its send target (Python or compiled)."""

    tx_packets: int
    tx_bytes: int
    srtp_errors: int
    send_errors: int
    enabled: bool

    @property
    def address(self) -> Any:
        """The address last set (None until then)."""
        ...

    @property
    def source(self) -> str | None:
        """The local address packets leave from (None: the kernel chooses)."""
        ...

    @property
    def ready(self) -> bool: ...
    def set_srtp(
        self, ctx: int, protect: int, keep: SrtpSession, protect_rtcp: int = 0, /
    ) -> None: ...
    def clear_srtp(self) -> None: ...
    def set_address(self, addr: Address | None, source: str | None = None, /) -> None: ...
    def send(self, packet: bytes | bytearray, /) -> None: ...
    def send_rtcp(self, packet: bytes | bytearray, /) -> None: ...
    @property
    def twcc_id(self) -> int: ...

    twcc_seq: int
    twcc_stamped: int

    def set_twcc(self, ext_id: int, /) -> None: ...
    def twcc_lookup(self, seq: int, /) -> tuple[int, int] | None: ...


#: Sent packets remembered for transport-cc feedback (a power of 2; as the compiled target).
TWCC_SENT = 4096


def find_extension(packet: bytes | bytearray, ext_id: int) -> tuple[int, int] | None:
    """(offset, length) of header extension element ``ext_id``'s value in an RTP packet
    (RFC 8285 §4.2 one-byte, §4.3 two-byte form), None when absent or malformed."""
    n = len(packet)
    if n < 12 or not packet[0] & 0x10:
        return None
    pos = 12 + (packet[0] & 0x0F) * 4
    if pos + 4 > n:
        return None
    profile = packet[pos] << 8 | packet[pos + 1]
    i, end = pos + 4, pos + 4 + (packet[pos + 2] << 8 | packet[pos + 3]) * 4
    if end > n:
        return None
    if profile == 0xBEDE:
        while i < end:
            b = packet[i]
            if b == 0:
                i += 1
                continue
            eid, size = b >> 4, (b & 0x0F) + 1
            if eid == 15 or i + 1 + size > end:
                return None
            if eid == ext_id:
                return i + 1, size
            i += 1 + size
    elif profile & 0xFFF0 == 0x1000:
        while i < end:
            eid = packet[i]
            if eid == 0:
                i += 1
                continue
            if i + 2 > end or i + 2 + packet[i + 1] > end:
                return None
            if eid == ext_id:
                return i + 2, packet[i + 1]
            i += 2 + packet[i + 1]
    return None


class TwccStamper:
    """Transport-wide sequence numbers for one transport's outbound packets (see above)."""

    __slots__ = ("twcc_id", "twcc_seq", "twcc_stamped", "_sent")

    def __init__(self) -> None:
        self.twcc_id = 0
        self.twcc_seq = 0
        self.twcc_stamped = 0
        self._sent: list[tuple[int, int, int] | None] = []  # (seq, send µs, size) per slot

    def set_twcc(self, ext_id: int) -> None:
        if not 0 <= ext_id <= 255:
            raise ValueError("transport-cc extension id must be 0..255")
        if ext_id and not self._sent:
            self._sent = [None] * TWCC_SENT
        self.twcc_id = ext_id

    def stamp(self, packet: bytes | bytearray) -> bytes | bytearray:
        """``packet`` with the next seq written into its element (a copy), or as it was."""
        found = find_extension(packet, self.twcc_id)
        if found is None or found[1] < 2:
            return packet
        at = found[0]
        seq = self.twcc_seq
        self.twcc_seq = (seq + 1) & 0xFFFF
        out = bytearray(packet)
        out[at] = seq >> 8
        out[at + 1] = seq & 0xFF
        self._sent[seq & (TWCC_SENT - 1)] = (seq, time.monotonic_ns() // 1000, len(out))
        self.twcc_stamped += 1
        return out

    def twcc_lookup(self, seq: int) -> tuple[int, int] | None:
        """(send µs, size) of the packet stamped ``seq``, None when not (or no longer) kept."""
        if not self._sent or not 0 <= seq <= 0xFFFF:
            return None
        slot = self._sent[seq & (TWCC_SENT - 1)]
        if slot is None or slot[0] != seq:
            return None
        return slot[1], slot[2]


class SendTarget(TwccStamper):
    """Protects and sends RTP for one transport; silently nothing unless ``ready``."""

    __slots__ = (
        "fd", "address", "source", "enabled", "tx_packets", "tx_bytes", "srtp_errors",
        "send_errors", "_sendto", "_srtp",
    )  # fmt: skip

    def __init__(self, fd: int, fallback: Callable[[bytes, Address], None]) -> None:
        super().__init__()
        self.fd = fd
        self.address: Address | None = None
        self.source: str | None = None
        self.enabled = False
        self.tx_packets = self.tx_bytes = self.srtp_errors = self.send_errors = 0
        self._sendto = fallback
        self._srtp: SrtpSession | None = None

    @property
    def ready(self) -> bool:
        return self.enabled and self._srtp is not None and self.address is not None

    def set_srtp(self, ctx: int, protect: int, keep: SrtpSession, protect_rtcp: int = 0) -> None:
        """The session to protect with (the compiled target uses the libsrtp addresses:
        ``srtp_protect`` and, for ``send_rtcp``, ``srtp_protect_rtcp``)."""
        self._srtp = keep

    def clear_srtp(self) -> None:
        self._srtp = None

    def set_address(self, addr: Address | None, source: str | None = None) -> None:
        """Where packets go; ``source``: the local address they leave from (the fallback
        ``sendto``, the worker socket's, looks it up itself)."""
        self.address = addr
        self.source = source

    def send(self, packet: bytes | bytearray) -> None:
        srtp, addr = self._srtp, self.address
        if srtp is None or addr is None or not self.enabled:
            return
        if self.twcc_id:
            packet = self.stamp(packet)
        try:
            data = srtp.protect_rtp(packet)
        except ValueError:
            self.srtp_errors += 1
            return
        self._sendto(data, addr)
        self.tx_packets += 1
        self.tx_bytes += len(data)

    def send_rtcp(self, packet: bytes | bytearray) -> None:
        """SRTCP-protect one (compound) RTCP packet (RFC 3711 §3.4) and send it where RTP
        goes; nothing unless ``ready``, a refused packet counted in ``srtp_errors``."""
        srtp, addr = self._srtp, self.address
        if srtp is None or addr is None or not self.enabled:
            return
        try:
            data = srtp.protect_rtcp(bytes(packet))
        except ValueError:
            self.srtp_errors += 1
            return
        self._sendto(data, addr)
        self.tx_packets += 1
        self.tx_bytes += len(data)


def make_send_target(fd: int, sendto: Callable[[bytes, Address], None]) -> SendTargetLike:
    """A compiled ``SendTarget`` for a real socket when the extension is built, else Python's.

    ``sendto`` is the event loop's (queueing) send, used by the compiled target only when the
    socket would block.
    """
    # A module built before sources, transport-cc or send_rtcp existed (an install not rebuilt
    # yet): the Python target.
    if native is not None and fd >= 0 and hasattr(native.SendTarget, "send_rtcp"):
        target: _fastpath.SendTarget = native.SendTarget(fd, sendto)
        return target
    return SendTarget(fd, sendto)
