"""DTLS-SRTP server against a real pyOpenSSL DTLS client (memory BIOs, no sockets)."""

from __future__ import annotations

import asyncio

import pytest
from OpenSSL import SSL

from zvonok.media.transport.dtls import (
    DtlsCertificate,
    DtlsServer,
    DtlsState,
    certificate_fingerprint,
    split_records,
)
from zvonok.media.transport.srtp import SrtpSession

from .dtls_client import RTCP, RTP, DtlsClient


class FakeTransport:
    """Collects what a ``DtlsServer`` reports."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.srtp: SrtpSession | None = None
        self.failed: list[str] = []
        self.closed = 0

    def take(self) -> list[bytes]:
        sent, self.sent = self.sent, []
        return sent

    def dtls_send(self, data: bytes) -> None:
        self.sent.append(data)

    def dtls_connected(self, srtp: SrtpSession) -> None:
        self.srtp = srtp

    def dtls_failed(self, reason: str) -> None:
        self.failed.append(reason)

    def dtls_closed(self) -> None:
        self.closed += 1


def make_server(cert: DtlsCertificate | None = None) -> tuple[DtlsServer, FakeTransport]:
    fake = FakeTransport()
    context = (cert or DtlsCertificate.generate()).make_context()
    return DtlsServer(context, fake, asyncio.get_running_loop()), fake


def run_handshake(client: DtlsClient, server: DtlsServer, fake: FakeTransport) -> None:
    outgoing = client.step([])
    for _ in range(10):
        for datagram in outgoing:
            server.handle_datagram(datagram)
        replies = fake.take()
        if client.done and not replies:
            return
        outgoing = client.step(replies)
    raise AssertionError("handshake did not finish in 10 round trips")


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        (None, b"SRTP_AEAD_AES_128_GCM"),
        (b"SRTP_AES128_CM_SHA1_80", b"SRTP_AES128_CM_SHA1_80"),
        (b"SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_128_GCM", b"SRTP_AEAD_AES_128_GCM"),
    ],
)
async def test_handshake_derives_matching_srtp_keys(offered: bytes | None, selected: bytes) -> None:
    server, fake = make_server()
    client = DtlsClient(profiles=offered)
    server.set_remote_fingerprints(client.fingerprints)
    run_handshake(client, server, fake)
    assert server.state is DtlsState.CONNECTED and not fake.failed
    assert fake.srtp is not None and fake.srtp.profile.name == selected
    assert not server.retransmit_pending
    client_srtp = client.srtp()
    assert fake.srtp.unprotect_rtp(client_srtp.protect_rtp(RTP)) == RTP
    assert client_srtp.unprotect_rtp(fake.srtp.protect_rtp(RTP)) == RTP
    assert client_srtp.unprotect_rtcp(fake.srtp.protect_rtcp(RTCP)) == RTCP


async def test_fingerprint_mismatch_fails() -> None:
    server, fake = make_server()
    client = DtlsClient()
    server.set_remote_fingerprints([("sha-256", DtlsCertificate.generate().fingerprint())])
    run_handshake(client, server, fake)
    assert server.state is DtlsState.FAILED
    assert fake.failed == ["DTLS peer certificate does not match the SDP fingerprint"]
    assert fake.srtp is None


async def test_fingerprints_after_handshake() -> None:
    server, fake = make_server()
    client = DtlsClient()
    run_handshake(client, server, fake)
    assert server.state is DtlsState.AWAITING_FINGERPRINT and fake.srtp is None
    other = DtlsCertificate.generate()
    server.set_remote_fingerprints(
        [("sha-1", other.fingerprint("sha-1")), ("SHA-256", client.cert.fingerprint().lower())]
    )
    assert fake.srtp is not None and not fake.failed


async def test_a_weaker_matching_fingerprint_cannot_downgrade() -> None:
    """RFC 8122 §5: the strongest offered hash decides; a sha-1 match beside a wrong sha-256
    (what an attacker with a sha-1 collision would offer) is refused."""
    server, fake = make_server()
    client = DtlsClient()
    other = DtlsCertificate.generate()
    server.set_remote_fingerprints(
        [("sha-1", client.cert.fingerprint("sha-1")), ("sha-256", other.fingerprint())]
    )
    run_handshake(client, server, fake)
    assert fake.failed == ["DTLS peer certificate does not match the SDP fingerprint"]
    assert fake.srtp is None


async def test_several_certificates_with_the_strongest_hash() -> None:
    server, fake = make_server()
    client = DtlsClient()
    other = DtlsCertificate.generate()
    server.set_remote_fingerprints(
        [("sha-256", other.fingerprint()), ("sha-256", client.cert.fingerprint())]
    )
    run_handshake(client, server, fake)
    assert fake.srtp is not None and not fake.failed


async def test_late_fingerprint_mismatch_fails() -> None:
    server, fake = make_server()
    run_handshake(DtlsClient(), server, fake)
    server.set_remote_fingerprints([("md5", "AA:BB")])  # unknown algorithms never match
    assert fake.failed == ["DTLS peer certificate does not match the SDP fingerprint"]


async def test_first_flight_lost_is_retransmitted() -> None:
    server, fake = make_server()
    client = DtlsClient()
    server.set_remote_fingerprints(client.fingerprints)
    for datagram in client.step([]):
        server.handle_datagram(datagram)
    assert fake.take(), "the server answered the ClientHello"  # ...and the network lost it
    assert server.retransmit_pending
    for _ in range(60):  # OpenSSL's first retransmission timeout is 1 s
        if fake.sent:
            break
        await asyncio.sleep(0.05)
    assert fake.sent, "the flight was resent after the DTLS timeout"
    outgoing = client.step(fake.take())
    for _ in range(5):
        for datagram in outgoing:
            server.handle_datagram(datagram)
        outgoing = client.step(fake.take())
    assert server.state is DtlsState.CONNECTED and client.done


async def test_close_sends_close_notify_and_cancels_timer() -> None:
    server, fake = make_server()
    client = DtlsClient()
    server.set_remote_fingerprints(client.fingerprints)
    run_handshake(client, server, fake)
    server.close()
    notify = fake.take()
    assert notify and server.state is DtlsState.CLOSED
    for datagram in notify:
        client.conn.bio_write(datagram)
    with pytest.raises(SSL.ZeroReturnError):
        client.conn.recv(100)
    server.close()  # idempotent
    assert fake.take() == []


async def test_close_during_handshake_cancels_timer() -> None:
    server, fake = make_server()
    for datagram in DtlsClient().step([]):
        server.handle_datagram(datagram)
    assert server.retransmit_pending
    server.close()
    assert not server.retransmit_pending
    assert server.state is DtlsState.CLOSED


async def test_peer_close_notify() -> None:
    server, fake = make_server()
    client = DtlsClient()
    server.set_remote_fingerprints(client.fingerprints)
    run_handshake(client, server, fake)
    client.conn.shutdown()
    for datagram in client.drain():
        server.handle_datagram(datagram)
    assert fake.closed == 1 and server.state is DtlsState.CLOSED


async def test_garbage_during_handshake_is_dropped() -> None:
    server, fake = make_server()
    server.handle_datagram(b"\x16\xfe\xfd" + bytes(40))  # a handshake record of zeros
    server.handle_datagram(b"\x17" * 30)  # application data before any handshake
    # OpenSSL drops records it cannot use (RFC 6347 §4.1.2.7): nothing is answered, nothing
    # fails, and the real client's handshake that follows still completes
    assert (server.state, fake.failed, fake.sent) == (DtlsState.HANDSHAKING, [], [])
    client = DtlsClient()
    server.set_remote_fingerprints(client.fingerprints)
    run_handshake(client, server, fake)
    assert server.state is DtlsState.CONNECTED and fake.srtp is not None
    assert fake.failed == []
    server.close()
    assert not server.retransmit_pending


async def test_application_data_after_handshake_is_dropped() -> None:
    server, fake = make_server()
    client = DtlsClient()
    server.set_remote_fingerprints(client.fingerprints)
    run_handshake(client, server, fake)
    client.conn.send(b"sctp would go here")
    for datagram in client.drain():
        server.handle_datagram(datagram)
    assert server.state is DtlsState.CONNECTED and not fake.failed


def test_certificate_fingerprint_format() -> None:
    cert = DtlsCertificate.generate()
    value = cert.fingerprint("sha-256")
    assert len(value) == 32 * 3 - 1 and value == value.upper() and value.count(":") == 31
    assert certificate_fingerprint(cert.cert, "SHA-1").count(":") == 19
    with pytest.raises(ValueError, match="unsupported fingerprint algorithm 'md5'"):
        cert.fingerprint("md5")


def test_split_records_respects_mtu() -> None:
    def record(size: int) -> bytes:
        return b"\x16\xfe\xfd" + bytes(8) + size.to_bytes(2, "big") + bytes(size)

    data = record(500) + record(500) + record(500) + record(10)
    datagrams = split_records(data, mtu=1200)
    assert [len(d) for d in datagrams] == [1026, 536]
    assert b"".join(datagrams) == data
    assert split_records(b"") == []


async def test_client_without_certificate_fails() -> None:
    server, fake = make_server()
    context = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    context.set_tlsext_use_srtp(b"SRTP_AEAD_AES_128_GCM")
    client = DtlsClient()
    client.conn = SSL.Connection(context, None)
    client.conn.set_connect_state()
    client.conn.set_ciphertext_mtu(1200)
    with pytest.raises(SSL.Error):
        run_handshake(client, server, fake)
    assert server.state is DtlsState.FAILED and not server.retransmit_pending
    assert fake.failed[0].startswith("DTLS handshake failed:")


async def test_client_without_srtp_fails() -> None:
    server, fake = make_server()
    client = DtlsClient()
    context = SSL.Context(SSL.DTLS_CLIENT_METHOD)  # no use_srtp extension at all
    context.use_certificate(client.cert.cert)
    context.use_privatekey(client.cert.key)
    client.conn = SSL.Connection(context, None)
    client.conn.set_connect_state()
    client.conn.set_ciphertext_mtu(1200)
    server.set_remote_fingerprints(client.fingerprints)
    run_handshake(client, server, fake)
    assert fake.failed == ["unsupported SRTP protection profile b''"]
