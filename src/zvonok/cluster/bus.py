"""``RedisSignalBus``: the cluster's SignalBus, relay ``Frame`` links between nodes over Redis
pub/sub.

Shared design ``cluster.md`` §2 (``SignalBus``), §3 "SignalBus frames" and §4 ("Redis outage":
relayed frames queue while ``degraded``; "Reconcile": resubscribe and retransmit), as issue 14
refines them. A node-to-node link is a ``relay.link.Link`` over a lossy transport, so it has
exactly the ``request``/``notify``/ack API of the front↔worker link: frames carry ``seq``,
cumulative ``ack`` and a ``relay`` id (many sessions share one link); a frame ahead of sequence
is dropped, duplicates are dropped, unacknowledged frames are resent every 1 s; a link breaks
after 20 s without ack progress while frames are unacknowledged (paused while ``degraded``).

Owns the subscription to this node's channel ``zv:sig:<node>`` and its tasks (listener, sender,
self-probe, peer check), every peer link and its tasks; ``close()`` ends them all.

**Messages.** Each pub/sub message is a small envelope and one frame body, ``\\n``-separated::

    kind        f (frame), h (hello: "your frames reach no link of mine"), p (probe)
    sender      the sending node's id
    link        the sender's link id, ``<boot_id>.<n>`` (a new one per link, so per process start)
    target      the receiver's link id as the sender knows it, or empty before it heard from it
    body        the frame (``relay.frames``, without its length prefix); empty for h and p

Both nodes of a pair hold one link each; frames from peer P go to this node's link for P
(created on P's first frame). A frame whose sender link differs from the one this node's link
heard before means the peer restarted (new ``boot_id``) or replaced its link: the old link is
closed (``on_link_closed``) and a fresh one takes the frame. A frame addressed to a link of this
node that is gone is dropped and answered with a hello (at most one per peer per resend
interval), and the sender closes its link; so a broken link breaks on both sides.

**Probes.** Every 5 s the node publishes a probe to its own channel and resubscribes when none
arrived for 10 s (subscribers can starve silently after a failover).

**Peer checks** (issue 14 "Node killed"; ``cluster.peers``). Every 0.5 s the node sights every
peer it has a link to in one Redis round trip (``Peers.sight``: each peer's node key, heartbeat
age and the subscribers of its channel) and breaks the link (``peer lost``; the edge's relays
there end as ``node-lost``) of a peer that is dead: no subscriber on its channel on two checks
in a row and no heartbeat for 1.5 heartbeat intervals (3 s), confirmed atomically by Redis
(``Peers.reap``, which also removes the dead node's key so its leases stop counting for every
node at once); or its node key gone, or naming another ``boot_id`` than its link heard, on two
checks in a row. A killed process's subscription vanishes with its socket, so its links break
1-3 s after the kill (the age of its last heartbeat then; a check is scheduled for the moment a
silent peer's heartbeat turns stale), instead of 5-8 s when only the key's 6 s TTL told. A live
peer that is resubscribing still heartbeats, one whose heartbeat is late is still subscribed.
Checks count only while this node's Redis health is ``ok``, and only once it has been ``ok`` for
``peer_settle`` (the node TTL): after an outage (Redis stopped longer than the TTL, or restarted
empty) every node key is gone and every subscription may be, until that node's next heartbeat
and resubscription, which its own breaker may hold back a while longer than ours; a peer
missing then is no lost node.

**Sending** never blocks and never raises for Redis trouble: a frame is recorded by its link
(until acknowledged), then put on one bounded send queue that one task drains in batches. While
Redis is healthy the batches go out pipelined on one connection (``cluster.publisher``): a batch
is written while the replies of earlier ones are still on their way, in order. While it is
``degraded`` they go one at a time through the ``RedisClusterHealth`` breaker (its probe every
500 ms). A request, an answer, an ack or a note sent with ``flush`` (a relayed session's
``joined``) does not wait for that task: ``flush`` publishes it, with everything queued before
it, in the pass that sent it, when the publisher can write without waiting and no batch of the
task's is still unwritten (order kept); otherwise the task sends it as any other. A frame
dropped on the way (queue full, Redis down, a broken pipe) goes out again with
the link's next resend. ``timings`` (``cluster.timing``) holds how long messages waited on that
queue (``send_wait``) and how long each batch took, written to its last reply (``publish``).

**Bounds.** Messages: a frame's own ``MAX_FRAME`` (a larger message is dropped unread). Links:
``MAX_LINKS`` peers (frames from more are dropped; ``link()`` raises ``LinkClosed``). Per link,
``MAX_LINK_UNACKED`` frames or ``MAX_LINK_UNACKED_BYTES`` bytes unacknowledged (a per-link cap,
not the design's 256 per relay: one link carries every relay to a peer; beyond it the link
closes and its relays end as ``node-lost``). Send queue: ``MAX_SEND_QUEUE`` messages. Every
interval is multiplied by ``timing`` (tests: 0.25).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ..relay.frames import HEADER, MAX_FRAME, Frame
from ..relay.link import PROGRESS_TIMEOUT, RESEND_INTERVAL, Link, LinkClosed
from .base import ClusterUnavailable
from .health import CALL_TIMEOUT, DEGRADED, OK, RedisClusterHealth
from .keys import Keys
from .peers import PEER_CHECK_INTERVAL, Peers, PeerWatch, Sighting
from .publisher import PipelinedPublisher
from .timing import BUS_LEGS, LegTimes

log = logging.getLogger(__name__)

#: §3: a node probes its own channel this often...
PROBE_INTERVAL: Final = 5.0
#: ...and resubscribes when no probe came back for this long.
PROBE_TIMEOUT: Final = 10.0
#: Wait before subscribing again after a failed subscription.
RESUBSCRIBE_DELAY: Final = 0.5
#: Peer links at most (a cluster has a few dozen nodes).
MAX_LINKS: Final = 256
#: Unacknowledged frames / bytes per link at most (beyond: the link closes).
MAX_LINK_UNACKED: Final = 16_384
MAX_LINK_UNACKED_BYTES: Final = 8 * 1024 * 1024
#: Messages waiting for the sender task at most (beyond: dropped, resent from the link record).
MAX_SEND_QUEUE: Final = 8_192
#: Messages per pipelined publish.
SEND_BATCH: Final = 256
#: Envelope bytes allowed on top of a frame body.
MAX_ENVELOPE: Final = 1_024
#: A node id must be short and printable (it is a channel name and an envelope line).
MAX_NODE_ID: Final = 200

FRAME = b"f"
HELLO = b"h"
PROBE = b"p"

RequestHandler = Callable[[str, Frame], Awaitable[Any]]
NoteHandler = Callable[[str, Frame], None]


def _check_node_id(node_id: str) -> str:
    if not node_id or len(node_id) > MAX_NODE_ID or not node_id.isprintable():
        raise ValueError(f"node id {node_id!r} must be 1-{MAX_NODE_ID} printable characters")
    return node_id


class _PeerTransport:
    """The lossy transport of one peer link: frames go to the bus's send queue; frames come
    from the bus's listener (``Link.feed``)."""

    lossy = True

    def __init__(self, bus: RedisSignalBus, peer: str, local_id: str) -> None:
        self._bus = bus
        self.peer = peer
        #: This link's id (``<boot_id>.<n>``) and the peer's link's, once heard.
        self.local_id = local_id
        self.peer_link = ""
        self._closed = asyncio.Event()

    @property
    def peer_boot(self) -> str:
        """The ``boot_id`` of the peer's link, once heard ("" before)."""
        return self.peer_link.split(".")[0]

    def write(self, data: bytes) -> str | None:
        self._bus._send_frame(self, data[HEADER.size :])
        return None

    def flush(self) -> str | None:
        self._bus.flush()
        return None

    async def receive(self, link: Link) -> None:
        await self._closed.wait()  # the listener pushes frames

    def close(self) -> None:
        self._closed.set()

    async def wait_closed(self) -> None:
        return None


