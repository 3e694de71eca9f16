"""Two ``zvonok serve`` nodes started at the same moment on one fresh data dir both come up and
both answer membership from the one embedded database (issue 14: before, one could die with
``database failed to create the schema``). Several rounds, each on a new data dir; local mode
(no Redis needed: the store is what is shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness.server import ServerFactory, ZvonokServer
from .test_signaling import client

pytestmark = pytest.mark.timeout(180)

ROUNDS = 4


async def test_two_nodes_start_at_once_on_one_data_dir(
    zvonok_server_factory: ServerFactory, tmp_path: Path
) -> None:
    for round_ in range(ROUNDS):
        data_dir = tmp_path / f"shared{round_}"
        nodes = [ZvonokServer(data_dir, env={"ZVONOK_WORKERS": "1"}) for _ in range(2)]
        zvonok_server_factory.servers.extend(nodes)
        for node in nodes:
            node.wait_ready()
        group = nodes[0].create_group(["alice", "bob"])
        for node, user in zip(nodes, ("alice", "bob"), strict=True):
            async with client(node, user, group, kind="group") as member:
                joined = await member.join()
                assert joined["payload"]["userId"] == user
        for node in nodes:  # the next round's pair gets the ports and the CPU
            node.stop()
