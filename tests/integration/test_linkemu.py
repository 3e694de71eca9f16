"""The link emulator of the emulated networks (harness/linkemu.py, used by harness/netns.py).

``LinkModel`` alone (no root): delay, jitter without reordering, loss, rate and its bounded
queue, the frame limit. Then for real, without a browser or a server: two namespaces of an
``EmulatedNetwork``, a UDP echo socket in the server's and a client socket in the client's,
measure the round trip before and with a 100 ms downlink delay (plus 50 ms up, then jitter and
loss), a TCP stream crosses the emulator intact (checksums completed by the kernel), and
``lift``/teardown end the emulator's process and remove its TAP and redirect.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from .harness.linkemu import LinkModel
from .harness.netns import (
    SERVER_ADDRESS,
    Client,
    EmulatedNetwork,
    Shaping,
    emulated_network,
    in_namespace,
    run,
)

__all__ = ["emulated_network"]  # the fixture, imported for this module's tests

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")


def test_model_delays_every_frame() -> None:
    model = LinkModel(delay_ms=100)
    assert model.admit(10.0, 1200) == pytest.approx(10.1)
    assert model.admit(10.5, 60) == pytest.approx(10.6)
    assert model.held == 2
    model.released(1200)
    assert model.held == 1 and model.counters["out"] == 1 and model.counters["bytes_out"] == 1200


def test_model_jitter_stays_in_bounds_and_never_reorders() -> None:
    for spacing in (0.05, 0.001):  # sparse: each frame its own jitter; dense: held in order
        model = LinkModel(delay_ms=50, jitter_ms=20, rng=random.Random(7))
        dues = [model.admit(1.0 + i * spacing, 100) for i in range(2000)]
        times = [due for due in dues if due is not None]
        assert len(times) == 2000 and times == sorted(times)
        extra = [due - (1.0 + i * spacing) for i, due in enumerate(times)]
        assert min(extra) >= 0.030 - 1e-9 and max(extra) <= 0.070 + 1e-9
        if spacing > 0.04:
            assert 0.010 < statistics.pstdev(extra) < 0.013  # uniform over 40 ms: 11.5 ms


def test_model_loss_is_the_given_fraction() -> None:
    model = LinkModel(loss=0.02, rng=random.Random(3))
    kept = 0
    for _ in range(50_000):
        if model.admit(0.0, 100) is not None:
            model.released(100)
            kept += 1
    assert model.counters["lost"] == 50_000 - kept
    assert 0.017 < model.counters["lost"] / 50_000 < 0.023


def test_model_rate_serialises_and_tail_drops_after_queue_ms() -> None:
    model = LinkModel(rate_kbit=800, queue_ms=50)  # 1000 bytes take 10 ms
    dues = [model.admit(0.0, 1000) for _ in range(10)]
    assert dues[:6] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    assert dues[6:] == [None] * 4  # the 7th would wait 60 ms > 50 ms for the link
    assert model.counters["overflow"] == 4
    assert model.admit(1.0, 1000) == pytest.approx(1.01)  # the link idled meanwhile


def test_model_holds_at_most_limit_frames() -> None:
    model = LinkModel(delay_ms=1000, limit=3)
    assert [model.admit(0.0, 10) is not None for _ in range(5)] == [True] * 3 + [False] * 2
    model.released(10)
    assert model.admit(0.0, 10) is not None


def test_model_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="loss is a fraction"):
        LinkModel(loss=2)
    with pytest.raises(ValueError, match="a rate is positive"):
        LinkModel(rate_kbit=0)


# ---------------------------------------------------------------- through real namespaces


def socket_in(namespace: str, kind: int, bind: tuple[str, int] | None = None) -> socket.socket:
    """A socket that lives in ``namespace`` (made by a thread that entered it)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        if bind is not None:
            sock.bind(bind)
        return sock

    return in_namespace(namespace, make)


@contextmanager
def serving(target: Callable[[], None], stop: socket.socket) -> Iterator[None]:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.close()
        thread.join(5)


@contextmanager
def udp_echo(network: EmulatedNetwork) -> Iterator[tuple[str, int]]:
    """An echo socket in the server namespace; its address."""
    server = socket_in(network.server_namespace, socket.SOCK_DGRAM, (SERVER_ADDRESS, 0))

    def echo() -> None:
        while True:
            try:
                data, peer = server.recvfrom(2048)
                server.sendto(data, peer)
            except OSError:
                return

    with serving(echo, server):
        yield server.getsockname()


