"""The client matrix of issue 12 §1: real clients that negotiate differently from our SDK.

Each variant is a client under test ("x", user ``alice``, red picture, 440 Hz tone) that joins
(a) an empty private chat, after which an ordinary Chromium peer (``bob``, blue) joins so media
can flow both ways, and (b) a group where two ordinary Chromium peers (``carol`` green, ``dave``
yellow) already publish. The variants (pages/peer.js and harness/aiortc_peer.py modes):

- ``chromium-perfect``: W3C/MDN perfect negotiation, polite, implicit rollback;
- ``chromium-explicit-rollback``: the same with ``setLocalDescription({type: "rollback"})`` then
  ``setRemoteDescription(offer)``; the negotiationneeded Chrome fires in between sends a second,
  stale offer just before the answer (the case that broke; reproduced in every repetition);
- ``chromium-answer-only``: never offers;
- ``chromium-offer-only``: offers once right after ``join``, ignores every server offer, never
  answers;
- ``firefox-perfect``: Firefox ESR, perfect negotiation with implicit rollback;
- ``aiortc-offer-first``: cannot roll back: offers once right after ``join``, ignores colliding
  server offers, waits for the answer (the server yields after ``glare_yield_ms``), then answers
  the server's later offers;
- ``aiortc-answer-only``.

Every case runs ``ZVONOK_MATRIX_REPEAT`` times (default 8), each repetition with delays before
``join``, before the first offer, before each answer of the client under test, and (a) before bob
joins. Which of the four are 0 (offers then cross on the wire: the racy case) follows a two-level
design rather than coin flips: every 8 repetitions are a half fraction of the 16 zero/non-zero
combinations in which any three of the four race points meet each of their 8 combinations once
(the fourth is 0 when an odd number of the three are), the next 8 the other half; each
non-zero delay is random, 1-300 ms. So the default 8 repetitions meet every combination of any
three points, and 4 of them have no delay before the first offer, which is when offers collide
(measured, 10 repetitions per case: the perfect-negotiation clients collided in all 29 without
that delay and in 2 of the 31 with one, of 2 and 13 ms). Ten repetitions with each delay 0 on a
coin flip, as before, met 7.6 of the 16 combinations on average, all 8 of three given points in
3 % of runs, and took 25 % longer. The random generator (order of the combinations, the delays)
is seeded with ``ZVONOK_MATRIX_SEED`` (random when unset; every failure names the seed and the
repetition's delays). Clients that offer must meet the server's offer head-on in at least one
repetition (their own log says so). Every repetition must end with media both ways, identified:
each receiver decodes the sender's colour and hears its tone (Firefox too: harness/firefox.py),
with packets and decoded frames growing (harness/stats.py).
Any error a client recorded, any server ``error`` other than the informational ``glare`` (and one
``media-failed`` that a perfect-negotiation Chromium client recovered from on a new
RTCPeerConnection: the Chromium defect described in docs/protocol.md, "Negotiation"), and any
ERROR record or traceback in the server's log fails the repetition, whose failure shows the
client's log and the server's log lines of that room.

What an offer-only client can get: only what fits into the m-lines of its one offer (one audio,
one video, sendrecv). (b): filled with tracks already published when the server answers: it
sends to both members and receives one audio and one video track of the members (whose, the
``tracks`` map sent before the answer says; checked by colour and tone). (a): the server answers
its m-lines as vacant (placeholder SSRCs); bob's tracks, published later, fill them at once, and a
``tracks`` map with no description after it says whose they are (docs/protocol.md): media both
ways. Later screen shares need a server offer, which it never answers; removed tracks stay until
it leaves.

Cost: one server, one Chromium and one Firefox process for the whole module (fresh browser
contexts, rooms and session ids per repetition); the group members of (b) stay for the
repetitions of one test (and join it together). The Firefox page POSTs its report every
``FIREFOX_REPORT_MS`` (100 ms, 500 by default): loading the next page, ``leave`` and the media
checks all wait for the next POST. Browser tests run one at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from .harness.aiortc_peer import AiortcPeer, use_loopback_addresses
from .harness.chromium import ChromiumPeer, ChromiumPeers, join_params
from .harness.firefox import FirefoxPeer
from .harness.report_server import ReportServer
from .harness.server import ZvonokServer
from .harness.stats import TONES, PeerReport, ReportPeer, track_problem

REPEAT = int(os.environ.get("ZVONOK_MATRIX_REPEAT", "8"))
SEED = int(os.environ.get("ZVONOK_MATRIX_SEED") or random.SystemRandom().randrange(1 << 30))
MAX_DELAY_MS = 300
MEDIA_TIMEOUT = 25.0
SAMPLE_GAP_MS = 300.0
POLL = 0.35
START_TIMEOUT_MS = 15000
FIREFOX_REPORT_MS = 100
#: The only server error a client may receive: the informational answer to a colliding offer.
ALLOWED_SERVER_ERRORS = frozenset({"glare"})

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(90 + 45 * REPEAT),
]

X_USER, X_COLOUR = "alice", "red"
BOB, BOB_COLOUR = "bob", "blue"
MEMBERS = {"carol": "green", "dave": "yellow"}
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Variant:
    """One client under test: which client, and its negotiation mode."""

    name: str
    client: str  # chromium | firefox | aiortc
    mode: str
    offer_only: bool = False


VARIANTS = [
    Variant("chromium-perfect", "chromium", "perfect"),
    Variant("chromium-explicit-rollback", "chromium", "perfect-explicit"),
    Variant("chromium-answer-only", "chromium", "answer-only"),
    Variant("chromium-offer-only", "chromium", "offer-only", offer_only=True),
    Variant("firefox-perfect", "firefox", "perfect"),
    Variant("aiortc-offer-first", "aiortc", "offer-first"),
    Variant("aiortc-answer-only", "aiortc", "answer"),
]


@dataclass(frozen=True, slots=True)
class Delays:
    """Milliseconds the client under test waits at each race point (and bob before joining)."""

    join: int
    offer: int
    answer: int
    other: int

    @classmethod
    def draw(cls, rng: random.Random, zeros: Sequence[bool]) -> Delays:
        """0 where ``zeros`` says (offers then cross on the wire: the racy case), else 1-300."""
        return cls(*(0 if zero else rng.randint(1, MAX_DELAY_MS) for zero in zeros))

    def params(self) -> dict[str, str]:
        return {
            "delayJoin": str(self.join),
            "delayOffer": str(self.offer),
            "delayAnswer": str(self.answer),
        }


def zero_patterns(rng: random.Random) -> list[tuple[bool, bool, bool, bool]]:
    """Which delays (join, offer, answer, other) are 0, for 16 repetitions: first the half
    fraction in which other = join xor offer xor answer (any three of the four columns hold each
    of their 8 combinations once), then the other half (all 16 combinations); each half in a
    random order."""
    halves = []
    for parity in (False, True):
        half = [
            (join, offer, answer, join ^ offer ^ answer ^ parity)
            for join in (False, True)
            for offer in (False, True)
            for answer in (False, True)
        ]
        rng.shuffle(half)
        halves += half
    return halves


@dataclass(frozen=True, slots=True)
class Expect:
    """``receiver`` gets live ``kind`` media from one of ``senders`` (user -> colour/tone)."""

    receiver: ReportPeer
    kind: str
    senders: dict[str, str]

    def label(self) -> str:
        return f"{self.receiver.name} <- {self.kind} from {' or '.join(self.senders)}"


async def wait_media(expectations: Sequence[Expect], timeout: float = MEDIA_TIMEOUT) -> None:  # noqa: ASYNC109
    """Until every expectation held between two samples >= 300 ms apart (each is met once)."""
    pending = list(expectations)
    previous: dict[int, PeerReport] = {}
    latest: dict[int, PeerReport] = {}
    reasons: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL) + 2):
        receivers = list({id(e.receiver): e.receiver for e in pending}.values())
        reports = await asyncio.gather(*(asyncio.wait_for(r.report(), 5.0) for r in receivers))
        for receiver, now in zip(receivers, reports, strict=True):
            key = id(receiver)
            before = previous.get(key)
            latest[key] = now
            if before is not None and now.ts - before.ts < SAMPLE_GAP_MS:
                continue
            for expect in [e for e in pending if e.receiver is receiver]:
                problem = _expect_problem(expect, before, now)
                if problem is None:
                    pending.remove(expect)
                else:
                    reasons[id(expect)] = problem
            previous[key] = now
        if not pending:
            return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL)
    lines = [f"  {e.label()}: {reasons.get(id(e), 'no sample')}" for e in pending]
    dumps = [
        f"--- {e.receiver.name}: last report ---\n{latest[id(e.receiver)].dump(4000)}"
        for e in {id(e.receiver): e for e in pending}.values()
        if id(e.receiver) in latest
    ]
    raise AssertionError(
        f"media not flowing within {timeout:.0f} s:\n" + "\n".join(lines) + "\n" + "\n".join(dumps)
    )


def _expect_problem(expect: Expect, before: PeerReport | None, now: PeerReport) -> str | None:
    if before is None:
        return "no earlier sample yet"
    live = [
        t
        for t in now.tracks
        if t.kind == expect.kind and not t.ended and t.user_id in expect.senders
    ]
    if not live:
        others = [t.describe() for t in now.tracks if t.kind == expect.kind]
        return f"no live {expect.kind} track from {list(expect.senders)}; has {others}"
    reasons = []
    tone = expect.receiver.measures_tone  # Firefox here cannot: its audio is checked by RTP
    for track in live:
        colour = expect.senders[str(track.user_id)]
        problem = track_problem(before.track(track.id), track, colour, tone)
        if problem is None:
            return None
        reasons.append(f"[{track.describe()}]: {problem}")
    return "; ".join(reasons)


def recovered_from_media_failure(raw: Mapping[str, Any]) -> bool:
    """Whether this call met the Chromium defect of docs/protocol.md ("Negotiation"): a
    perfect-negotiation Chromium connection whose first offer was rolled back right after being
    set never gathers; the server fails the session after one ICE restart (``media-failed``,
    close 4002) and the client joins again on a new RTCPeerConnection. Allowed once per call,
    for those clients only, and only if the client did recover (its media is then checked as
    in every other call)."""
    failed = [e for e in raw.get("serverErrors") or [] if (e or {}).get("code") == "media-failed"]
    return (
        raw.get("mode") in ("perfect", "perfect-explicit")
        and "Chrome/" in str(raw.get("userAgent"))
        and len(failed) == 1
        and raw.get("recoveries") == 1
    )


def client_problems(report: PeerReport) -> list[str]:
    """Errors the client recorded and server ``error`` messages other than ``glare`` (and one
    ``media-failed`` the client recovered from, see ``recovered_from_media_failure``)."""
    raw = report.raw
    out = [f"client error: {e}" for e in raw.get("errors") or []]
    allowed = ALLOWED_SERVER_ERRORS
    if recovered_from_media_failure(raw):
        allowed = allowed | {"media-failed"}
    for err in raw.get("serverErrors") or []:
        if not isinstance(err, dict) or err.get("code") not in allowed:
            out.append(f"server error message: {json.dumps(err)}")
    return out


def server_problem_lines(lines: Sequence[str]) -> list[str]:
    """The ERROR/CRITICAL records and tracebacks among a server's output lines."""
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            if entry.get("level") in ("ERROR", "CRITICAL") or entry.get("exc"):
                out.append(line)
        elif "Traceback (most recent call last)" in line or " ERROR " in line:
            out.append(line)
    return out


