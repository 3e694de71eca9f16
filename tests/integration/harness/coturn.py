"""A real coturn (Debian's ``turnserver``) on loopback, for the TURN tests.

Owns ``Coturn``: writes a config in the test's tmp dir (``use-auth-secret`` with a
``static-auth-secret``, UDP+TCP on a free port of 127.0.0.1 (or ``host``: an address of a test
namespace), relay addresses on the same address, no
TLS/DTLS, no CLI, the private ranges of docs/operations.md denied except the SFU's own address via
``allowed-peer-ip``, plus ``allow-loopback-peers``, which coturn needs before it relays to
127.0.0.0/8 at all), starts it, waits until its TCP listener answers, and stops it by PID
(SIGTERM, then SIGKILL). The log goes to a file in the tmp dir (``log_text``).

Does not import zvonok.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .server import free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
REALM = "zvonok.test"
#: A relay port range well away from the ephemeral ports tests bind (32768-60999 on Linux).
MIN_PORT, MAX_PORT = 61000, 61999


def turnserver_binary() -> str:
    path = shutil.which("turnserver")
    if path is None:
        raise AssertionError("turnserver not found: install Debian's coturn (./dev test does)")
    return path


class Coturn:
    """One ``turnserver`` process with ``use-auth-secret``; ``stop`` ends it by PID."""

    def __init__(
        self, root: Path, secret: str, *, sfu_ip: str = "127.0.0.1", host: str = "127.0.0.1"
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.secret = secret
        self.host = host
        self.port = free_port()
        self.log_file = root / "turnserver.log"
        self.config = root / "turnserver.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"listening-ip={self.host}",
                    f"relay-ip={self.host}",
                    f"listening-port={self.port}",
                    f"min-port={MIN_PORT}",
                    f"max-port={MAX_PORT}",
                    "use-auth-secret",
                    f"static-auth-secret={secret}",
                    f"realm={REALM}",
                    "fingerprint",
                    "no-tls",
                    "no-dtls",
                    "no-cli",
                    "no-multicast-peers",
                    "no-rfc5780",
                    "stale-nonce=600",
                    "user-quota=12",
                    "total-quota=100",
                    # production shape (docs/operations.md): private networks denied, the SFU
                    # allowed; loopback needs allow-loopback-peers on top
                    "denied-peer-ip=10.0.0.0-10.255.255.255",
                    "denied-peer-ip=172.16.0.0-172.31.255.255",
                    "denied-peer-ip=192.168.0.0-192.168.255.255",
                    "denied-peer-ip=127.0.0.0-127.255.255.255",
                    f"allowed-peer-ip={sfu_ip}",
                    "allow-loopback-peers",
                    f"userdb={root / 'turndb'}",
                    f"pidfile={root / 'turnserver.pid'}",
                    f"log-file={self.log_file}",
                    "simple-log",
                    "verbose",
                    "",
                ]
            )
        )
        self.process = subprocess.Popen(
            [turnserver_binary(), "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def url(self, transport: str = "udp") -> str:
        return f"turn:{self.host}:{self.port}?transport={transport}"

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the TCP listener accepts (the UDP one opens with it)."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.1) + 1):
            if self.process.poll() is not None:
                raise AssertionError(
                    f"turnserver exited with {self.process.returncode}:\n{self.log_text()[-3000:]}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"turnserver did not listen within {timeout} s:\n{self.log_text()}")

    def stop(self) -> int | None:
        """SIGTERM by PID, SIGKILL after ``STOP_TIMEOUT``. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode
