"""``WebRtcTransport``: one session's ICE-lite + DTLS-SRTP endpoint on the worker's socket.

Owns: the connection state machine (NEW → CONNECTING on the first valid check → CONNECTED when
DTLS is done and SRTP ready → DISCONNECTED when consent goes stale → CONNECTED again when checks
resume, or FAILED; CLOSED on close()), the per-session counters and the RTP/RTCP split of
RFC 5761 §4 on the hot path. Glues ``ice.IceLiteAgent``, ``dtls.DtlsServer`` and
``srtp.SrtpSession``. Checks arrive over the worker's UDP socket or over ICE-TCP connections
(``tcp.TcpConnection``, RFC 6544); the selected pair's path — the peer's UDP address or the one
TCP connection the session keeps — carries SRTP, SRTCP and DTLS. RTP and RTCP go out through
``rtp_target``: the UDP one (compiled when built: SRTCP protection and the send in C too) or a
``tcp.TcpSendTarget``; when the path
changes between the two, ``on_target_change`` lets the forwarding layer rebuild the forwarders
bound to the old target. Timeouts (DTLS handshake, RFC 7675 consent) are evaluated by
``tick``, which the worker calls from its one housekeeping task (no per-session timers
besides DTLS retransmission during the handshake).
Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01): given
the publisher's transport-cc id (``set_twcc_receive``), ``media_in`` records arrivals and the
transport sends ``TransportFeedback`` (§3.1) about every ``TWCC_INTERVAL`` while packets arrive
— one timer, armed by the first arrival after an idle period, cancelled on close; given the
subscriber's id (``set_twcc_send``), every send target (UDP and TCP) stamps transport-wide
sequence numbers and remembers send times (``twcc_lookup``).
Must not import anything from zvonok outside ``zvonok.media``. Created only by
``MediaWorker.create_transport``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Protocol

from OpenSSL import SSL

from ..forwarding.twcc import FeedbackBuilder
from .address import canonical_address
from .dtls import DtlsServer, DtlsState
from .ice import Address, BindingRequest, Consent, IceLiteAgent, IceParameters
from .receiver import ReceiverLike, make_receiver
from .srtp import SrtpSession
from .target import SendTargetLike, make_send_target
from .tcp import TcpConnection, TcpSendTarget
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
#: How often transport-cc feedback goes to a publisher while its packets arrive (seconds).
TWCC_INTERVAL = 0.1


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
        self._srtp_errors = 0  # SRTCP in that failed authentication
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
        #: Outbound RTP: consumers of this session send through it. The UDP target (compiled
        #: when built) until ICE selects a TCP connection, then a ``TcpSendTarget``.
        self._udp_target = make_send_target(udp.fileno, udp.sendto)
        self._tcp_target: TcpSendTarget | None = None
        self.rtp_target: SendTargetLike = self._udp_target
        #: Called after ``rtp_target`` was replaced (UDP <-> TCP path): forwarders bound to the
        #: old target must be rebuilt on the new one (``MediaEndpoint.retarget``).
        self.on_target_change: Callable[[], None] | None = None
        #: The one ICE-TCP connection of this session, the one the selected pair uses (None:
        #: the selected pair is UDP), and the one DTLS last arrived on (None: UDP).
        self._tcp: TcpConnection | None = None
        self._selected_conn: TcpConnection | None = None
        self._dtls_conn: TcpConnection | None = None
        #: Inbound SRTP (compiled when built): RTP to ``listener.on_rtp``, SRTCP back to us.
        self.media_in: ReceiverLike = make_receiver(self._handle_rtcp, listener.on_rtp)
        self._connecting_since = 0.0
        self._loop = loop
        #: Transport-cc: the feedback builder (receive side, once enabled), its timer, and the
        #: subscriber's extension id every send target stamps (0: none).
        self.twcc_feedback: FeedbackBuilder | None = None
        self._twcc_timer: asyncio.TimerHandle | None = None
        self._twcc_send_id = 0
        self._log = logging.LoggerAdapter(log, {"transport": transport_id})
        udp.register_ufrag(self._ice.local.ufrag, self)

    # -- counters -----------------------------------------------------------------------------

    def _targets(self) -> tuple[SendTargetLike, ...]:
        tcp = self._tcp_target
        return (self._udp_target,) if tcp is None else (self._udp_target, tcp)

    @property
    def tx_packets(self) -> int:
        """SRTP and SRTCP datagrams (or RFC 4571 frames) sent."""
        return sum(t.tx_packets for t in self._targets())

    @property
    def tx_bytes(self) -> int:
        return sum(t.tx_bytes for t in self._targets())

    @property
    def srtp_errors(self) -> int:
        """Packets that failed SRTP protection (out) or authentication (in)."""
        return (
            self._srtp_errors
            + sum(t.srtp_errors for t in self._targets())
            + self.media_in.srtp_errors
        )

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
        """The peer address media is sent to (the last nominated one), canonical (an IPv4 peer
        of a dual-stack socket as ``a.b.c.d``, see ``address.canonical_address``)."""
        selected = self._ice.selected
        return None if selected is None else canonical_address(selected)

    @property
    def selected_protocol(self) -> str | None:
        """The selected candidate pair's transport, "udp" or "tcp" (None before a check)."""
        if self._ice.selected is None:
            return None
        return "udp" if self._selected_conn is None else "tcp"

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
        """Protect and send one (compound) RTCP packet; dropped silently unless CONNECTED.
        It leaves through the RTP target (SRTCP protection and the send in C when compiled)."""
        self.rtp_target.send_rtcp(packet)

    # -- transport-wide congestion control ---------------------------------------------------

    def set_twcc_receive(self, ext_id: int) -> None:
        """Send transport-cc feedback for packets carrying extension ``ext_id`` (the publisher's
        negotiated id; 0 stops)."""
        if self.state is ConnectionState.CLOSED:
            return
        if ext_id and self.twcc_feedback is None:
            self.twcc_feedback = FeedbackBuilder(secrets.randbits(32) or 1)
        self.media_in.set_twcc(ext_id, self._twcc_wake if ext_id else None)

    def set_twcc_send(self, ext_id: int) -> None:
        """Stamp transport-wide sequence numbers into extension ``ext_id`` (the subscriber's
        negotiated id) of everything sent; 0 stops."""
        self._twcc_send_id = ext_id
        for target in self._targets():
            target.set_twcc(ext_id)

    def twcc_lookup(self, seq: int) -> tuple[int, int] | None:
        """(send µs, size) of the packet this transport stamped ``seq``, or None."""
        return self.rtp_target.twcc_lookup(seq)

    def _twcc_wake(self) -> None:
        """The first arrival after an idle period: feedback in ``TWCC_INTERVAL``."""
        if self._twcc_timer is None and self.state is not ConnectionState.CLOSED:
            self._twcc_timer = self._loop.call_later(TWCC_INTERVAL, self._twcc_tick)

    def _twcc_tick(self) -> None:
        self._twcc_timer = None
        arrivals = self.media_in.twcc_drain()
        builder = self.twcc_feedback
        if not arrivals or builder is None:
            return  # idle: the receiver calls _twcc_wake on the next arrival
        self._twcc_timer = self._loop.call_later(TWCC_INTERVAL, self._twcc_tick)
        for feedback in builder.build(arrivals, self.media_in.twcc_ssrc):
            self.send_rtcp(bytes(feedback))

    def _twcc_stop(self) -> None:
        timer, self._twcc_timer = self._twcc_timer, None
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        """close_notify if connected, forget the addresses and ufrags, CLOSED. Idempotent."""
        if self.state is ConnectionState.CLOSED:
            return
        self._twcc_stop()
        self.media_in.set_twcc(0)
        self._dtls.close()
        self._udp.unregister(self, self._ice.local_ufrags())
        self._srtp = None
        for target in self._targets():
            target.clear_srtp()
            target.set_address(None)
        self.media_in.clear_srtp()
        self._drop_tcp()
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
        moves = request.use_candidate or self._ice.selected is None
        try:
            outcome = self._ice.handle(request, addr, now)
        except ValueError as exc:
            self._udp.refuse_stun(str(exc))
            return False
        self._udp.sendto(outcome.response, addr)
        if not outcome.accepted:
            return False
        if moves:
            self._dtls_addr = addr  # DTLS (close_notify, retransmissions) follows a migration
            self._dtls_conn = None
            self._use_path(None)
        self._checked(outcome.retired_ufrag, state, now)
        return True

    def handle_tcp_stun(self, request: BindingRequest, conn: TcpConnection) -> bool:
        """Answer one check that came over an ICE-TCP connection; True if it was valid.

        A session keeps one connection: a second one is taken only with a nomination
        (USE-CANDIDATE) or while the first is not the selected path; the other is closed.
        """
        self.stun_requests += 1
        state = self.state
        if state is ConnectionState.FAILED or state is ConnectionState.CLOSED:
            return False
        current = self._tcp
        if current is not None and conn is not current and not current.closed:
            if current is self._selected_conn and not request.use_candidate:
                return False
        now = self._clock()
        moves = request.use_candidate or self._ice.selected is None
        try:
            outcome = self._ice.handle(request, conn.peer, now)
        except ValueError:
            return False
        conn.send(outcome.response)
        if not outcome.accepted:
            return False
        if conn is not current:
            self._tcp = conn
            if current is not None:
                current.close()
        if moves:
            self._dtls_conn = conn
            self._use_path(conn)
        self._checked(outcome.retired_ufrag, state, now)
        return True

    def _checked(self, retired_ufrag: str | None, state: ConnectionState, now: float) -> None:
        """After a valid check: retire an old ufrag, move NEW/DISCONNECTED along."""
        if retired_ufrag is not None:
            self._udp.unregister_ufrag(retired_ufrag, self)
        if state is ConnectionState.NEW:
            self._connecting_since = now
            self._set_state(ConnectionState.CONNECTING)
        elif state is ConnectionState.DISCONNECTED:
            self._set_state(ConnectionState.CONNECTED)

    def _use_path(self, conn: TcpConnection | None) -> None:
        """Send over ``conn`` (None: UDP to the selected address) from now on."""
        self._selected_conn = conn
        previous = self.rtp_target
        target: SendTargetLike
        if conn is None:
            target = self._udp_target
            selected = self._ice.selected
            source = self._udp.source_of(selected)  # the nominated pair's local address
            if selected is not target.address or source != target.source:
                target.set_address(selected, source)
        else:
            tcp = self._tcp_target
            if tcp is None:
                tcp = self._tcp_target = TcpSendTarget()
                tcp.set_twcc(self._twcc_send_id)
            tcp.set_connection(conn)
            target = tcp
        if target is previous:
            return
        previous.set_address(None)
        target.enabled = previous.enabled
        srtp = self._srtp
        if srtp is not None:
            target.set_srtp(*srtp.tx_handle(), srtp, srtp.tx_rtcp_handle())
        self.rtp_target = target
        hook = self.on_target_change
        if hook is not None:
            try:
                hook()
            except Exception:
                self._log.exception("on_target_change raised")

    def handle_tcp_dtls(self, data: bytes, conn: TcpConnection) -> None:
        """One DTLS record (RFC 4571 frame) from the session's TCP connection."""
        if conn is not self._tcp:
            return
        self._dtls_conn = conn
        self._dtls.handle_datagram(data)

    def tcp_closed(self, conn: TcpConnection) -> None:
        """The connection is gone; a selected path over it stays selected (nothing arrives,
        consent expires) until the client nominates another pair."""
        if conn is self._tcp:
            self._tcp = None
        if conn is self._dtls_conn:
            self._dtls_conn = None

    def _drop_tcp(self) -> None:
        conn, self._tcp = self._tcp, None
        if conn is not None:
            conn.close()

    def handle_dtls(self, data: bytes, addr: Address) -> None:
        """One DTLS datagram from a bound address."""
        self._dtls_addr = addr
        self._dtls_conn = None
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
        conn = self._dtls_conn
        if conn is not None:
            conn.send(data)
            return
        addr = self._dtls_addr or self._ice.selected
        if addr is not None:
            self._udp.sendto(data, addr)

    def dtls_connected(self, srtp: SrtpSession) -> None:
        self._srtp = srtp
        for target in self._targets():
            target.set_srtp(*srtp.tx_handle(), srtp, srtp.tx_rtcp_handle())
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

    def _fail(self, reason: str) -> None:
        self._log.warning("transport failed: %s", reason)
        self._twcc_stop()
        self._dtls.abort()
        self._srtp = None
        for target in self._targets():
            target.clear_srtp()
        self.media_in.clear_srtp()
        self._drop_tcp()
        self._set_state(ConnectionState.FAILED)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self.state:
            return
        self.state = state
        for target in self._targets():
            target.enabled = state is _CONNECTED
        try:
            self._listener.on_state(state)
        except Exception:
            self._log.exception("listener.on_state(%s) raised", state)

    @property
    def dtls_state(self) -> DtlsState:
        """The DTLS association's state (for diagnostics and tests)."""
        return self._dtls.state