class Firefox:
    """One Firefox ESR process for the module; each call loads a fresh peer.html into it.

    The client under test sends Firefox's fake microphone, tuned to its tone
    (``media.navigator.audio.fake_frequency``); what it receives is checked like every other
    receiver (frames, colour, and the tone through Web Audio, which runs headless on Firefox's
    mock audio output: harness/firefox.py).
    """

    def __init__(self, pages: ReportServer) -> None:
        self.pages = pages
        self.peer: FirefoxPeer | None = None

    async def load(
        self, name: str, peer_id: str, session: str, params: dict[str, str]
    ) -> ReportPeer:
        params["report"] = self.pages.report_url(peer_id)
        url = self.pages.page_url("peer.html", **params)
        if self.peer is None:
            self.peer = FirefoxPeer(name, peer_id, session, self.pages)
            tone = int(TONES[X_COLOUR])
            (self.peer.profile / "prefs.js").write_text(
                f'user_pref("media.navigator.audio.fake_frequency", {tone});\n'
            )
            self.peer.launch(url)
        else:  # the previous page has left (``leave``): load the next one in the same process
            self.pages.push_command(self.peer.peer_id, "navigate", url)
            self.peer.name, self.peer.peer_id, self.peer.session_id = name, peer_id, session
        await self.peer.wait_started()
        return self.peer

    async def leave(self) -> None:
        if self.peer is not None:
            await self.peer.call("leave")

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()
            self.peer = None


