"""DTLS-SRTP, server role only (RFC 5763, RFC 5764, RFC 6347), with pyOpenSSL memory BIOs.

Owns: ``DtlsCertificate`` (one self-signed ECDSA P-256 certificate per worker, its SDP
fingerprints, the worker's shared ``SSL.Context``), ``DtlsServer`` (one session's handshake:
retransmission timer, fingerprint check, SRTP key export, close_notify) and ``export_srtp``.
We answer ``a=setup:passive`` / offer ``actpass``, so browsers are always the DTLS client.
No cookie exchange (RFC 6347 §4.2.1): the peer's address is already authenticated by ICE.
Must not import anything from zvonok outside ``zvonok.media``.

The peer certificate is accepted by the verify callback and compared with the SDP fingerprints
(RFC 8122 §5) once the handshake ends; fingerprints that arrive later (an early ClientHello
before the answer is applied) are checked when they arrive. Key layout: RFC 5764 §4.2.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
from collections.abc import Sequence
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from .srtp import USE_SRTP_PROFILES, SrtpSession, profile_by_name

#: The RFC 5705 exporter label of RFC 5764 §4.2.
SRTP_EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"
#: Largest DTLS datagram we send (fits any tunnel on the path; browsers use the same order).
DTLS_MTU = 1200
_RECORD_HEADER = 13

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha-1": hashes.SHA1,
    "sha-224": hashes.SHA224,
    "sha-256": hashes.SHA256,
    "sha-384": hashes.SHA384,
    "sha-512": hashes.SHA512,
}
#: Hash functions from weakest to strongest (RFC 8122 §5: the strongest offered one decides).
_STRENGTH = ["sha-1", "sha-224", "sha-256", "sha-384", "sha-512"]


def certificate_fingerprint(cert: x509.Certificate, algorithm: str = "sha-256") -> str:
    """``AB:CD:...`` digest of a certificate as in SDP ``a=fingerprint`` (RFC 8122 §5)."""
    try:
        hash_cls = _HASHES[algorithm.lower()]
    except KeyError:
        raise ValueError(f"unsupported fingerprint algorithm {algorithm!r}") from None
    return cert.fingerprint(hash_cls()).hex(":").upper()


def _accept_any(conn: SSL.Connection, cert: object, errno: int, depth: int, ok: int) -> bool:
    return True  # the fingerprint from the SDP is checked after the handshake


class DtlsCertificate:
    """A worker's self-signed certificate and the ``SSL.Context`` built on it."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def generate(cls, *, lifetime_days: int = 365) -> DtlsCertificate:
        """A fresh ECDSA P-256 key and self-signed certificate (WebRTC's usual kind)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zvonok")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=lifetime_days))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def fingerprint(self, algorithm: str = "sha-256") -> str:
        """The SDP fingerprint of this certificate."""
        return certificate_fingerprint(self.cert, algorithm)

    def make_context(self, *, server: bool = True) -> SSL.Context:
        """A DTLS context offering SRTP (GCM preferred) and requesting the peer certificate.

        ``server=False`` builds the client side; only tests use it.
        """
        ctx = SSL.Context(SSL.DTLS_SERVER_METHOD if server else SSL.DTLS_CLIENT_METHOD)
        ctx.use_certificate(self.cert)
        ctx.use_privatekey(self.key)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _accept_any)
        ctx.set_tlsext_use_srtp(USE_SRTP_PROFILES)
        ctx.set_options(SSL.OP_NO_QUERY_MTU)
        # After the handshake a session's DTLS connection only carries close_notify: let
        # OpenSSL free its read/write buffers while idle (tens of kB per session).
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
        return ctx


def export_srtp(conn: SSL.Connection, *, server: bool) -> SrtpSession:
    """Derive the SRTP session from a finished handshake (RFC 5764 §4.2 key layout).

    The material is client key | server key | client salt | server salt; a server protects
    with the server half and unprotects with the client half.
    """
    profile = profile_by_name(conn.get_selected_srtp_profile())
    k, s = profile.key_length, profile.salt_length
    material = conn.export_keying_material(SRTP_EXPORTER_LABEL, 2 * (k + s))
    client = material[:k] + material[2 * k : 2 * k + s]
    server_key = material[k : 2 * k] + material[2 * k + s :]
    if server:
        return SrtpSession(profile, tx_master=server_key, rx_master=client)
    return SrtpSession(profile, tx_master=client, rx_master=server_key)


def split_records(data: bytes, mtu: int = DTLS_MTU) -> list[bytes]:
    """Pack the DTLS records OpenSSL wrote into datagrams of at most ``mtu`` bytes.

    A memory BIO concatenates records; a record must never straddle two datagrams.
    """
    datagrams: list[bytes] = []
    current = b""
    pos = 0
    while pos < len(data):
        end = pos + _RECORD_HEADER + int.from_bytes(data[pos + 11 : pos + 13], "big")
        record = data[pos:end]
        if current and len(current) + len(record) > mtu:
            datagrams.append(current)
            current = b""
        current += record
        pos = end
    if current:
        datagrams.append(current)
    return datagrams


class DtlsListener(Protocol):
    """What a ``DtlsServer`` reports to its transport."""

    def dtls_send(self, data: bytes) -> None: ...
    def dtls_connected(self, srtp: SrtpSession) -> None: ...
    def dtls_failed(self, reason: str) -> None: ...
    def dtls_closed(self) -> None: ...


class DtlsState(enum.Enum):
    HANDSHAKING = "handshaking"
    AWAITING_FINGERPRINT = "awaiting-fingerprint"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


class DtlsServer:
    """One session's DTLS server endpoint over memory BIOs."""

    def __init__(
        self,
        context: SSL.Context,
        listener: DtlsListener,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._conn = SSL.Connection(context, None)
        self._conn.set_accept_state()
        self._conn.set_ciphertext_mtu(DTLS_MTU)
        self._listener = listener
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._fingerprints: list[tuple[str, str]] | None = None
        self.state = DtlsState.HANDSHAKING

    @property
    def retransmit_pending(self) -> bool:
        """Whether a handshake retransmission timer is armed (tests and leak checks)."""
        return self._timer is not None

    def set_remote_fingerprints(self, fingerprints: Sequence[tuple[str, str]]) -> None:
        """The peer's ``a=fingerprint`` values; verifies now if the handshake already ended."""
        self._fingerprints = [(alg.lower(), value.upper()) for alg, value in fingerprints]
        if self.state is DtlsState.AWAITING_FINGERPRINT:
            self._verify_and_export()

    def handle_datagram(self, data: bytes) -> None:
        """Feed one DTLS datagram from the peer."""
        if self.state is DtlsState.FAILED or self.state is DtlsState.CLOSED:
            return
        self._conn.bio_write(data)
        if self.state is DtlsState.HANDSHAKING:
            self._handshake()
        else:
            self._read()

    def close(self) -> None:
        """Send close_notify if the association is up; cancel the timer. Idempotent."""
        self._cancel_timer()
        if self.state in (DtlsState.CONNECTED, DtlsState.AWAITING_FINGERPRINT):
            try:
                self._conn.shutdown()
            except SSL.Error:
                pass
            self._flush()
        self.state = DtlsState.CLOSED

    def abort(self) -> None:
        """Stop without a close_notify (the session failed); cancels the timer."""
        self._cancel_timer()
        if self.state is not DtlsState.CLOSED:
            self.state = DtlsState.FAILED

    def _handshake(self) -> None:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            self._flush()
            self._arm_timer()
            return
        except SSL.Error as exc:
            self._flush()  # the alert, if OpenSSL wrote one
            self._fail(f"DTLS handshake failed: {exc}")
            return
        self._flush()
        self._cancel_timer()
        self.state = DtlsState.AWAITING_FINGERPRINT
        if self._fingerprints is not None:
            self._verify_and_export()

    def _verify_and_export(self) -> None:
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        if cert is None:
            self._fail("DTLS peer sent no certificate")
            return
        # RFC 8122 §5: judge by the strongest hash function offered that we support, so that a
        # matching weaker fingerprint (a collision in the weak hash) cannot be used to downgrade.
        offered = [(alg, value) for alg, value in self._fingerprints or () if alg in _HASHES]
        strongest = max((_STRENGTH.index(alg) for alg, _ in offered), default=-1)
        if not any(
            _STRENGTH.index(alg) == strongest and certificate_fingerprint(cert, alg) == value
            for alg, value in offered
        ):
            self._fail("DTLS peer certificate does not match the SDP fingerprint")
            return
        try:
            srtp = export_srtp(self._conn, server=True)
        except ValueError as exc:
            self._fail(str(exc))
            return
        self.state = DtlsState.CONNECTED
        self._listener.dtls_connected(srtp)

    def _read(self) -> None:
        try:
            while True:  # application data (no data channels here) is read and dropped
                self._conn.recv(2048)
        except SSL.WantReadError:
            self._flush()  # e.g. our last flight again, for a retransmitted client Finished
        except SSL.ZeroReturnError:
            self._flush()
            self.state = DtlsState.CLOSED
            self._listener.dtls_closed()
        except SSL.Error as exc:
            self._flush()
            self._fail(f"DTLS error: {exc}")

    def _flush(self) -> None:
        try:
            data = self._conn.bio_read(65536)
        except SSL.WantReadError:
            return
        for datagram in split_records(data):
            self._listener.dtls_send(datagram)

    def _arm_timer(self) -> None:
        self._cancel_timer()
        delay = self._conn.DTLSv1_get_timeout()
        if delay is not None:
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.state is not DtlsState.HANDSHAKING:
            return
        try:
            self._conn.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self._fail(f"DTLS retransmission failed: {exc}")
            return
        self._flush()
        self._arm_timer()

    def _fail(self, reason: str) -> None:
        self._cancel_timer()
        self.state = DtlsState.FAILED
        self._listener.dtls_failed(reason)
