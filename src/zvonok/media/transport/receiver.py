"""One transport's inbound SRTP: decrypt RTP and hand it on, pass SRTCP to the transport.

Owns ``Receiver``, the pure-Python reference of ``zvonok.media._fastpath.Receiver``, and
``make_receiver``, which picks the compiled one when the extension is built. It implements the
receive half of RFC 3711 §3.3 (via libsrtp) and the RTP/RTCP split of RFC 5761 §4 (packet types
192-223 are RTCP); datagrams before DTLS is done are dropped and counted, failures counted.
The worker socket's compiled demultiplexer calls a transport's ``media_in.receive`` directly.
Given the publisher's transport-cc extension id (``set_twcc``,
draft-holmer-rmcat-transport-wide-cc-extensions-01) it records (transport-wide seq, arrival µs
on the CLOCK_MONOTONIC clock) of every decrypted packet carrying that element in a ring of
``TWCC_ARRIVALS`` (the oldest dropped and counted when nobody drains), which the transport
drains (``twcc_drain``) to build feedback; ``wake()`` is called on the first arrival after an
empty drain, so an idle transport needs no timer.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from struct import Struct
from typing import TYPE_CHECKING, Protocol

from ..fastpath import native
from .srtp import SrtpSession
from .target import find_extension

if TYPE_CHECKING:
    from .. import _fastpath

#: Arrivals kept between two drains (as the compiled receiver).
TWCC_ARRIVALS = 1024
_unpack_u32 = Struct("!I").unpack_from


class ReceiverLike(Protocol):
    """What the transport reads and calls on its receiver (Python or compiled)."""

    rx_packets: int
    rx_bytes: int
    srtp_errors: int
    rx_dropped: int

    @property
    def ready(self) -> bool: ...
    def set_srtp(self, ctx: int, unprotect: int, keep: SrtpSession, /) -> None: ...
    def clear_srtp(self) -> None: ...
    def receive(self, data: bytes, /) -> None: ...
    @property
    def twcc_id(self) -> int: ...
    @property
    def twcc_ssrc(self) -> int: ...

    twcc_recorded: int
    twcc_overflow: int

    def set_twcc(self, ext_id: int, wake: Callable[[], object] | None = None, /) -> None: ...
    def twcc_drain(self) -> list[tuple[int, int]]: ...


class Receiver:
    """Decrypts one peer's SRTP; ``rtcp(datagram)`` gets SRTCP, ``deliver(packet)`` RTP."""

    __slots__ = ("rx_packets", "rx_bytes", "srtp_errors", "rx_dropped", "_rtcp", "_deliver",
                 "_srtp", "twcc_id", "twcc_ssrc", "twcc_recorded", "twcc_overflow", "_twcc_idle",
                 "_twcc_wake", "_twcc")  # fmt: skip

    def __init__(self, rtcp: Callable[[bytes], None], deliver: Callable[[bytes], None]) -> None:
        self.rx_packets = self.rx_bytes = self.srtp_errors = self.rx_dropped = 0
        self.twcc_id = self.twcc_ssrc = self.twcc_recorded = self.twcc_overflow = 0
        self._twcc_idle = True
        self._twcc_wake: Callable[[], object] | None = None
        self._twcc: deque[tuple[int, int]] = deque()
        self._rtcp = rtcp
        self._deliver = deliver
        self._srtp: SrtpSession | None = None

    @property
    def ready(self) -> bool:
        return self._srtp is not None

    def set_srtp(self, ctx: int, unprotect: int, keep: SrtpSession) -> None:
        """The session to decrypt with (the compiled receiver uses the libsrtp addresses)."""
        self._srtp = keep

    def clear_srtp(self) -> None:
        self._srtp = None

    def set_twcc(self, ext_id: int, wake: Callable[[], object] | None = None) -> None:
        """Record arrivals of packets carrying transport-cc element ``ext_id`` (0: stop)."""
        if not 0 <= ext_id <= 255:
            raise ValueError("transport-cc extension id must be 0..255")
        self.twcc_id = ext_id
        self._twcc_wake = wake

    def twcc_drain(self) -> list[tuple[int, int]]:
        """(seq, arrival µs) recorded since the last drain, in arrival order; an empty drain
        puts the receiver to sleep until the next arrival calls ``wake``."""
        out = list(self._twcc)
        self._twcc.clear()
        if not out:
            self._twcc_idle = True
        return out

    def _record(self, packet: bytes) -> None:
        found = find_extension(packet, self.twcc_id)
        if found is None or found[1] < 2:
            return
        at = found[0]
        if len(self._twcc) == TWCC_ARRIVALS:
            self._twcc.popleft()
            self.twcc_overflow += 1
        self._twcc.append((packet[at] << 8 | packet[at + 1], time.monotonic_ns() // 1000))
        self.twcc_ssrc = _unpack_u32(packet, 8)[0]
        self.twcc_recorded += 1
        wake = self._twcc_wake
        if self._twcc_idle and wake is not None:
            self._twcc_idle = False
            wake()

    def receive(self, data: bytes) -> None:
        srtp = self._srtp
        if srtp is None:  # before DTLS (or the fingerprint check) is done: nothing to decrypt
            self.rx_dropped += 1
            return
        if len(data) < 12:
            self.srtp_errors += 1
            return
        if 191 < data[1] < 224:  # RFC 5761 §4: RTCP packet types 192-223
            self._rtcp(data)
            return
        try:
            packet = srtp.unprotect_rtp(data)
        except ValueError:
            self.srtp_errors += 1
            return
        self.rx_packets += 1
        self.rx_bytes += len(data)
        if self.twcc_id:
            self._record(packet)
        self._deliver(packet)


def make_receiver(rtcp: Callable[[bytes], None], deliver: Callable[[bytes], None]) -> ReceiverLike:
    """The compiled receiver when the extension is built, else the Python one."""
    if native is not None and hasattr(native.Receiver, "set_twcc"):  # else: built before TWCC
        receiver: _fastpath.Receiver = native.Receiver(rtcp, deliver)
        return receiver
    return Receiver(rtcp, deliver)