@dataclass
class Matrix:
    """What the repetitions share: the server, the browsers, tokens, and the random generator."""

    server: ZvonokServer
    pages: ReportServer
    chromium: ChromiumPeers
    firefox: Firefox
    http: httpx.AsyncClient
    rng: random.Random
    tokens: dict[str, str] = field(default_factory=dict)
    seen_problems: set[str] = field(default_factory=set)

    async def token(self, user: str) -> str:
        if user not in self.tokens:
            resp = await self.http.post("/dev/token", json={"userId": user})
            resp.raise_for_status()
            self.tokens[user] = str(resp.json()["token"])
        return self.tokens[user]

    async def room(self, kind: str, users: Sequence[str]) -> str:
        """A fresh chat/group with these members (the server's development endpoint)."""
        room = f"m{next(_ids)}-{self.rng.randrange(1 << 30):x}"
        for user in users:
            resp = await self.http.post(
                "/dev/join", json={"userId": user, "kind": kind, "roomId": room}
            )
            resp.raise_for_status()
        return room

    async def params(
        self, peer_id: str, user: str, room: str, kind: str, colour: str, mode: str
    ) -> tuple[str, dict[str, str]]:
        session = f"{peer_id}-{self.rng.randrange(1 << 30):x}"
        return await join_params(
            self.server, peer_id, user=user, room=room, color=colour, kind=kind, audio=True,
            video=True, mode=mode, session_id=session, token=await self.token(user),
        )  # fmt: skip

    async def open_chromium(
        self, user: str, room: str, kind: str, colour: str, mode: str = "answer",
        extra: dict[str, str] | None = None,
    ) -> ChromiumPeer:  # fmt: skip
        peer_id = f"mchromium{next(_ids)}"
        session, params = await self.params(peer_id, user, room, kind, colour, mode)
        params.update(extra or {})
        browser = await self.chromium.browser()
        context = await browser.new_context()
        page = await context.new_page()
        peer = ChromiumPeer(f"{peer_id}({user},{mode})", context, page, session)
        try:
            await page.goto(self.pages.page_url("peer.html", **params))
            await page.wait_for_function(
                "window.peer && window.peer.started", timeout=START_TIMEOUT_MS
            )
        except Exception as exc:
            await peer.close()
            raise AssertionError(f"{peer.name}: the page did not start: {exc}") from exc
        return peer

    async def open_x(self, variant: Variant, room: str, kind: str, delays: Delays) -> ReportPeer:
        """The client under test."""
        if variant.client == "chromium":
            return await self.open_chromium(
                X_USER, room, kind, X_COLOUR, variant.mode, delays.params()
            )
        if variant.client == "firefox":
            peer_id = f"mfirefox{next(_ids)}"
            session, params = await self.params(peer_id, X_USER, room, kind, X_COLOUR, variant.mode)
            params.update(delays.params(), audioSource="gum", reportMs=str(FIREFOX_REPORT_MS))
            return await self.firefox.load(
                f"{peer_id}({X_USER},{variant.mode})", peer_id, session, params
            )
        peer_id = f"maiortc{next(_ids)}"
        peer = AiortcPeer(
            f"{peer_id}({X_USER},{variant.mode})", url=self.server.ws_url(kind, room),
            token=await self.token(X_USER), room=room,
            session_id=f"{peer_id}-{self.rng.randrange(1 << 30):x}", user=X_USER,
            color=X_COLOUR, audio=True, video=True, mode=variant.mode,
        )  # fmt: skip
        peer.delay_join = delays.join / 1000
        peer.delay_offer = delays.offer / 1000
        peer.delay_answer = delays.answer / 1000
        await peer.start()
        return peer

    async def close(self, peer: ReportPeer) -> None:
        """Leave the call and free the client (the Firefox process stays for the next page)."""
        try:
            if isinstance(peer, ChromiumPeer):
                await asyncio.wait_for(peer.leave(), 5.0)
            elif isinstance(peer, FirefoxPeer):
                await self.firefox.leave()
            elif isinstance(peer, AiortcPeer):
                await asyncio.wait_for(peer.leave(), 5.0)
        finally:
            if isinstance(peer, ChromiumPeer | AiortcPeer):
                await peer.close()

    async def errors_of(self, peers: Sequence[ReportPeer]) -> list[str]:
        """Every client-side problem of ``peers`` and every new server problem."""
        out = []
        for peer in peers:
            report = await asyncio.wait_for(peer.report(), 5.0)
            out += [f"{peer.name}: {p}" for p in client_problems(report)]
            if isinstance(peer, ChromiumPeer):
                out += [f"{peer.name}: {line}" for line in peer.console() if "pageerror" in line]
        for line in server_problem_lines(self.server.log_tail(5000).splitlines()):
            if line not in self.seen_problems:
                self.seen_problems.add(line)
                out.append(f"server log: {line}")
        return out

    def server_lines(self, room: str, limit: int = 120) -> str:
        lines = [line for line in self.server.log_tail(5000).splitlines() if room in line]
        return "\n".join(lines[-limit:])


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZvonokServer]:
    """One server for the whole matrix (default settings: ``glare_yield_ms`` 1000)."""
    server = ZvonokServer(Path(tmp_path_factory.mktemp("matrix")) / "server")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def loopback_aioice() -> Iterator[None]:
    """aiortc peers gather 127.0.0.1 (aioice never offers it by itself)."""
    patch = pytest.MonkeyPatch()
    use_loopback_addresses(patch)
    try:
        yield
    finally:
        patch.undo()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def matrix(
    matrix_server: ZvonokServer, report_server: ReportServer, loopback_aioice: None
) -> AsyncIterator[Matrix]:
    chromium = ChromiumPeers(report_server)
    firefox = Firefox(report_server)
    async with httpx.AsyncClient(base_url=matrix_server.http_url, timeout=10.0) as http:
        m = Matrix(matrix_server, report_server, chromium, firefox, http, random.Random(SEED))
        try:
            yield m
        finally:
            await firefox.close()
            await chromium.close()