def round_trips(client: Client, echo: tuple[str, int], count: int) -> tuple[list[float], int]:
    """``count`` echoes from ``client``'s namespace, 20 ms apart: the round trips (ms) of those
    answered, and how many were not (within 0.5 s)."""
    sock = socket_in(client.namespace, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    rtts, lost = [], 0
    with sock:
        for i in range(count):
            token = f"{i}".encode()
            sent = time.monotonic()
            sock.sendto(token, echo)
            try:
                while sock.recv(2048) != token:
                    pass
                rtts.append((time.monotonic() - sent) * 1000)
            except TimeoutError:
                lost += 1
            time.sleep(0.02)
    return rtts, lost


def alive(pid: int | None) -> bool:
    return pid is not None and os.path.exists(f"/proc/{pid}")


@needs_root
@pytest.mark.timeout(90)
async def test_delay_is_real_on_the_wire(emulated_network: EmulatedNetwork) -> None:
    network = emulated_network
    client = network.add_client()
    with udp_echo(network) as echo:
        base, lost = round_trips(client, echo, 20)
        assert lost == 0 and statistics.median(base) < 5, base

        network.shape(client, "down", Shaping(delay_ms=100))
        rtts, lost = round_trips(client, echo, 20)
        added = statistics.median(rtts) - statistics.median(base)
        print(f"LINKEMU rtt {statistics.median(base):.2f} ms -> {statistics.median(rtts):.2f} ms")
        assert lost == 0 and 99 <= min(rtts) and 99 <= added <= 110, rtts

        network.shape(client, "up", Shaping(delay_ms=50))
        rtts, lost = round_trips(client, echo, 20)
        assert lost == 0 and 149 <= min(rtts) and statistics.median(rtts) <= 165, rtts

        network.shape(client, "up", Shaping(delay_ms=50, jitter_ms=20, loss=0.2))
        rtts, lost = round_trips(client, echo, 60)
        print(f"LINKEMU jitter: {min(rtts):.1f}..{max(rtts):.1f} ms, {lost} of 60 lost")
        assert 129 <= min(rtts) and max(rtts) <= 185 and statistics.pstdev(rtts) > 3, rtts
        assert 3 <= lost <= 25, lost  # 20 % of 60, binomial: 3..25 is beyond 3 sigma
        counters = network.emulator_counters(client, "up")
        assert counters is not None and counters["lost"] >= 1, counters

        network.lift(client, "up")
        network.lift(client, "down")
        rtts, lost = round_trips(client, echo, 10)
        assert lost == 0 and statistics.median(rtts) < 5, rtts
    assert network.emulator_counters(client, "down") is None
    assert "ze1d" not in run("ip", "-n", client.namespace, "link", "show")
    assert "ingress" not in run("tc", "-n", client.namespace, "qdisc", "show", "dev", "eth0")


@needs_root
@pytest.mark.timeout(90)
async def test_tcp_crosses_the_emulator_intact(emulated_network: EmulatedNetwork) -> None:
    network = emulated_network
    client = network.add_client()
    network.shape(client, "down", Shaping(delay_ms=20, loss=0.01))
    network.shape(client, "up", Shaping(delay_ms=20))
    listener = socket_in(network.server_namespace, socket.SOCK_STREAM, (SERVER_ADDRESS, 0))
    listener.listen(1)
    blob = random.Random(1).randbytes(4_000_000)

    def send() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.sendall(blob)

    with serving(send, listener):
        sock = socket_in(client.namespace, socket.SOCK_STREAM)
        sock.settimeout(30)
        got = bytearray()
        with sock:
            sock.connect(listener.getsockname())
            while chunk := sock.recv(1 << 16):
                got += chunk
    assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
    await asyncio.sleep(1.2)  # the emulator writes its counters once a second
    counters = network.emulator_counters(client, "down")
    assert counters is not None and counters["out"] > 2000 and counters["lost"] > 0, counters
    pids = [network.emulator_pid(client, "down"), network.emulator_pid(client, "up")]
    assert all(alive(pid) for pid in pids), pids
    await network.close()  # as the fixture's teardown does (again, harmlessly)
    assert not any(alive(pid) for pid in pids), pids
