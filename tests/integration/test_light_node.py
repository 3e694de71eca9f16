"""``zvonok serve`` parses its settings in the CLI and then serves from a lighter process image
(issue 17): the same PID runs ``python -m zvonok serve --settings-fd N -- <flags>`` (so
``pgrep -f "zvonok serve"`` still finds it), the settings handover is closed, and no settings
parser (pydantic) is mapped into the serving process. Every other integration test
starts its servers the same way, so they all go through the handover too."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from tests.integration.harness.server import ZvonokServer


def test_serve_hands_over_to_a_serving_image_without_the_parsers(
    zvonok_server: ZvonokServer,
) -> None:
    pid = zvonok_server.process.pid  # Popen's own child: execv kept it
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"zvonok serve --settings-fd" in b" ".join(argv), argv
    assert argv[argv.index(b"--") + 1 :][:2] == [b"--host", b"127.0.0.1"], argv  # for ps
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "pydantic" not in maps
    assert "watchfiles" not in maps
    fds = Path(f"/proc/{pid}/fd")
    targets = [os.readlink(fds / fd) for fd in os.listdir(fds)]
    assert not [target for target in targets if "zvonok-settings" in target], targets
    with urllib.request.urlopen(zvonok_server.http_url + "/healthz", timeout=5) as resp:
        assert resp.status == 200
    # the logs still reach the same output (the harness reads the server's stdout)
    assert zvonok_server.logs(), "no log line from the serving image"
    rss = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if "VmRSS" in line
    )
    print(f"empty node: {rss}")  # measured for real by `zvonok bench` (docs/benchmarks.md)
