"""Fixtures of the real-client harness, for every test under tests/integration.

``zvonok_server`` / ``zvonok_server_factory`` (harness/server.py), ``report_server``
(harness/report_server.py), ``chromium_peers`` (harness/chromium.py), ``firefox_peers``
(harness/firefox.py) and ``aiortc_peers`` (harness/aiortc_peer.py). Browser tests carry the
``browser`` marker. Imports only the harness. Every fixture that starts a server or a client
fails the test at teardown on an error it did not expect; ``@pytest.mark.allow_errors`` (registered
here, see harness/errors.py) names the errors that are the point of a test.
"""

from __future__ import annotations

import pytest

from .harness.aiortc_peer import aiortc_peers
from .harness.chromium import chromium_peers
from .harness.errors import MARKER_HELP
from .harness.firefox import firefox_peers
from .harness.report_server import report_server
from .harness.server import zvonok_server, zvonok_server_factory


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)


__all__ = [
    "aiortc_peers",
    "chromium_peers",
    "firefox_peers",
    "report_server",
    "zvonok_server",
    "zvonok_server_factory",
]
