"""Fixtures of the real-client harness, for every test under tests/integration.

``zvonok_server`` / ``zvonok_server_factory`` (harness/server.py), ``report_server``
(harness/report_server.py), ``chromium_peers`` (harness/chromium.py), ``firefox_peers``
(harness/firefox.py) and ``aiortc_peers`` (harness/aiortc_peer.py). Browser tests carry the
``browser`` marker. Imports only the harness.
"""

from __future__ import annotations

from .harness.aiortc_peer import aiortc_peers
from .harness.chromium import chromium_peers
from .harness.firefox import firefox_peers
from .harness.report_server import report_server
from .harness.server import zvonok_server, zvonok_server_factory

__all__ = [
    "aiortc_peers",
    "chromium_peers",
    "firefox_peers",
    "report_server",
    "zvonok_server",
    "zvonok_server_factory",
]
