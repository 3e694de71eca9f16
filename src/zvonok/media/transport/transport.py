"""``WebRtcTransport``: one session's ICE-lite + DTLS-SRTP endpoint on the worker's socket.

Owns: the connection state machine (NEW → CONNECTING on the first valid check → CONNECTED when
DTLS is done and SRTP ready → DISCONNECTED when consent goes stale → CONNECTED again when checks
resume, or FAILED; CLOSED on close()), the per-session counters and the RTP/RTCP split of
RFC 5761 §4 on the hot path. Glues ``ice.IceLiteAgent``, ``dtls.DtlsServer`` and
``srtp.SrtpSession``; timeouts (DTLS handshake, RFC 7675 consent) are evaluated by ``tick``, which
the worker calls from its one housekeeping task (no per-session timers besides DTLS
retransmission during the handshake).
Must not import anything from zvonok outside ``zvonok.media``. Created only by
``MediaWorker.create_transport``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Protocol

from OpenSSL import SSL

from .dtls import DtlsServer, DtlsState
from .ice import Address, BindingRequest, Consent, IceLiteAgent, IceParameters
from .receiver import ReceiverLike, make_receiver
from .srtp import SrtpSession
from .target import make_send_target
from .udp import MediaUdpProtocol

__all__ = ["ConnectionState", "IceParameters", "TransportListener", "WebRtcTransport"]

log = logging.getLogger(__name__)


class ConnectionState(StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"


_CONNECTED = ConnectionState.CONNECTED


class TransportListener(Protocol):
    """Receives a session's decrypted media and its state changes."""

    def on_rtp(self, packet: bytes) -> None: ...
    def on_rtcp(self, packet: bytes) -> None: ...
    def on_state(self, state: ConnectionState) -> None: ...


