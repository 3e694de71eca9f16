"""The ``http`` membership backend: ask the messenger's own API, with a short bounded cache.

Owns ``HttpMembershipStore`` and its LRU/TTL answer cache. Imports only ``auth.tokens``
(``Grants``), ``config``, ``errors`` and ``ids``; never ``signaling``, ``rooms``, ``media`` or
``cluster``.

Contract with the messenger (HTTP/1.1, RFC 9110): ``POST <membership_http_url>`` with the JSON body
``{"kind": "chat"|"group", "roomId": "<id>", "userId": "<sub>"}`` and, if configured,
``Authorization: Bearer <membership_http_token>`` (RFC 6750 §2.1). ``200 {"member": true|false}``
answers; ``403``/``404`` mean "not a member"; any other status, a malformed body, a timeout or a
connection error raises ``StoreUnavailable``: a failure never lets anyone in. Each failure is one
log line naming the URL (without credentials or query), the status and reason and a short body
excerpt, or the kind of timeout or connection error; user and room ids are replaced by their names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import NoReturn

import httpx

from ..auth.tokens import Grants
from ..config import Settings
from ..diagnostics import excerpt, safe_url, scrub
from ..errors import StoreUnavailable
from ..ids import RoomKey

log = logging.getLogger("zvonok.store.http")

#: How many answers the cache keeps; the least recently used one is dropped first.
DEFAULT_CACHE_SIZE = 10_000
#: Statuses that mean "not a member" (the messenger may hide whether the room exists).
NOT_MEMBER_STATUSES = frozenset({403, 404})
#: How much of an unexpected response body a log line quotes.
BODY_EXCERPT_CHARS = 160

_Key = tuple[str, str, str]


class AnswerCache:
    """A bounded LRU of ``key → (expires_at, member)``; ``ttl <= 0`` disables it."""

    def __init__(self, ttl: float, size: int = DEFAULT_CACHE_SIZE) -> None:
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[_Key, tuple[float, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: _Key) -> bool | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, member = entry
        if expires_at <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return member

    def put(self, key: _Key, member: bool) -> None:
        if self._ttl <= 0 or self._size <= 0:
            return
        self._entries[key] = (time.monotonic() + self._ttl, member)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class HttpMembershipStore:
    """Asks ``url`` whether a user is a member; caches positive and negative answers."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 2.0,
        cache_ttl: float = 10.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._url = url
        self._shown_url = safe_url(url)
        self._timeout = timeout
        self._client = httpx.AsyncClient(timeout=timeout, headers=headers, follow_redirects=False)
        self.cache = AnswerCache(cache_ttl, cache_size)

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpMembershipStore:
        """Build from ``membership_http_*``; ``ValueError`` if no URL is configured."""
        if not settings.membership_http_url:
            raise ValueError("membership_backend 'http' needs membership_http_url")
        return cls(
            settings.membership_http_url,
            token=settings.membership_http_token,
            timeout=settings.membership_http_timeout,
            cache_ttl=settings.membership_http_cache_ttl,
        )

    async def is_member(self, grants: Grants, room: RoomKey) -> bool:
        key = (room.kind.value, room.id, str(grants.user_id))
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        member = await self._ask(key)
        self.cache.put(key, member)
        return member

    async def close(self) -> None:
        await self._client.aclose()

    async def _ask(self, key: _Key) -> bool:
        kind, room_id, user_id = key
        body = {"kind": kind, "roomId": room_id, "userId": user_id}
        values = {"room_id": room_id, "user_id": user_id}
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(self._url, json=body)
                await response.aread()
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            self._fail(scrub(self._describe(exc), values))
        if response.status_code in NOT_MEMBER_STATUSES:
            return False
        if response.status_code != 200:
            self._fail(f"answered {_status(response)}{_body(response, values)}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        member = answer.get("member") if isinstance(answer, dict) else None
        if not isinstance(member, bool):
            self._fail(f"answered without a boolean 'member'{_body(response, values)}")
        return member

    def _fail(self, problem: str) -> NoReturn:
        message = f"membership callback failed: POST {self._shown_url} {problem}"
        log.warning("%s", message)
        raise StoreUnavailable(message)

    def _describe(self, exc: BaseException) -> str:
        """A timeout or transport error, by kind (``httpx.ConnectTimeout``, ``ConnectError``...)."""
        name = type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out after {self._timeout:g} s ({name})"
        if isinstance(exc, TimeoutError):  # our bound on the whole request and its body
            return f"timed out after {self._timeout:g} s (no complete answer)"
        cause = exc.__cause__
        text = excerpt(str(exc) or (str(cause) if cause is not None else ""), BODY_EXCERPT_CHARS)
        if isinstance(exc, httpx.ConnectError):
            return f"could not connect ({name}: {text})"
        return f"failed ({name}: {text})" if text else f"failed ({name})"


def _status(response: httpx.Response) -> str:
    status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    location = response.headers.get("location")
    if response.is_redirect and location:
        status += f" (a redirect to {safe_url(location)}; redirects are not followed)"
    return status


def _body(response: httpx.Response, values: dict[str, str]) -> str:
    """``; body: <excerpt>`` with the ids replaced, or nothing for an empty body."""
    text = excerpt(response.content.decode("utf-8", "replace"), BODY_EXCERPT_CHARS)
    return f"; body: {scrub(text, values)}" if text else ""
