"""Where one transport's outbound RTP goes: its SRTP context, its selected address, its socket.

Owns ``SendTarget``, the pure-Python reference of ``zvonok.media._fastpath.SendTarget``, and
``make_send_target``, which gives a transport the compiled one when the extension is built and
the worker's socket has a real file descriptor (the compiled forwarders then protect and send a
whole fan-out with one ``sendmmsg``). The transport keeps it current: ``enabled`` while
CONNECTED, the SRTP session once DTLS is done (RFC 5764 §4.2), the address ICE selected and,
on a wildcard-bound socket, the local address that pair's checks arrived on (``source``: the
compiled target sends from it with ``IP_PKTINFO`` / ``IPV6_PKTINFO``; the Python one leaves that
to the socket's ``sendto``, udp.py).
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

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
    def set_srtp(self, ctx: int, protect: int, keep: SrtpSession, /) -> None: ...
    def clear_srtp(self) -> None: ...
    def set_address(self, addr: Address | None, source: str | None = None, /) -> None: ...
    def send(self, packet: bytes | bytearray, /) -> None: ...


class SendTarget:
    """Protects and sends RTP for one transport; silently nothing unless ``ready``."""

    __slots__ = (
        "fd", "address", "source", "enabled", "tx_packets", "tx_bytes", "srtp_errors",
        "send_errors", "_sendto", "_srtp",
    )  # fmt: skip

    def __init__(self, fd: int, fallback: Callable[[bytes, Address], None]) -> None:
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

    def set_srtp(self, ctx: int, protect: int, keep: SrtpSession) -> None:
        """The session to protect with (the compiled target uses the libsrtp addresses)."""
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
        try:
            data = srtp.protect_rtp(packet)
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
    # A module built before sources existed (an install not rebuilt yet): the Python target.
    if native is not None and fd >= 0 and hasattr(native.SendTarget, "source"):
        target: _fastpath.SendTarget = native.SendTarget(fd, sendto)
        return target
    return SendTarget(fd, sendto)
