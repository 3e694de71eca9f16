"""A userspace link emulator: delay, jitter, random loss and a rate limit on one direction of one
emulated link (harness/netns.py), for kernels without ``sch_netem`` (this machine's has none).

Owns ``LinkModel`` (when each packet leaves, or that it is dropped: pure, no I/O), ``LinkEmulator``
(the process: a TAP device and the loop that holds packets back), ``tc_redirect`` (the ``tc``
commands that route a device's incoming IPv4 traffic through it) and ``main`` (its command line).

How a packet goes through it. The *receiving* end of the link (a client's ``eth0`` for its
downlink, the server namespace's ``vsN`` for that client's uplink) gets an ``ingress`` qdisc and
a ``u32`` filter that redirects every IPv4 frame (``mirred egress redirect``) to a TAP device in
the same namespace, before the stack or the bridge sees it; ARP is not redirected, so neighbour
discovery stays on the real link and the answers leave by it as before. This process reads the
frames from the TAP, lets ``LinkModel`` decide when each leaves, and writes it back into the TAP
with the destination MAC set to the TAP's own, so the namespace's stack receives it there (on
the TAP, which has no address: reverse-path filtering is turned off for it and for ``all`` in that
namespace, which is ours; everything else about the stack is unchanged). Kernel parts used:
``CONFIG_TUN``, ``CONFIG_NET_SCH_INGRESS``, ``CONFIG_NET_CLS_U32``, ``CONFIG_NET_ACT_MIRRED``.
Checksums: the TAP offers no checksum offload, so the kernel completes any partial checksum of
a redirected frame before this process reads it, and GSO frames arrive segmented.

The model, per frame in arrival order: lost with probability ``loss``; then, with a rate,
serialised at ``rate_kbit`` behind the frames before it (tail-dropped when it would wait more than
``queue_ms`` for the link); then held ``delay_ms`` plus a uniform jitter in
``[-jitter_ms, +jitter_ms]``. Frames never overtake each other (a frame whose jitter would put it
before the previous one leaves with it), as on a real path and as ``netem`` does when it also
rate-limits. At most ``limit`` frames are held (more are dropped at the tail), so memory is
bounded whatever the sender does. Only IPv4 frames are forwarded (the filter sends nothing else;
anything the kernel itself sends out of the TAP is dropped and counted).

Run as ``ip netns exec NS python linkemu.py --tap NAME [--delay-ms ...]``: it creates the TAP
(gone with the process), sets it up, prints ``ready`` and one line of counters (JSON) every
second on stdout, and on SIGTERM or SIGINT, or within a second of its parent's end, prints the
counters and exits 0. Standard library only,
so it starts fast and never imports the harness or zvonok.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_UP = 0x1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFHWADDR = 0x8927
ETHERTYPE_IPV4 = b"\x08\x00"
MAX_FRAME = 65536
READ_BATCH = 256  # frames read per wake-up before releasing what is due
STATS_EVERY = 1.0
DEFAULT_LIMIT = 10_000  # frames held at most (netem's default limit is 1000; video bursts)


@dataclass
class LinkModel:
    """When each frame leaves the link (or that it is dropped); times in seconds."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    rate_kbit: float | None = None
    queue_ms: float = 100.0
    limit: int = DEFAULT_LIMIT
    rng: random.Random = field(default_factory=random.Random)
    held: int = 0  # frames accepted and not yet released (the caller calls ``released``)
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("in", "out", "lost", "overflow", "bytes_out"), 0)
    )
    _link_free: float = 0.0  # when the rate-limited link has sent everything accepted so far
    _last_due: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss is a fraction in 0..1, not {self.loss}")
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.queue_ms < 0:
            raise ValueError("delay, jitter and queue are not negative")
        if self.rate_kbit is not None and self.rate_kbit <= 0:
            raise ValueError(f"a rate is positive, not {self.rate_kbit}")
        if self.limit < 1:
            raise ValueError(f"the limit is at least one frame, not {self.limit}")

    def admit(self, now: float, size: int) -> float | None:
        """A frame of ``size`` bytes arrives at ``now``: when it leaves, or None if dropped."""
        self.counters["in"] += 1
        if self.loss and self.rng.random() < self.loss:
            self.counters["lost"] += 1
            return None
        if self.held >= self.limit:
            self.counters["overflow"] += 1
            return None
        sent = now
        if self.rate_kbit is not None:
            start = max(now, self._link_free)
            if start - now > self.queue_ms / 1000:
                self.counters["overflow"] += 1
                return None
            sent = start + size * 8 / (self.rate_kbit * 1000)
            self._link_free = sent
        due = sent + self.delay_ms / 1000
        if self.jitter_ms:
            due += self.rng.uniform(-self.jitter_ms, self.jitter_ms) / 1000
        due = max(due, sent, self._last_due)  # never before it is sent, never overtaking
        self._last_due = due
        self.held += 1
        return due

    def released(self, size: int) -> None:
        """A frame admitted earlier has left."""
        self.held -= 1
        self.counters["out"] += 1
        self.counters["bytes_out"] += size


