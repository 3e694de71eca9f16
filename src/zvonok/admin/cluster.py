"""``GET /admin/cluster``: the cluster's nodes and room owners, on the admin API.

Owns ``add_cluster_route``, which adds the route to the admin app (``admin.api``) once the node's
cluster view exists (``cluster_node.ClusterView.status``: nodes with state, load, rooms,
sessions, media addresses and heartbeat age; which node owns each room; in local mode this node
alone). The same operator token as every admin route (``Authorization: Bearer``, compared in
constant time, 401 otherwise); 503 when Redis does not answer. Imports ``cluster.base`` only.
Implements RFC 6750 §2.1 (bearer header) for the operator token only.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..cluster.base import ClusterUnavailable

_bearer = HTTPBearer(auto_error=False, description="The operator token (setting admin_token).")


def add_cluster_route(
    app: FastAPI, status: Callable[[], Awaitable[dict[str, Any]]], token: str
) -> None:
    """Add ``GET /admin/cluster`` to the admin ``app``."""

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "admin token missing or wrong", headers={"WWW-Authenticate": "Bearer"}
            )

    @app.get(
        "/admin/cluster",
        dependencies=[Depends(authorized)],
        summary="Cluster nodes and which node owns each room (this node alone in local mode)",
    )
    async def cluster_status() -> dict[str, Any]:
        try:
            return await status()
        except ClusterUnavailable as exc:
            raise HTTPException(503, {"error": "cluster unavailable", "reason": str(exc)}) from None

    app.openapi_schema = None  # rebuilt with the new route on the next request for it
