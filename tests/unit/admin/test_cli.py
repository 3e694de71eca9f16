"""``zvonok rooms`` against a node with workers: each room names its worker, a silent worker is
reported (a real HTTP server on loopback answers what a front's admin API does)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from zvonok.admin.cli import rooms

LISTING: dict[str, Any] = {
    "rooms": [
        {"room": "chat:1", "kind": "chat", "id": "1", "tracks": 0, "participants": [],
         "worker": "w0"},
    ],
    "sessions": 0,
    "draining": False,
    "unavailableWorkers": ["w1"],
}  # fmt: skip


class Front(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps(LISTING).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def front_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_rooms_names_the_worker_and_the_silent_ones(front_url: str) -> None:
    result = CliRunner().invoke(rooms, ["--url", front_url, "--token", "t"])
    assert result.exit_code == 0, result.output
    assert "chat:1  sessions=0 tracks=0 worker=w0" in result.stdout
    assert "warning: worker w1 did not answer; its rooms are missing" in result.stderr
