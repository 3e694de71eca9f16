"""One transport's inbound SRTP: decrypt RTP and hand it on, pass SRTCP to the transport.

Owns ``Receiver``, the pure-Python reference of ``zvonok.media._fastpath.Receiver``, and
``make_receiver``, which picks the compiled one when the extension is built. It implements the
receive half of RFC 3711 §3.3 (via libsrtp) and the RTP/RTCP split of RFC 5761 §4 (packet types
192-223 are RTCP); datagrams before DTLS is done are dropped and counted, failures counted.
The worker socket's compiled demultiplexer calls a transport's ``media_in.receive`` directly.
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..fastpath import native
from .srtp import SrtpSession

if TYPE_CHECKING:
    from .. import _fastpath


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


class Receiver:
    """Decrypts one peer's SRTP; ``rtcp(datagram)`` gets SRTCP, ``deliver(packet)`` RTP."""

    __slots__ = ("rx_packets", "rx_bytes", "srtp_errors", "rx_dropped", "_rtcp", "_deliver",
                 "_srtp")  # fmt: skip

    def __init__(self, rtcp: Callable[[bytes], None], deliver: Callable[[bytes], None]) -> None:
        self.rx_packets = self.rx_bytes = self.srtp_errors = self.rx_dropped = 0
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
        self._deliver(packet)


def make_receiver(rtcp: Callable[[bytes], None], deliver: Callable[[bytes], None]) -> ReceiverLike:
    """The compiled receiver when the extension is built, else the Python one."""
    if native is not None:
        receiver: _fastpath.Receiver = native.Receiver(rtcp, deliver)
        return receiver
    return Receiver(rtcp, deliver)
