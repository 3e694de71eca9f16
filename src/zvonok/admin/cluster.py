"""``GET /admin/cluster``: the cluster's nodes and room owners, on the admin API.

Owns ``add_cluster_route``, which adds the route to the admin app (``admin.api``) once the node's
cluster view exists (``cluster_node.ClusterView.status``: nodes with state, load, rooms,
sessions, media addresses and heartbeat age; which node owns each room; in local mode this node
alone). The same operator token as every admin route (``Authorization: Bearer``, compared in
constant time, 401 otherwise: ``admin.operator``); 503 when Redis does not answer. Imports
``cluster.base`` only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException

from ..cluster.base import ClusterUnavailable
from .operator import operator_auth


def add_cluster_route(
    app: FastAPI, status: Callable[[], Awaitable[dict[str, Any]]], token: str
) -> None:
    """Add ``GET /admin/cluster`` to the admin ``app``."""

    @app.get(
        "/admin/cluster",
        dependencies=[Depends(operator_auth(token))],
        summary="Cluster nodes and which node owns each room (this node alone in local mode)",
    )
    async def cluster_status() -> dict[str, Any]:
        try:
            return await status()
        except ClusterUnavailable as exc:
            raise HTTPException(503, {"error": "cluster unavailable", "reason": str(exc)}) from None

    app.openapi_schema = None  # rebuilt with the new route on the next request for it
