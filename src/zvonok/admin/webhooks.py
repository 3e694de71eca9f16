"""Call-lifecycle webhooks: room/participant/track events POSTed as signed JSON.

Owns ``sign`` / ``verify`` (``X-Zvonok-Signature: v1=<hex>``, HMAC-SHA256 of
``"<timestamp>.<body>"`` with ``webhook_secret``) and ``Webhooks``, a ``WebhookSink`` (the
events and their room observer live in ``webhook_events``, re-exported here, so a worker
process can make events without httpx): one bounded queue and one sender task per
configured URL, started and cancelled by the app (``deliver`` sends one event at once, for the
cluster's event consumer). Enqueueing never blocks and never waits for
the network, so a slow or dead receiver never delays a call; a full queue drops the new event
(counted and logged). Each URL gets every event, in the order the events happened (so in order
per room), each retried with exponential backoff until a 2xx (at least once; receivers
de-duplicate by ``id``) or until ``max_attempts``. A 4xx other than 408/429 is final.
Imports ``metrics`` and httpx; never ``signaling``. Implements no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time

import httpx

from .. import metrics
from .webhook_events import WebhookEvent, WebhookObserver

__all__ = ["Webhooks", "WebhookEvent", "WebhookObserver", "sign", "verify"]

log = logging.getLogger("zvonok.admin.webhooks")
SIGNATURE_HEADER = "X-Zvonok-Signature"
TIMESTAMP_HEADER = "X-Zvonok-Timestamp"
EVENT_HEADER = "X-Zvonok-Event"
ID_HEADER = "X-Zvonok-Event-Id"
#: How long ``close`` lets the senders deliver what is queued before cancelling them.
DRAIN_TIMEOUT = 2.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: ``v1=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300.0,
           now: float | None = None) -> bool:  # fmt: skip
    """What a receiver does: constant-time compare, and refuse stale timestamps (replays)."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    if age > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class _Sender:
    """One URL: its bounded queue and its task."""

    def __init__(self, url: str, queue_size: int) -> None:
        self.url = url
        self.queue: asyncio.Queue[WebhookEvent] = asyncio.Queue(maxsize=queue_size)
        self.task: asyncio.Task[None] | None = None


class Webhooks:
    """Delivers events to every URL of ``webhook_urls``; owned and closed by the app."""

    def __init__(
        self,
        urls: list[str],
        *,
        secret: str | None,
        timeout: float = 5.0,
        max_attempts: int = 8,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        queue_size: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._senders = [_Sender(url, queue_size) for url in urls]
        self._secret = secret
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, transport=transport
        )
        self.observer = WebhookObserver(self)

    def start(self) -> None:
        for sender in self._senders:
            sender.task = asyncio.get_running_loop().create_task(
                self._run(sender), name=f"webhooks {sender.url}"
            )

    def queue_depth(self) -> int:
        return sum(s.queue.qsize() for s in self._senders)

    def emit(self, event: WebhookEvent) -> None:
        """Queue ``event`` for every URL; never blocks. A full queue drops it (logged)."""
        for sender in self._senders:
            try:
                sender.queue.put_nowait(event)
            except asyncio.QueueFull:
                metrics.record("webhook_deliveries", "dropped")
                log.warning(
                    "webhook queue full: %s %s dropped for %s", event.type, event.id, sender.url,
                    extra={"room": event.room},
                )  # fmt: skip

    async def deliver(self, event: WebhookEvent) -> None:
        """Deliver ``event`` to every URL now, past the queues (each URL with its retries), and
        return once each one succeeded or was given up: what a cluster's event consumer
        (``cluster.redis_events``) calls before it acknowledges the event."""
        await asyncio.gather(*(self._deliver(sender.url, event) for sender in self._senders))

    async def close(self) -> None:
        """Let queued events go out for up to ``DRAIN_TIMEOUT``, then cancel the senders."""
        tasks = [s.task for s in self._senders if s.task is not None]
        if tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), DRAIN_TIMEOUT)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._client.aclose()

    async def _drained(self) -> None:
        for sender in self._senders:
            await sender.queue.join()

    async def _run(self, sender: _Sender) -> None:
        while True:
            event = await sender.queue.get()
            try:
                await self._deliver(sender.url, event)
            finally:
                sender.queue.task_done()

    async def _deliver(self, url: str, event: WebhookEvent) -> None:
        body = event.body()
        delay = self._backoff
        for attempt in range(1, self._max_attempts + 1):
            outcome = await self._post(url, event, body)
            if outcome == "ok":
                metrics.record("webhook_deliveries", "ok")
                return
            if outcome == "final" or attempt == self._max_attempts:
                break
            metrics.record("webhook_deliveries", "retry")
            await asyncio.sleep(delay)
            delay = min(self._backoff_max, delay * 2)
        metrics.record("webhook_deliveries", "failed")
        log.warning(
            "webhook %s %s not delivered to %s", event.type, event.id, url,
            extra={"room": event.room},
        )  # fmt: skip

    async def _post(self, url: str, event: WebhookEvent, body: bytes) -> str:
        """One attempt: ``ok``, ``retry`` or ``final``."""
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: event.type,
            ID_HEADER: event.id,
            TIMESTAMP_HEADER: stamp,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, stamp, body)
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("webhook %s to %s failed: %s", event.id, url, type(exc).__name__)
            return "retry"
        if 200 <= response.status_code < 300:
            return "ok"
        log.info("webhook %s to %s: HTTP %d", event.id, url, response.status_code)
        if response.status_code in (408, 429) or response.status_code >= 500:
            return "retry"
        return "final"