def tc_redirect(namespace: str, device: str, tap: str) -> list[list[str]]:
    """The commands that send ``device``'s incoming IPv4 frames through ``tap`` (all in
    ``namespace``); deleting the ``ingress`` qdisc undoes them."""
    return [
        ["tc", "-n", namespace, "qdisc", "replace", "dev", device, "ingress"],
        ["tc", "-n", namespace, "filter", "add", "dev", device, "parent", "ffff:",
         "protocol", "ip", "prio", "1", "u32", "match", "u32", "0", "0",
         "action", "mirred", "egress", "redirect", "dev", tap],
    ]  # fmt: skip


def _ifreq(name: str, payload: bytes = b"") -> bytes:
    return struct.pack("16s", name.encode()) + payload.ljust(24, b"\0")


def _set_sysctl(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


class LinkEmulator:
    """One TAP device and the frames held in it; ``run`` until ``stop``."""

    def __init__(self, tap: str, model: LinkModel) -> None:
        if not 0 < len(tap) < 16:
            raise ValueError(f"a device name has 1 to 15 characters: {tap!r}")
        self.tap = tap
        self.model = model
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        self._stopping = False
        self.ignored = 0  # frames the kernel sent out of the TAP that were not redirected IPv4
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
            # No IPv6 on the TAP (no router solicitations to read), no reverse-path check of
            # what arrives on it: its source is reached through the real link, not the TAP.
            _set_sysctl(f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6", "1")
            _set_sysctl("/proc/sys/net/ipv4/conf/all/rp_filter", "0")
            _set_sysctl(f"/proc/sys/net/ipv4/conf/{tap}/rp_filter", "0")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                answer = fcntl.ioctl(s, SIOCGIFHWADDR, _ifreq(tap))
                self.mac = answer[18:24]
                flags = struct.unpack("H", fcntl.ioctl(s, SIOCGIFFLAGS, _ifreq(tap))[16:18])[0]
                fcntl.ioctl(s, SIOCSIFFLAGS, _ifreq(tap, struct.pack("H", flags | IFF_UP)))
        except BaseException:
            os.close(self.fd)
            raise

    def stop(self) -> None:
        self._stopping = True

    def stats(self) -> dict[str, int]:
        return {**self.model.counters, "held": self.model.held, "ignored": self.ignored}

    def run(self, report: float = STATS_EVERY, wake_fd: int | None = None) -> None:
        """Read, hold and write back frames until ``stop``; a line of counters every
        ``report`` seconds on stdout. ``wake_fd`` readable (a signal's wake-up pipe) ends the
        wait at once."""
        watched = [self.fd] if wake_fd is None else [self.fd, wake_fd]
        parent = os.getppid()
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        next_report = time.monotonic() + report
        while not self._stopping:
            now = time.monotonic()
            wait = min(next_report, queue[0][0] if queue else next_report) - now
            try:
                readable, _, _ = select.select(watched, [], [], max(0.0, wait))
            except InterruptedError:
                continue
            now = time.monotonic()
            if wake_fd in readable:
                os.read(wake_fd, 512)
            if self.fd in readable:
                for _ in range(READ_BATCH):
                    try:
                        frame = os.read(self.fd, MAX_FRAME)
                    except BlockingIOError:
                        break
                    if len(frame) < 34 or frame[12:14] != ETHERTYPE_IPV4:
                        self.ignored += 1
                        continue
                    due = self.model.admit(now, len(frame))
                    if due is not None:
                        queue.append((due, self.mac + frame[6:]))
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, frame = queue.popleft()
                self.model.released(len(frame))
                try:
                    os.write(self.fd, frame)
                except OSError:
                    self.model.counters["overflow"] += 1  # the TAP refused it: a drop
            if now >= next_report:
                print(json.dumps(self.stats()), flush=True)
                next_report = now + report
                if os.getppid() != parent:  # the test process is gone: nobody will end us
                    self._stopping = True

    def close(self) -> None:
        os.close(self.fd)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tap", required=True, help="the TAP device to create (<= 15 chars)")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0, help="a fraction, 0..1")
    parser.add_argument("--rate-kbit", type=float, default=None)
    parser.add_argument("--queue-ms", type=float, default=100.0)
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
    parser.add_argument("--seed", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    model = LinkModel(
        delay_ms=args.delay_ms, jitter_ms=args.jitter_ms, loss=args.loss,
        rate_kbit=args.rate_kbit, queue_ms=args.queue_ms, limit=args.limit,
        rng=random.Random(args.seed),
    )  # fmt: skip
    emulator = LinkEmulator(args.tap, model)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: emulator.stop())
    print("ready", flush=True)
    try:
        emulator.run(wake_fd=wake_read)
    finally:
        print(json.dumps(emulator.stats()), flush=True)
        emulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
