"""A NAT-like UDP relay in front of the server's media port, whose link can be cut.

Clients reach the server's announced address (``listen``); each client address gets its own
upstream socket towards the real media port, so the server sees one address per client, as behind
a NAT. ``cut(seconds)`` drops every datagram both ways for a while: the network outage of a test.
Imports nothing from zvonok.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, client: tuple[str, int]) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.relay.is_cut() and self.relay.front is not None:
            self.relay.front.sendto(data, self.client)


class UdpRelay(asyncio.DatagramProtocol):
    """``listen`` → ``target``, one upstream socket per client; bounded to 64 clients."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self.front: asyncio.DatagramTransport | None = None
        self._upstreams: dict[tuple[str, int], _Upstream] = {}
        self._cut_until = 0.0
        self.dropped = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=self.listen)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.front = cast(asyncio.DatagramTransport, transport)

    def cut(self, seconds: float) -> None:
        self._cut_until = time.monotonic() + seconds

    def is_cut(self) -> bool:
        cut = time.monotonic() < self._cut_until
        self.dropped += cut
        return cut

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.is_cut():
            return
        upstream = self._upstreams.get(addr)
        if upstream is None:
            if len(self._upstreams) >= 64:
                return
            upstream = _Upstream(self, addr)
            self._upstreams[addr] = upstream
            loop = asyncio.get_running_loop()
            loop.create_task(
                loop.create_datagram_endpoint(lambda: upstream, local_addr=("127.0.0.1", 0))
            )
            return  # the first datagram of a new client is dropped; ICE retransmits
        if upstream.transport is not None:
            upstream.transport.sendto(data, self.target)

    def close(self) -> None:
        for upstream in self._upstreams.values():
            if upstream.transport is not None:
                upstream.transport.close()
        if self.front is not None:
            self.front.close()
