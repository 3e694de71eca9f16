"""CI smoke run of ``zvonok bench --janus``: a short mesh-4 against our own Janus must deliver.

Not a timed test: it checks that the generator and Janus's VideoRoom talk (sessions, publisher
and multistream subscriber handles, ICE against Janus's ICE-lite agent, DTLS in both roles,
SRTP, the send mark carried through Janus's relay) and that every packet arrives. Never skipped:
Janus is a required test dependency (the Debian package ``janus``, installed by ``./dev test``),
so a missing ``janus`` binary fails. Runs the real command in a subprocess, which starts and stops
its own Janus by PID, inside a network namespace of its own (``unshare -n``): Janus never gathers
candidates on a loopback interface, so the namespace gets a veth pair with a private address
besides ``lo``, and nothing depends on, or touches, the machine's own interfaces.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_mesh4_against_janus_delivers_everything(tmp_path: Path) -> None:
    assert shutil.which("janus") or Path("/usr/bin/janus").is_file(), (
        "janus is not installed: install the Debian package janus (./dev test does it)"
    )
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    assert unshare and ip, "unshare and ip (util-linux, iproute2) are needed for this test"
    out = tmp_path / "mesh4-janus.json"
    bench = shlex.join(
        [sys.executable, "-m", "zvonok", "bench", "mesh-4", "--janus", "--duration", "3",
         "--warmup", "2", "--json", str(out)]
    )  # fmt: skip
    inner = (
        f"{ip} link set lo up && {ip} link add zvbench0 type veth peer name zvbench1 && "
        f"{ip} addr add 10.231.0.1/24 dev zvbench0 && {ip} link set zvbench0 up && "
        f"{ip} link set zvbench1 up && exec {bench}"
    )
    flags = ["-n"] if os.geteuid() == 0 else ["-Urn"]
    done = subprocess.run(
        [unshare, *flags, "sh", "-c", inner],
        capture_output=True, text=True, timeout=100, check=False,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["server"].startswith("janus ")
    assert result["scenario"] == "mesh-4" and result["participants"] == 4
    assert result["errors"] == []
    for kind in ("audio", "video"):
        assert result["expected"][kind] > 0
        assert result["delivery_ratio"][kind] >= 0.99, result
    assert result["duplicates"] == {"audio": 0, "video": 0}, result
    assert result["unexpected"] == {"audio": 0, "video": 0}, result
    assert result["cpu_us_per_delivered_packet"] > 0
    assert result["server_rss_mb"] > 0
    assert result["join_ms"]["count"] == 1 and result["join_ms"]["p50"] > 0
    sfu = result["sfu_latency_ms"]
    assert sfu["count"] > 0 and sfu["no_timestamp"] == 0
    assert "mesh-4 on janus" in done.stdout