class RedisSignalBus:
    """One node's SignalBus over Redis pub/sub: ``start()``, then ``link(peer)``; ``close()``."""

    def __init__(
        self,
        client: Redis,
        node_id: str,
        boot_id: str,
        health: RedisClusterHealth,
        *,
        keys: Keys,
        on_request: RequestHandler,
        on_note: NoteHandler,
        on_link_closed: Callable[[str, Link], None] | None = None,
        peers: Peers | None = None,
        peer_settle: float = 0.0,
        timing: float = 1.0,
    ) -> None:
        self.node_id = _check_node_id(node_id)
        if not boot_id or not boot_id.isalnum():
            raise ValueError(f"boot id {boot_id!r} must be alphanumeric")
        self.boot_id = boot_id
        self._client = client
        self._health = health
        self._keys = keys
        self._on_request = on_request
        self._on_note = on_note
        self._on_link_closed = on_link_closed
        self._peers = peers
        self._peer_settle = peer_settle
        self._timing = timing
        self._channel = keys.signal(node_id)
        self._links: dict[str, tuple[Link, _PeerTransport]] = {}
        self._link_count = 0
        self._hello_at: dict[str, float] = {}
        #: Messages to publish: (channel, message, when queued: ``time.perf_counter()``).
        self._queue: asyncio.Queue[tuple[str, bytes, float]] = asyncio.Queue(MAX_SEND_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._probe_at = 0.0
        self._first_attempt = asyncio.Event()
        self._pubsub: PubSub | None = None
        #: Set while the subscription is up.
        self.subscribed = asyncio.Event()
        #: Counters, for metrics and tests.
        self.published = 0
        self.publish_failures = 0
        self.send_dropped = 0
        self.messages_in = 0
        self.messages_dropped = 0
        #: Link frames published (resends included) and fed to a link.
        self.frames_out = 0
        self.frames_in = 0
        self.hellos_sent = 0
        self.resubscribes = 0
        self.links_opened = 0
        self.links_broken: dict[str, int] = {}
        #: Batches published at once by ``flush`` (the others by the sender task).
        self.flushed = 0
        self.timings = LegTimes(BUS_LEGS)
        self._publisher = PipelinedPublisher(
            client, health, on_done=self._published, on_failed=self._publish_failed
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Subscribe to ``zv:sig:<node_id>`` and start the tasks; returns after the first
        subscription attempt (Redis down is not fatal: the listener keeps trying)."""
        loop = asyncio.get_running_loop()
        for run, name in (
            (self._listen, "listen"),
            (self._send_loop, "send"),
            (self._probe_loop, "probe"),
            (self._check_peers, "peers"),
        ):
            self._tasks.append(loop.create_task(run(), name=f"signal-bus-{name}"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), 2 * CALL_TIMEOUT)

    async def close(self) -> None:
        """Close every link (each reported to ``on_link_closed``), tell the peers (best
        effort), unsubscribe and cancel every task."""
        self._closing = True
        byes = [
            (transport.peer, self._envelope(HELLO, "", transport.peer_link))
            for _, transport in self._links.values()
            if transport.peer_link
        ]
        for link, _ in list(self._links.values()):
            await link.close()
        if byes and self._health.status != DEGRADED:
            with contextlib.suppress(ClusterUnavailable):
                await self._publish([(self._keys.signal(peer), msg) for peer, msg in byes])
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._publisher.close()

    # ------------------------------------------------------------------ links
    def link(self, peer: str) -> Link:
        """THE link to ``peer`` (made on demand; a closed one is replaced by a new one)."""
        if peer == self.node_id:
            raise ValueError("a node has no link to itself")
        _check_node_id(peer)
        held = self._links.get(peer)
        if held is not None and not held[0].closed.is_set():
            return held[0]
        if self._closing:
            raise LinkClosed("the signal bus is closed")
        opened = self._open(peer)
        if opened is None:
            raise LinkClosed(f"signal bus: {MAX_LINKS} peer links already")
        return opened[0]

    def links(self) -> dict[str, Link]:
        """The open links, by peer."""
        return {peer: link for peer, (link, _) in self._links.items()}

    def _open(self, peer: str) -> tuple[Link, _PeerTransport] | None:
        held = self._links.get(peer)
        if held is not None and not held[0].closed.is_set():
            return held
        if len(self._links) >= MAX_LINKS:
            return None
        self._link_count += 1
        transport = _PeerTransport(self, peer, f"{self.boot_id}.{self._link_count}")

        async def on_request(frame: Frame) -> Any:
            return await self._on_request(peer, frame)

        def on_note(frame: Frame) -> None:
            self._on_note(peer, frame)

        link = Link(
            transport=transport,
            name=f"bus-{peer}",
            on_request=on_request,
            on_note=on_note,
            on_close=lambda closed: self._closed(peer, closed),
            max_unacked=MAX_LINK_UNACKED,
            max_unacked_bytes=MAX_LINK_UNACKED_BYTES,
            resend_interval=RESEND_INTERVAL * self._timing,
            progress_timeout=PROGRESS_TIMEOUT * self._timing,
            paused=self._degraded,
        )
        self._links[peer] = (link, transport)
        self.links_opened += 1
        link.start()
        return link, transport

    def _closed(self, peer: str, link: Link) -> None:
        held = self._links.get(peer)
        if held is not None and held[0] is link:
            del self._links[peer]
        reason = link.close_reason.split(":")[0]
        self.links_broken[reason] = self.links_broken.get(reason, 0) + 1
        if reason != "closed":
            log.warning("signal bus: link to %s closed (%s)", peer, link.close_reason)
        if self._on_link_closed is not None:
            try:
                self._on_link_closed(peer, link)
            except Exception:
                log.exception("signal bus: on_link_closed(%s) failed", peer)

    def _degraded(self) -> bool:
        return self._health.status == DEGRADED

    # ------------------------------------------------------------------ sending
    def _envelope(self, kind: bytes, link_id: str, target: str, body: bytes = b"") -> bytes:
        return b"\n".join((kind, self.node_id.encode(), link_id.encode(), target.encode(), body))

    def _send_frame(self, transport: _PeerTransport, body: bytes) -> None:
        message = self._envelope(FRAME, transport.local_id, transport.peer_link, body)
        self.frames_out += 1
        self._enqueue(self._keys.signal(transport.peer), message)

    def _enqueue(self, channel: str, message: bytes) -> None:
        try:
            self._queue.put_nowait((channel, message, time.perf_counter()))
        except asyncio.QueueFull:
            self.send_dropped += 1  # a frame goes out again with its link's next resend

    @property
    def queued(self) -> int:
        """Messages waiting on the send queue."""
        return self._queue.qsize()

    def flush(self) -> None:
        """Publish what waits on the send queue now, in this pass of the event loop, if that
        keeps the order (``PipelinedPublisher.writable``: no batch of the sender task is still
        unwritten) and Redis is not ``degraded``; else the sender task publishes it next."""
        if self._queue.empty() or self._health.status == DEGRADED:
            return
        if not self._publisher.writable:
            return
        queued: list[tuple[str, bytes, float]] = []
        while len(queued) < SEND_BATCH and not self._queue.empty():
            queued.append(self._queue.get_nowait())
        self.timings.observe("send_wait", time.perf_counter() - queued[0][2])
        self._publisher.write([(channel, message) for channel, message, _ in queued])
        self.flushed += 1

    async def _publish(self, batch: list[tuple[str, bytes]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for channel, message in batch:
            pipe.publish(channel, message)
        await self._health.call(pipe.execute)

    def _published(self, count: int, took: float) -> None:
        self.timings.observe("publish", took)
        self.published += count

    def _publish_failed(self, count: int) -> None:
        self.publish_failures += count  # resent from the links' records

    async def _send_loop(self) -> None:
        while True:
            queued = [await self._queue.get()]
            while len(queued) < SEND_BATCH and not self._queue.empty():
                queued.append(self._queue.get_nowait())
            started = time.perf_counter()
            self.timings.observe("send_wait", started - queued[0][2])  # the oldest waited most
            batch = [(channel, message) for channel, message, _ in queued]
            if self._health.status != DEGRADED:
                try:
                    await self._publisher.send(batch)  # its callbacks count the batch
                except ClusterUnavailable:
                    pass
                except Exception:
                    log.exception("signal bus: publishing failed")
                continue
            await self._publisher.reset()  # through the breaker: nothing of the pipe in flight
            try:
                await self._publish(batch)
                self._published(len(batch), time.perf_counter() - started)
            except ClusterUnavailable:
                self.publish_failures += len(batch)  # resent from the links' records
            except Exception:
                self.publish_failures += len(batch)
                log.exception("signal bus: publishing failed")

    async def _probe_loop(self) -> None:
        while True:
            self._enqueue(self._channel, self._envelope(PROBE, self.boot_id, ""))
            await asyncio.sleep(PROBE_INTERVAL * self._timing)

    # ------------------------------------------------------------------ receiving
    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = PROBE_TIMEOUT * self._timing
        while True:
            pubsub = self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self._channel), CALL_TIMEOUT)
                self._probe_at = loop.time()
                self.subscribed.set()
                self._first_attempt.set()
                while loop.time() - self._probe_at <= timeout:
                    message = await pubsub.get_message(timeout=min(0.5, timeout / 4))
                    if message is not None and message.get("type") == "message":
                        self._on_message(message["data"])
                log.warning("signal bus: no probe for %.1f s; resubscribing", timeout)
                self.resubscribes += 1
            except (RedisError, OSError, TimeoutError, UnicodeDecodeError) as exc:
                log.info("signal bus: subscription lost (%s)", type(exc).__name__)
                self._first_attempt.set()
                await asyncio.sleep(RESUBSCRIBE_DELAY * self._timing)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await asyncio.wait_for(pubsub.aclose(), CALL_TIMEOUT)

    def _on_message(self, data: str | bytes) -> None:
        self.messages_in += 1
        raw = data.encode() if isinstance(data, str) else data
        parts = raw.split(b"\n", 4) if len(raw) <= MAX_FRAME + MAX_ENVELOPE else []
        if len(parts) != 5:
            self.messages_dropped += 1
            return
        kind, body = parts[0], parts[4]
        try:
            sender, link_id, target = (part.decode() for part in parts[1:4])
        except UnicodeDecodeError:
            self.messages_dropped += 1
            return
        if sender == self.node_id:
            if kind == PROBE and link_id == self.boot_id:
                self._probe_at = asyncio.get_running_loop().time()
            return
        if kind == HELLO:
            self._on_hello(sender, link_id, target)
        elif kind == FRAME and link_id:
            self._on_frame(sender, link_id, target, body)
        else:
            self.messages_dropped += 1

    def _on_frame(self, peer: str, link_id: str, target: str, body: bytes) -> None:
        held = self._links.get(peer)
        if held is not None and held[1].peer_link and held[1].peer_link != link_id:
            restarted = held[1].peer_link.split(".")[0] != link_id.split(".")[0]
            held[0].fail("peer restarted" if restarted else "peer opened a new link")
            held = self._links.get(peer)  # on_link_closed may have opened a fresh one already
        if target and (held is None or held[1].local_id != target):
            # for a link of ours that is gone: tell the sender, which closes its link
            self.messages_dropped += 1
            self._hello(peer, held[1].local_id if held is not None else "", link_id)
            return
        if held is None:
            if self._closing or len(peer) > MAX_NODE_ID:
                self.messages_dropped += 1
                return
            held = self._open(peer)
            if held is None:
                self.messages_dropped += 1
                log.warning("signal bus: %d peer links already; dropped a frame", MAX_LINKS)
                return
        link, transport = held
        if not transport.peer_link:
            transport.peer_link = link_id
        self.frames_in += 1
        link.feed(body)

    def _on_hello(self, peer: str, link_id: str, target: str) -> None:
        """The peer says our link ``target`` reaches no link of its (its current one, if any,
        is ``link_id``): that link is broken."""
        held = self._links.get(peer)
        if held is not None and held[1].local_id == target and held[1].peer_link != link_id:
            held[0].fail("peer closed its link")

    def _hello(self, peer: str, link_id: str, target: str) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._hello_at.get(peer, -1e9) < RESEND_INTERVAL * self._timing:
            return
        if len(self._hello_at) >= 2 * MAX_LINKS:
            self._hello_at.clear()
        self._hello_at[peer] = now
        self.hellos_sent += 1
        self._enqueue(self._keys.signal(peer), self._envelope(HELLO, link_id, target))

    # ------------------------------------------------------------------ peers
    async def _check_peers(self) -> None:
        watch = PeerWatch(timing=self._timing)
        interval = PEER_CHECK_INTERVAL * self._timing
        ok_since: float | None = None  # since when this node's Redis health has been ok
        wait = interval
        while True:
            await asyncio.sleep(wait)
            wait = interval
            if self._health.status != OK:
                ok_since = None
            elif ok_since is None:
                ok_since = time.monotonic()
            settled = ok_since is not None and time.monotonic() - ok_since >= self._peer_settle
            if self._peers is None or not settled or not self._links:
                watch.clear()
                continue
            held = list(self._links.items())
            seen = await self._sight([peer for peer, _ in held])
            if seen is None or self._health.status != OK:
                watch.clear()
                continue
            verdicts = watch.judge(
                {peer: (held_[1].peer_boot, seen[peer]) for peer, held_ in held if peer in seen}
            )
            for peer, (link, _) in held:
                verdict = verdicts.get(peer, "alive")
                if verdict == "reap":
                    verdict = "lost" if await self._reap(peer, seen[peer], watch) else "wait"
                current = self._links.get(peer)
                if verdict == "lost" and current is not None and current[0] is link:
                    link.fail("peer lost")
            wait = watch.wake_in(interval)

    async def _sight(self, peers: list[str]) -> Mapping[str, Sighting] | None:
        """``Peers.sight``, or None when it cannot tell (Redis trouble)."""
        assert self._peers is not None
        try:
            return await asyncio.wait_for(self._peers.sight(peers), 2 * CALL_TIMEOUT)
        except (ClusterUnavailable, RedisError, OSError, TimeoutError):
            return None
        except Exception:
            log.exception("signal bus: sighting peers failed")
            return None

    async def _reap(self, peer: str, seen: Sighting, watch: PeerWatch) -> bool:
        """``Peers.reap``: whether Redis confirms ``peer`` dead (False when it cannot tell)."""
        assert self._peers is not None and seen.boot_id is not None
        try:
            dead = await asyncio.wait_for(
                self._peers.reap(peer, seen.boot_id, watch.stale_after), 2 * CALL_TIMEOUT
            )
        except (ClusterUnavailable, RedisError, OSError, TimeoutError):
            return False
        except Exception:
            log.exception("signal bus: reaping %s failed", peer)
            return False
        if dead:
            log.warning(
                "signal bus: node %s (boot %s) is dead: no subscriber, no heartbeat for %.1f s",
                peer,
                seen.boot_id,
                seen.age,
            )
        return dead and self._health.status == OK