class WebRtcTransport:
    """ICE-lite, DTLS (server role) and SRTP for one session."""

    def __init__(
        self,
        *,
        transport_id: str,
        listener: TransportListener,
        udp: MediaUdpProtocol,
        dtls_context: SSL.Context,
        fingerprint: tuple[str, str],
        candidates: Callable[[], list[str]],
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float],
        consent_timeout: float,
        dtls_timeout: float,
        on_closed: Callable[[WebRtcTransport], None],
    ) -> None:
        self.id = transport_id
        self.state = ConnectionState.NEW
        self.fingerprint = fingerprint
        self.stun_requests = 0
        self._tx_packets = self._tx_bytes = self._srtp_errors = 0  # SRTCP out, errors
        self._rx_packets = self._rx_bytes = self._rx_dropped = 0  # SRTCP in
        self._listener = listener
        self._udp = udp
        self._candidates = candidates
        self._clock = clock
        self._dtls_timeout = dtls_timeout
        self._on_closed = on_closed
        self._ice = IceLiteAgent(IceParameters.generate(), consent_timeout=consent_timeout)
        self._dtls = DtlsServer(dtls_context, self, loop)
        self._dtls_addr: Address | None = None
        self._srtp: SrtpSession | None = None
        #: Outbound RTP (compiled when built): consumers of this session send through it.
        self.rtp_target = make_send_target(udp.fileno, udp.sendto)
        #: Inbound SRTP (compiled when built): RTP to ``listener.on_rtp``, SRTCP back to us.
        self.media_in: ReceiverLike = make_receiver(self._handle_rtcp, listener.on_rtp)
        self._connecting_since = 0.0
        self._log = logging.LoggerAdapter(log, {"transport": transport_id})
        udp.register_ufrag(self._ice.local.ufrag, self)

    # -- counters -----------------------------------------------------------------------------

    @property
    def tx_packets(self) -> int:
        """SRTP and SRTCP datagrams sent."""
        return self._tx_packets + self.rtp_target.tx_packets

    @property
    def tx_bytes(self) -> int:
        return self._tx_bytes + self.rtp_target.tx_bytes

    @property
    def srtp_errors(self) -> int:
        """Packets that failed SRTP protection (out) or authentication (in)."""
        return self._srtp_errors + self.rtp_target.srtp_errors + self.media_in.srtp_errors

    @property
    def rx_packets(self) -> int:
        """SRTP and SRTCP datagrams decrypted."""
        return self._rx_packets + self.media_in.rx_packets

    @property
    def rx_bytes(self) -> int:
        return self._rx_bytes + self.media_in.rx_bytes

    @property
    def rx_dropped(self) -> int:
        """Media that arrived before SRTP was ready (early, or after FAILED/CLOSED)."""
        return self._rx_dropped + self.media_in.rx_dropped

    # -- the contract -----------------------------------------------------------------------

    @property
    def local_ice(self) -> IceParameters:
        """The current local ICE credentials."""
        return self._ice.local

    @property
    def selected_address(self) -> Address | None:
        """The peer address media is sent to (the last nominated one)."""
        return self._ice.selected

    def local_candidates(self) -> list[str]:
        """``candidate:...`` lines (no ``a=``) for every announced address of the worker."""
        return self._candidates()

    def set_remote(self, ice: IceParameters, fingerprints: Sequence[tuple[str, str]]) -> None:
        """Apply a remote description's ICE credentials and DTLS fingerprints."""
        if self.state is ConnectionState.CLOSED:
            return
        self._ice.set_remote(ice)
        self._dtls.set_remote_fingerprints(fingerprints)

    def restart_ice(self) -> IceParameters:
        """New local credentials; the old ones keep working until the peer uses the new."""
        params = self._ice.restart()
        if self.state is not ConnectionState.CLOSED:
            self._udp.register_ufrag(params.ufrag, self)
        return params

    def send_rtp(self, packet: bytes | bytearray) -> None:
        """Protect and send one RTP packet; dropped silently unless CONNECTED."""
        self.rtp_target.send(packet)

    def send_rtcp(self, packet: bytes | bytearray) -> None:
        """Protect and send one (compound) RTCP packet; dropped silently unless CONNECTED."""
        srtp = self._srtp
        if srtp is None or self.state is not ConnectionState.CONNECTED:
            return
        try:
            data = srtp.protect_rtcp(bytes(packet))
        except ValueError:
            self._srtp_errors += 1
            return
        self._send(data)

    def close(self) -> None:
        """close_notify if connected, forget the addresses and ufrags, CLOSED. Idempotent."""
        if self.state is ConnectionState.CLOSED:
            return
        self._dtls.close()
        self._udp.unregister(self, self._ice.local_ufrags())
        self._srtp = None
        self.rtp_target.clear_srtp()
        self.rtp_target.set_address(None)
        self.media_in.clear_srtp()
        self._set_state(ConnectionState.CLOSED)
        self._on_closed(self)

    # -- housekeeping (the worker tick) ------------------------------------------------------

    def tick(self, now: float) -> None:
        """Evaluate the DTLS handshake timeout and consent freshness (RFC 7675)."""
        state = self.state
        if state is ConnectionState.CONNECTING:
            if now - self._connecting_since >= self._dtls_timeout:
                self._fail("DTLS handshake timed out")
        elif state is ConnectionState.CONNECTED or state is ConnectionState.DISCONNECTED:
            consent = self._ice.consent(now)
            if consent is Consent.EXPIRED:
                self._fail("ICE consent expired")
            elif consent is Consent.STALE and state is ConnectionState.CONNECTED:
                self._set_state(ConnectionState.DISCONNECTED)
            elif consent is Consent.FRESH and state is ConnectionState.DISCONNECTED:
                self._set_state(ConnectionState.CONNECTED)

    # -- datagrams from the socket (udp.DatagramEndpoint) ------------------------------------

    def handle_stun(self, request: BindingRequest, addr: Address) -> bool:
        """Answer one connectivity check; True if it was valid."""
        self.stun_requests += 1
        state = self.state
        if state is ConnectionState.FAILED or state is ConnectionState.CLOSED:
            return False
        now = self._clock()
        try:
            outcome = self._ice.handle(request, addr, now)
        except ValueError as exc:
            self._udp.refuse_stun(str(exc))
            return False
        self._udp.sendto(outcome.response, addr)
        if not outcome.accepted:
            return False
        selected = self._ice.selected
        if selected == addr:
            self._dtls_addr = addr  # DTLS (close_notify, retransmissions) follows a migration
        if selected is not self.rtp_target.address:
            self.rtp_target.set_address(selected)
        if outcome.retired_ufrag is not None:
            self._udp.unregister_ufrag(outcome.retired_ufrag, self)
        if state is ConnectionState.NEW:
            self._connecting_since = now
            self._set_state(ConnectionState.CONNECTING)
        elif state is ConnectionState.DISCONNECTED:
            self._set_state(ConnectionState.CONNECTED)
        return True

    def handle_dtls(self, data: bytes, addr: Address) -> None:
        """One DTLS datagram from a bound address."""
        self._dtls_addr = addr
        self._dtls.handle_datagram(data)

    def handle_media(self, data: bytes, addr: Address) -> None:
        """One SRTP/SRTCP datagram from a bound address (the compiled demultiplexer calls
        ``media_in.receive`` directly)."""
        self.media_in.receive(data)

    def _handle_rtcp(self, data: bytes) -> None:
        """One SRTCP datagram (from ``media_in``): unprotect and deliver."""
        srtp = self._srtp
        if srtp is None:
            self._rx_dropped += 1
            return
        try:
            packet = srtp.unprotect_rtcp(data)
        except ValueError:
            self._srtp_errors += 1
            return
        self._rx_packets += 1
        self._rx_bytes += len(data)
        self._listener.on_rtcp(packet)

    # -- DTLS events (dtls.DtlsListener) -----------------------------------------------------

    def dtls_send(self, data: bytes) -> None:
        addr = self._dtls_addr or self._ice.selected
        if addr is not None:
            self._udp.sendto(data, addr)

    def dtls_connected(self, srtp: SrtpSession) -> None:
        self._srtp = srtp
        self.rtp_target.set_srtp(*srtp.tx_handle(), srtp)
        self.media_in.set_srtp(*srtp.rx_handle(), srtp)
        self._log.info("DTLS connected, SRTP profile %s", srtp.profile.name.decode())
        if self.state is ConnectionState.CONNECTING or self.state is ConnectionState.NEW:
            self._set_state(ConnectionState.CONNECTED)

    def dtls_failed(self, reason: str) -> None:
        self._fail(reason)

    def dtls_closed(self) -> None:
        self._log.info("peer sent DTLS close_notify")
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        addr = self._ice.selected
        if addr is not None:
            self._udp.sendto(data, addr)
            self._tx_packets += 1
            self._tx_bytes += len(data)

    def _fail(self, reason: str) -> None:
        self._log.warning("transport failed: %s", reason)
        self._dtls.abort()
        self._srtp = None
        self.rtp_target.clear_srtp()
        self.media_in.clear_srtp()
        self._set_state(ConnectionState.FAILED)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self.state:
            return
        self.state = state
        self.rtp_target.enabled = state is _CONNECTED
        try:
            self._listener.on_state(state)
        except Exception:
            self._log.exception("listener.on_state(%s) raised", state)

    @property
    def dtls_state(self) -> DtlsState:
        """The DTLS association's state (for diagnostics and tests)."""
        return self._dtls.state
