"""Zero configuration in a network namespace that has only loopback.

The server is started without ``--announce-ip`` inside a fresh network namespace (``unshare -n``,
loopback up, nothing else), and two aiortc peers call each other through it. This proves that
the announced candidates are discovered from the interfaces that exist, loopback included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.timeout(180)
def test_call_in_loopback_only_namespace() -> None:
    unshare = shutil.which("unshare")
    ip = shutil.which("ip")
    assert unshare and ip, "unshare and ip (util-linux, iproute2) are needed for this test"
    flags = ["-n"] if os.geteuid() == 0 else ["-Urn"]
    inner = (
        f"{ip} link set lo up && "
        f"{sys.executable} -m pytest -q -p no:cacheprovider "
        "tests/integration/test_media.py::test_two_aiortc_peers_in_a_private_chat"
    )
    result = subprocess.run(
        [unshare, *flags, "sh", "-c", inner],
        cwd=ROOT,
        env={**os.environ, "ZVONOK_TEST_ZERO_CONFIG": "1"},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "1 passed" in output, output[-4000:]
