"""A peer node in its own process, for the SignalBus tests that kill it (``kill -9``: the kernel
closes its sockets) or stop it (``SIGSTOP``: a stalled event loop): a real ``RedisCluster``
(heartbeats, reconcile) and a ``RedisSignalBus`` on it that answers every request with
``{"from": <node>, "n": <n>}``. Prints ``ready <boot_id>`` once it heartbeats and is subscribed,
then runs until killed.

Usage: ``python bus_peer.py <redis url> <node id> <timing>``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from zvonok.cluster.bus import RedisSignalBus
from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.node import RedisCluster
from zvonok.relay.frames import Frame


async def main(url: str, node_id: str, timing: float) -> None:
    cluster = RedisCluster(connect(RedisTarget(url=url)), node_id=node_id, timing=timing)
    await cluster.start()

    async def on_request(peer: str, frame: Frame) -> Any:
        return {"from": node_id, "n": frame.params.get("n")}

    bus = RedisSignalBus(
        cluster.client,
        node_id,
        cluster.registry.boot_id,
        cluster.health,
        keys=cluster.keys,
        on_request=on_request,
        on_note=lambda peer, frame: None,
        peers=cluster.registry,
        peer_settle=cluster.registry.ttl,
        timing=timing,
    )
    await bus.start()
    print("ready", cluster.registry.boot_id, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await bus.close()
        await cluster.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