#: What the client under test logs when its offer collided with the server's (the path each
#: variant exists to exercise); answer-only clients never offer.
COLLISION_SIGNS = {
    "perfect": "(after a collision)",
    "perfect-explicit": "(after a collision)",
    "offer-only": "offer-only: the server's offer is ignored",
    "offer-first": "offer-first: a server offer that collides with ours is ignored",
}
#: With this many repetitions, at least one must have collided (the delays make it likely).
MIN_REPEAT_FOR_COLLISION = 5


async def collided(variant: Variant, x: ReportPeer) -> bool:
    """Whether the client's offer met the server's in this call (from its own log)."""
    sign = COLLISION_SIGNS.get(variant.mode)
    if sign is None:
        return False
    report = await asyncio.wait_for(x.report(), 5.0)
    lines = [*x.console(), *(str(line) for line in report.raw.get("log") or [])]
    return any(sign in line for line in lines)


async def run_repetitions(
    m: Matrix, variant: Variant, case: str, body: Any, peers_to_check: Sequence[ReportPeer] = ()
) -> None:
    """``body(rep, delays, opened)`` REPEAT times; a failure names the seed, the repetition, its
    delays, and shows the client's log and the server's log lines of the room. Clients that
    offer must have collided with the server's offer in at least one repetition."""
    collisions = 0
    recoveries = 0
    patterns = zero_patterns(m.rng)
    for rep in range(REPEAT):
        delays = Delays.draw(m.rng, patterns[rep % len(patterns)])
        hit = False
        opened: list[ReportPeer] = []
        room_box: list[str] = []
        started = time.monotonic()
        try:
            await body(rep, delays, opened, room_box)
            hit = await collided(variant, opened[0])
            collisions += hit
            problems = await m.errors_of([*opened, *peers_to_check])
            assert not problems, "recorded errors:\n  " + "\n  ".join(problems)
            report = await asyncio.wait_for(opened[0].report(), 5.0)
            if recovered_from_media_failure(report.raw):
                recoveries += 1
                print(f"{variant.name} {case} rep {rep + 1}: media-failed, recovered on a new "
                      "RTCPeerConnection (the Chromium defect of docs/protocol.md)")  # fmt: skip
        except (AssertionError, TimeoutError, RuntimeError) as exc:
            room = room_box[0] if room_box else "?"
            logs = "\n".join(
                f"--- {p.name}: log ---\n" + "\n".join(p.console()[-80:]) for p in opened[:1]
            )
            raise AssertionError(
                f"{variant.name}, {case}: repetition {rep + 1}/{REPEAT} failed "
                f"(ZVONOK_MATRIX_SEED={SEED}, delays {delays}, room {room}):\n{exc}\n{logs}\n"
                f"--- server log of room {room} ---\n{m.server_lines(room)}"
            ) from exc
        finally:
            for peer in reversed(opened):
                try:
                    await m.close(peer)
                except (AssertionError, TimeoutError, RuntimeError, ConnectionError):
                    pass
        print(
            f"{variant.name} {case} rep {rep + 1}: {time.monotonic() - started:.1f} s, "
            f"{delays}, {'colliding offers' if hit else 'no collision'}"
        )
    print(
        f"{variant.name} {case}: {collisions} of {REPEAT} calls had colliding offers, "
        f"{recoveries} recovered from media-failed"
    )
    if variant.mode in COLLISION_SIGNS and REPEAT >= MIN_REPEAT_FOR_COLLISION:
        assert collisions, (
            f"{variant.name}, {case}: no repetition had colliding offers (seed {SEED})"
        )


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
async def test_joins_an_empty_chat_then_a_peer_joins(matrix: Matrix, variant: Variant) -> None:
    async def body(rep: int, delays: Delays, opened: list[ReportPeer], room_box: list[str]) -> None:
        room = await matrix.room("chat", [X_USER, BOB])
        room_box.append(room)
        x = await matrix.open_x(variant, room, "chat", delays)
        opened.append(x)
        await asyncio.sleep(delays.other / 1000)
        bob = await matrix.open_chromium(BOB, room, "chat", BOB_COLOUR)
        opened.append(bob)
        expect = [Expect(bob, kind, {X_USER: X_COLOUR}) for kind in ("video", "audio")]
        expect += [Expect(x, kind, {BOB: BOB_COLOUR}) for kind in ("video", "audio")]
        await wait_media(expect)

    await run_repetitions(matrix, variant, "empty chat", body)


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
async def test_joins_a_group_where_two_members_publish(matrix: Matrix, variant: Variant) -> None:
    group = await matrix.room("group", [X_USER, *MEMBERS])
    members: dict[str, ChromiumPeer] = {}
    try:
        opened = await asyncio.gather(
            *(
                matrix.open_chromium(user, group, "group", colour)
                for user, colour in MEMBERS.items()
            ),
            return_exceptions=True,
        )
        members.update(
            (u, p) for u, p in zip(MEMBERS, opened, strict=True) if isinstance(p, ChromiumPeer)
        )
        for failed in opened:
            if isinstance(failed, BaseException):
                raise failed
        await wait_media(
            [
                Expect(peer, kind, {other: colour})
                for user, peer in members.items()
                for other, colour in MEMBERS.items()
                if other != user
                for kind in ("video", "audio")
            ]
        )

        async def body(
            rep: int, delays: Delays, opened: list[ReportPeer], room_box: list[str]
        ) -> None:
            room_box.append(group)
            for peer in members.values():  # the previous repetition's client has left
                await peer.wait_participant(X_USER, present=False, timeout=10)
            x = await matrix.open_x(variant, group, "group", delays)
            opened.append(x)
            expect = [
                Expect(peer, kind, {X_USER: X_COLOUR})
                for peer in members.values()
                for kind in ("video", "audio")
            ]
            if variant.offer_only:  # one audio and one video: whose, the tracks map says
                expect += [Expect(x, kind, dict(MEMBERS)) for kind in ("video", "audio")]
            else:
                expect += [
                    Expect(x, kind, {user: colour})
                    for user, colour in MEMBERS.items()
                    for kind in ("video", "audio")
                ]
            await wait_media(expect)
            report = await x.report()
            echo = [t.describe() for t in report.tracks if t.user_id == X_USER and not t.ended]
            assert not echo, f"the client receives its own media: {echo}"

        await run_repetitions(
            matrix, variant, "group with two publishers", body, list(members.values())
        )
    finally:
        for peer in members.values():
            await matrix.close(peer)
