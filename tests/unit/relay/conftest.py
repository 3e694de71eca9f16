"""Fixtures of the relay tests: a real short-lived process for a ``WorkerHandle`` (``sleep``,
killed by PID at the end) and real links over ``socket.socketpair()``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from zvonok.relay.frames import Frame
from zvonok.relay.link import Link

Spawn = Callable[[], Awaitable[asyncio.subprocess.Process]]
LinkPair = Callable[[], Awaitable[tuple[Link, Link]]]


@pytest.fixture
async def sleeper() -> AsyncIterator[Spawn]:
    """Starts ``sleep 30`` processes on demand; each is killed by its PID at the end."""
    started: list[asyncio.subprocess.Process] = []

    async def spawn() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec("sleep", "30")
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()


async def _unanswered(frame: Frame) -> Any:
    raise LookupError(frame.method)


@pytest.fixture
async def idle_links() -> AsyncIterator[LinkPair]:
    """Opens pairs of started links over socketpairs that serve nothing; all closed at the end."""
    opened: list[Link] = []

    async def pair() -> tuple[Link, Link]:
        ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        links = []
        for n, end in enumerate(ends):
            reader, writer = await asyncio.open_unix_connection(sock=end)
            link = Link(
                reader, writer, name=f"idle-{n}", on_request=_unanswered, on_note=lambda f: None
            )
            link.start()
            links.append(link)
        opened.extend(links)
        return links[0], links[1]

    yield pair
    for link in opened:
        await link.close()
