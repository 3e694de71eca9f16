"""Reading a call WebSocket in tests: the next message of one type, within a bounded time.

Shared by the edge tests (test_edge_http.py, test_edge_limits.py). Imports nothing of zvonok.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


async def recv_until(ws: Any, msg_type: str, wait: float = 5.0) -> dict[str, Any]:
    """The next message of ``msg_type`` on a ``websockets`` connection, within ``wait`` s; fails
    naming every message (and error code) seen before the deadline."""
    deadline = time.monotonic() + wait
    seen: list[str] = []
    for _ in range(10_000):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            break
        seen.append(f"{msg['type']}:{(msg.get('payload') or {}).get('code', '')}")
        if msg["type"] == msg_type:
            return msg
    raise AssertionError(f"no {msg_type!r} within {wait} s; saw {seen}")
