"""A browser stand-in for DTLS-SRTP tests: a pyOpenSSL DTLS client in memory-BIO mode, and an
RTP and an RTCP packet to protect once it is connected. Shared by the DTLS and UDP transport
tests."""

from __future__ import annotations

from OpenSSL import SSL

from zvonok.media.transport.dtls import DtlsCertificate, export_srtp, split_records
from zvonok.media.transport.srtp import SrtpSession

RTP = bytes.fromhex("80 6f 00 01 00 00 03 c0 11 22 33 44") + b"\x05" * 100
RTCP = bytes.fromhex("80 c9 00 01 11 22 33 44")


class DtlsClient:
    """A browser stand-in: pyOpenSSL DTLS client in memory-BIO mode."""

    def __init__(self, cert: DtlsCertificate | None = None, profiles: bytes | None = None) -> None:
        self.cert = cert or DtlsCertificate.generate()
        context = self.cert.make_context(server=False)
        if profiles is not None:
            context.set_tlsext_use_srtp(profiles)
        self.conn = SSL.Connection(context, None)
        self.conn.set_connect_state()
        self.conn.set_ciphertext_mtu(1200)
        self.done = False

    @property
    def fingerprints(self) -> list[tuple[str, str]]:
        return [("sha-256", self.cert.fingerprint("sha-256"))]

    def step(self, incoming: list[bytes]) -> list[bytes]:
        """Feed datagrams, advance the handshake, return what the client sends."""
        for datagram in incoming:
            self.conn.bio_write(datagram)
        if not self.done:
            try:
                self.conn.do_handshake()
                self.done = True
            except SSL.WantReadError:
                pass
        return self.drain()

    def drain(self) -> list[bytes]:
        try:
            return split_records(self.conn.bio_read(65536))
        except SSL.WantReadError:
            return []

    def srtp(self) -> SrtpSession:
        return export_srtp(self.conn, server=False)
