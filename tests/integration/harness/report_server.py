"""The page server: serves tests/integration/pages on http://127.0.0.1 and takes POSTed reports.

Owns ``ReportServer`` (a stdlib ``ThreadingHTTPServer`` on a free loopback port, in a daemon
thread) and the ``report_server`` fixture (session scope). Pages are loaded from this origin
because getUserMedia/WebAudio want a secure context (127.0.0.1 is one). A page started with
``report=<report_url(peer_id)>`` POSTs its JSON report there every 500 ms (the Firefox path, where
no driver can call into the page); the JSON answer carries the commands queued for that peer
(``{"commands": [{"id", "method", "args"}]}``), which the page runs and acknowledges in its next
report under ``commands``.

Imports only the standard library and pytest.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"
MAX_BODY = 4 * 1024 * 1024
MAX_QUEUED_COMMANDS = 32
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


class ReportServer:
    """Static pages + report sink + per-peer command queue; thread-safe."""

    def __init__(self, pages_dir: Path = PAGES_DIR, host: str = "127.0.0.1") -> None:
        """``host``: another address (a namespace's) for a browser that cannot reach loopback;
        that browser must then treat the origin as secure."""
        self.pages_dir = pages_dir
        self.host = host
        self._lock = threading.Lock()
        self._reports: dict[str, dict[str, Any]] = {}
        self._received_at: dict[str, float] = {}
        self._commands: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer((host, 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._httpd.server_address[1]
        return port

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def page_url(self, page: str = "peer.html", **params: str) -> str:
        query = urlencode(params)
        return f"{self.origin}/pages/{page}" + (f"?{query}" if query else "")

    def report_url(self, peer_id: str) -> str:
        return f"{self.origin}/report/{peer_id}"

    def latest(self, peer_id: str) -> dict[str, Any] | None:
        """The last report POSTed by ``peer_id`` (None before the first)."""
        with self._lock:
            return self._reports.get(peer_id)

    def age(self, peer_id: str) -> float | None:
        """Seconds since ``peer_id`` last POSTed."""
        with self._lock:
            at = self._received_at.get(peer_id)
        return None if at is None else time.monotonic() - at

    def push_command(self, peer_id: str, method: str, *args: Any) -> str:
        """Queue ``window.peer[method](...args)`` for the page; returns the command id."""
        command_id = f"c{next(self._ids)}"
        with self._lock:
            queue = self._commands.setdefault(peer_id, [])
            if len(queue) >= MAX_QUEUED_COMMANDS:
                raise RuntimeError(f"{peer_id}: {len(queue)} commands already queued")
            queue.append({"id": command_id, "method": method, "args": list(args)})
        return command_id

    def command_result(self, peer_id: str, command_id: str) -> dict[str, Any] | None:
        report = self.latest(peer_id) or {}
        result = (report.get("commands") or {}).get(command_id)
        return result if isinstance(result, dict) else None

    def _store(self, peer_id: str, body: bytes) -> list[dict[str, Any]]:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("report is not a JSON object")
        with self._lock:
            self._reports[peer_id] = data
            self._received_at[peer_id] = time.monotonic()
            return self._commands.pop(peer_id, [])

    def _page(self, name: str) -> tuple[bytes, str] | None:
        path = (self.pages_dir / name).resolve()
        if path.parent != self.pages_dir.resolve() or not path.is_file():
            return None
        return path.read_bytes(), CONTENT_TYPES.get(path.suffix, "application/octet-stream")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                found = (
                    server._page(path.removeprefix("/pages/"))
                    if path.startswith("/pages/")
                    else None
                )
                if found is None:
                    self._reply(404, b"not found", "text/plain")
                else:
                    self._reply(200, *found)

            def do_POST(self) -> None:
                path = self.path.partition("?")[0]
                length = int(self.headers.get("Content-Length") or "0")
                if not path.startswith("/report/") or not 0 < length <= MAX_BODY:
                    self._reply(400, b"bad report", "text/plain")
                    return
                try:
                    commands = server._store(path.removeprefix("/report/"), self.rfile.read(length))
                except ValueError as exc:
                    self._reply(400, str(exc).encode(), "text/plain")
                    return
                self._reply(200, json.dumps({"commands": commands}).encode(), "application/json")

        return Handler

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture(scope="session")
def report_server() -> Iterator[ReportServer]:
    """One page/report server for the whole test session."""
    server = ReportServer()
    try:
        yield server
    finally:
        server.close()
