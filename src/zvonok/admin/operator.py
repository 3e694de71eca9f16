"""The operator token check every admin route shares (``admin.api``, ``admin.cluster``).

Owns ``operator_auth``: a FastAPI dependency that accepts ``Authorization: Bearer <admin_token>``
(compared in constant time; separate from user JWTs) and answers 401 with
``WWW-Authenticate: Bearer`` otherwise. Implements RFC 6750 §2.1 (bearer header) and §3 (the
challenge) for the operator token only.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="The operator token (setting admin_token).")


def operator_auth(token: str) -> Callable[..., Awaitable[None]]:
    """The dependency that lets a request through only with ``token`` as its bearer."""
    expected = token.encode()

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(
                401, "admin token missing or wrong", headers={"WWW-Authenticate": "Bearer"}
            )

    return authorized
