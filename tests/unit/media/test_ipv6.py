"""IPv6 on the media plane: canonical addresses, candidates, settings, and a dual-stack worker
that serves an IPv4 and an IPv6 client on one port (STUN, DTLS, SRTP both ways), with the
compiled fast path and without it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aioice import stun
from pydantic import ValidationError

from zvonok.config import Settings
from zvonok.media.fastpath import native
from zvonok.media.sdp.candidate import Candidate
from zvonok.media.transport import receiver, target, udp
from zvonok.media.transport.address import (
    canonical_address,
    canonical_ip,
    is_ipv6,
    socket_address,
)
from zvonok.media.transport.ice import _xor_mapped_address
from zvonok.media.transport.transport import ConnectionState
from zvonok.media.worker import (
    MediaWorker,
    _announced,
    host_candidates,
    local_ipv6_addresses,
    media_socket,
)

from .dtls_client import RTCP, RTP, DtlsClient
from .test_transport_udp import REMOTE, Peer, Recorder, until


def test_canonical_ip() -> None:
    assert canonical_ip("::FFFF:192.0.2.1") == "192.0.2.1"
    assert canonical_ip("::ffff:c000:201") == "192.0.2.1"
    assert canonical_ip("[2001:DB8:0:0:0:0:0:1]") == "2001:db8::1"
    assert canonical_ip(" 192.0.2.1 ") == "192.0.2.1"
    assert canonical_ip("::1") == "::1"
    assert is_ipv6("2001:db8::1") and not is_ipv6("::ffff:192.0.2.1")
    for bad in ("example.com", "", "1.2.3", "::g"):
        with pytest.raises(ValueError, match="not an IP address"):
            canonical_ip(bad)


def test_canonical_and_socket_addresses() -> None:
    mapped = ("::ffff:127.0.0.1", 5000, 0, 0)
    assert canonical_address(mapped) == ("127.0.0.1", 5000)  # type: ignore[arg-type]
    assert canonical_address(("127.0.0.1", 5000)) == ("127.0.0.1", 5000)
    assert canonical_address(("2001:DB8::1", 9, 0, 0)) == ("2001:db8::1", 9)  # type: ignore[arg-type]
    v6 = socket.AF_INET6
    assert tuple(socket_address(("127.0.0.1", 5000), v6)) == mapped
    assert tuple(socket_address(mapped, v6)) == mapped  # type: ignore[arg-type]
    assert tuple(socket_address(("::1", 7), v6)) == ("::1", 7, 0, 0)
    assert tuple(socket_address(("::1", 7, 3, 2), v6)) == ("::1", 7, 3, 2)  # type: ignore[arg-type]
    assert socket_address(mapped, socket.AF_INET) == ("127.0.0.1", 5000)  # type: ignore[arg-type]
    unchanged = ("::1", 7, 0, 0)
    assert tuple(socket_address(unchanged, socket.AF_INET)) == unchanged  # type: ignore[arg-type]


def test_xor_mapped_address_of_a_mapped_peer_is_ipv4() -> None:
    """A client that sent from 127.0.0.1 must see 127.0.0.1 (family 0x01), not ::ffff:..."""
    tid = bytes(range(12))
    mapped = _xor_mapped_address(("::ffff:127.0.0.1", 5000, 0, 0), tid)  # type: ignore[arg-type]
    assert mapped == _xor_mapped_address(("127.0.0.1", 5000), tid)
    message = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=tid)
    raw = bytes(message)
    parsed = stun.parse_message(raw[:2] + (len(mapped)).to_bytes(2, "big") + raw[4:] + mapped)
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == ("127.0.0.1", 5000)
    six = _xor_mapped_address(("2001:db8::7", 6000, 0, 0), tid)  # type: ignore[arg-type]
    parsed = stun.parse_message(raw[:2] + (len(six)).to_bytes(2, "big") + raw[4:] + six)
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == ("2001:db8::7", 6000)


def test_ipv6_candidates_render_and_parse() -> None:
    """RFC 8839 §5.1: the connection-address is the IPv6 address as text, no brackets."""
    lines = host_candidates(["192.0.2.1", "2001:db8::1", "::1"], 40000, 40001)
    parsed = [Candidate.parse(line) for line in lines]
    assert [(c.host, c.port, c.transport.lower()) for c in parsed] == [
        ("192.0.2.1", 40000, "udp"),
        ("2001:db8::1", 40000, "udp"),
        ("::1", 40000, "udp"),
        ("192.0.2.1", 40001, "tcp"),
        ("2001:db8::1", 40001, "tcp"),
        ("::1", 40001, "tcp"),
    ]
    assert lines[1] == "candidate:2 1 udp 2130706175 2001:db8::1 40000 typ host"
    assert all(str(c) == line for c, line in zip(parsed, lines, strict=True))
    assert len({c.priority for c in parsed}) == len(parsed)
    assert len({c.foundation for c in parsed}) == len(parsed)


def test_local_ipv6_addresses(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(
        "00000000000000000000000000000001 01 80 10 80       lo\n"
        "fe800000000000000000000000000001 02 40 20 80     eth0\n"  # link-local: no zone in SDP
        "20010db8000000000000000000000002 02 40 00 80     eth0\n"
        "20010db8000000000000000000000003 02 40 00 c0     eth0\n"  # tentative (DAD running)
        "fd000000000000000000000000000002 03 40 00 82     eth1\n"
        "garbage\n"
    )
    assert local_ipv6_addresses(str(table)) == ["2001:db8::2", "fd00::2", "::1"]
    assert local_ipv6_addresses(str(tmp_path / "missing")) == []


def test_announced_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    import zvonok.media.worker as worker

    monkeypatch.setattr(worker, "local_ipv4_addresses", lambda: ["192.0.2.1", "127.0.0.1"])
    monkeypatch.setattr(worker, "local_ipv6_addresses", lambda: ["2001:db8::2", "::1"])
    assert _announced("::", []) == ["192.0.2.1", "2001:db8::2", "127.0.0.1", "::1"]
    assert _announced("0.0.0.0", []) == ["192.0.2.1", "127.0.0.1"]
    assert _announced("::1", []) == ["::1"]
    assert _announced("::", ["::FFFF:192.0.2.9", "2001:DB8::9", "192.0.2.9"]) == [
        "192.0.2.9",
        "2001:db8::9",
    ]


def test_settings_validation() -> None:
    s = Settings(media_host="[::]", announce_ips=["2001:DB8::1", "::ffff:192.0.2.1", "192.0.2.1"])
    assert s.media_host == "::" and s.announce_ips == ["2001:db8::1", "192.0.2.1"]
    assert Settings(media_host="::1", announce_ips=["::1"]).announce_ips == ["::1"]
    assert Settings(announce_ips=["192.0.2.1"]).media_host == "0.0.0.0"
    with pytest.raises(ValidationError, match='media_host = "::"'):
        Settings(announce_ips=["2001:db8::1"])  # IPv4 socket, IPv6 candidate
    with pytest.raises(ValidationError, match="IPv6 address: set media_host"):
        Settings(media_host="2001:db8::1", announce_ips=["192.0.2.1"])
    with pytest.raises(ValidationError, match="not an IP address"):
        Settings(announce_ips=["media.example.com"])
    with pytest.raises(ValidationError, match="link-local"):
        Settings(media_host="::", announce_ips=["fe80::1"])
    with pytest.raises(ValidationError, match="not an IP address"):
        Settings(media_host="localhost")


def test_dual_stack_socket() -> None:
    sock = media_socket("::", 0)
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    finally:
        sock.close()


class Peer6(Peer):
    """A client UDP socket on ::1."""

    def __init__(self, server: tuple[str, int]) -> None:
        super().__init__(server)
        self.sock.close()
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", 0))
        self.sock.setblocking(False)
        self.addr = self.sock.getsockname()[:2]


@pytest.fixture(params=["compiled", "python"])
async def dual_worker(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MediaWorker]:
    if request.param == "python":
        for module in (udp, target, receiver):
            monkeypatch.setattr(module, "native", None)
    elif native is None:
        pytest.skip("the compiled fast path is not built")
    media = MediaWorker(host="::", port=0, announce_ips=["127.0.0.1", "::1"])
    await media.start()
    yield media
    await media.close()


async def test_ipv4_and_ipv6_clients_on_one_dual_stack_port(dual_worker: MediaWorker) -> None:
    worker = dual_worker
    assert worker.udp.family == socket.AF_INET6
    assert [Candidate.parse(c).host for c in worker.local_candidates()][:2] == ["127.0.0.1", "::1"]
    four, six = Peer(("127.0.0.1", worker.port)), Peer6(("::1", worker.port))
    try:
        for peer in (four, six):
            recorder = Recorder()
            transport = worker.create_transport(recorder)
            response = await peer.check(transport.local_ice)
            assert response is not None and response.message_class == stun.Class.RESPONSE
            assert response.attributes["XOR-MAPPED-ADDRESS"] == peer.addr
            assert transport.selected_address == peer.addr
            assert worker.udp.endpoint_for(peer.addr) is transport
            client = DtlsClient()
            transport.set_remote(REMOTE, client.fingerprints)
            await peer.handshake(client)
            await until(lambda t=transport: t.state is ConnectionState.CONNECTED)  # type: ignore[misc]
            srtp = client.srtp()
            await peer.send(srtp.protect_rtp(RTP))
            await peer.send(srtp.protect_rtcp(RTCP))
            await until(lambda r=recorder: bool(r.rtp and r.rtcp))  # type: ignore[misc]
            assert recorder.rtp == [RTP] and recorder.rtcp == [RTCP]
            transport.send_rtp(bytearray(RTP))
            transport.send_rtcp(RTCP)
            first, second = await peer.recv(), await peer.recv()
            assert first is not None and second is not None
            assert srtp.unprotect_rtp(first) == RTP and srtp.unprotect_rtcp(second) == RTCP
            assert transport.srtp_errors == 0
        mapped = ("::ffff:127.0.0.1", four.addr[1], 0, 0)
        assert worker.udp.endpoint_for(mapped) is worker.udp.endpoint_for(four.addr)  # type: ignore[arg-type]
        assert worker.udp.endpoint_for(four.addr) is not worker.udp.endpoint_for(six.addr)
    finally:
        four.close()
        six.close()


async def test_no_ipv6_on_the_host_falls_back_to_ipv4(monkeypatch: pytest.MonkeyPatch) -> None:
    """``::`` on a kernel without IPv6: IPv4 on 0.0.0.0, IPv6 candidates dropped, a warning."""
    import errno

    import zvonok.media.worker as worker_module

    real = worker_module.media_socket

    def no_ipv6(host: str, port: int) -> socket.socket:
        if ":" in host:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(host, port)

    monkeypatch.setattr(worker_module, "media_socket", no_ipv6)
    media = MediaWorker(host="::", port=0, announce_ips=["127.0.0.1", "::1"])
    await media.start()
    try:
        assert media.host == "0.0.0.0" and media.udp.family == socket.AF_INET
        assert [Candidate.parse(c).host for c in media.local_candidates()] == ["127.0.0.1"]
    finally:
        await media.close()
