"""``GET /admin/cluster`` (``admin.cluster``): the operator token (``admin.operator``) and 503."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from zvonok.admin.cluster import add_cluster_route
from zvonok.cluster.base import ClusterUnavailable

TOKEN = "operator-secret-token"


async def get(app: FastAPI, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        return await client.get("/admin/cluster", headers=headers)


async def test_the_route_needs_the_operator_token() -> None:
    async def status() -> dict[str, Any]:
        return {"node": "n1", "nodes": [], "rooms": []}

    app = FastAPI()
    add_cluster_route(app, status, TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        refused = await get(app, headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
    ok = await get(app, {"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["node"] == "n1"


async def test_redis_unavailable_is_503() -> None:
    async def status() -> dict[str, Any]:
        raise ClusterUnavailable("redis unreachable")

    app = FastAPI()
    add_cluster_route(app, status, TOKEN)
    answer = await get(app, {"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 503
    assert answer.json()["detail"]["error"] == "cluster unavailable"
