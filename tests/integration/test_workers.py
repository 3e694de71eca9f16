"""A node split into a front and two media workers, driven by the demo page and the SDK.

Two calls land on two workers (``/debug/state`` says which; each call's media flows on its own
worker's UDP port). Then the worker of one call is killed with SIGKILL: its two participants get
``error`` ``worker-lost`` and close 1012, the SDK joins again by itself, the room is re-created on
a live worker and both see and hear each other again within 10 s; the other call never notices.
Runs in Chromium with the demo page (``test_demo``'s helpers and error checks).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page

from . import test_demo as demo
from .test_demo import open_demo, sees_and_hears, serve, wait_for

#: test_demo's fixtures: a headless Chromium, and the page/server error checks after each test.
browser = demo.browser
check_errors = demo.check_errors

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

#: From a worker's death to media flowing again on both sides (issue 13).
HEAL_LIMIT = 10.0


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("zvonok-workers"), ZVONOK_WORKERS="2") as base:
        yield base


async def debug_state(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        state: dict[str, Any] = (await http.get(base + "/debug/state", timeout=5)).json()
        return state


async def pair(chromium: Browser, base: str, users: tuple[str, str], room: str) -> list[Page]:
    pages = [await open_demo(chromium, base, user, "chat", room) for user in users]
    for page, peer in ((pages[0], users[1]), (pages[1], users[0])):
        await sees_and_hears(page, peer, f"{page} to see and hear {peer}")
    return pages


async def watch_errors(page: Page) -> None:
    await page.evaluate(
        """() => {
          window.serverErrors = [];
          window.zvonokDemo.call.addEventListener("error", (e) => {
            window.serverErrors.push(e.code ?? e.detail?.code ?? String(e));
          });
          window.reconnects = 0;
          window.zvonokDemo.call.addEventListener("reconnected", () => { window.reconnects++; });
        }"""
    )


@pytest.mark.allow_errors(
    server=[r"media worker \d+ \(pid \d+\) died"], reason="the test kills that worker"
)
async def test_two_calls_on_two_workers_and_a_killed_worker_heals(
    two_workers: str, browser: Browser
) -> None:
    base = two_workers
    first = await pair(browser, base, ("alice", "bob"), "w1")
    second = await pair(browser, base, ("ann", "ben"), "w2")

    state = await debug_state(base)
    placed = {key: room["worker"] for key, room in state["rooms"].items()}
    assert set(placed) == {"chat:w1", "chat:w2"}, placed
    assert placed["chat:w1"] != placed["chat:w2"], f"both calls on one worker: {placed}"
    workers = state["workers"]
    assert len(workers) == 2 and all(w["sessions"] == 2 for w in workers.values()), workers

    for page in (*first, *second):
        await watch_errors(page)
    victim = placed["chat:w1"]
    pid = workers[victim]["pid"]
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    # The first call heals: both reconnect by themselves and see and hear each other again.
    healed = [
        await sees_and_hears(first[0], "bob", "alice to see bob again", HEAL_LIMIT + 10),
        await sees_and_hears(first[1], "alice", "bob to see alice again", HEAL_LIMIT + 10),
    ]
    heal = max(healed) - killed
    print(f"worker {victim} killed; media back on both sides after {heal:.2f} s")
    assert heal <= HEAL_LIMIT, f"media back only after {heal:.1f} s"
    for page in first:
        errors = await page.evaluate("() => window.serverErrors")
        assert "worker-lost" in errors, errors
        assert await page.evaluate("() => window.reconnects") >= 1

    # The second call never noticed.
    for page, peer in ((second[0], "ben"), (second[1], "ann")):
        await sees_and_hears(page, peer, f"{peer} still seen", 5)
        assert await page.evaluate("() => window.serverErrors") == []
        assert await page.evaluate("() => window.reconnects") == 0

    # The dead worker was restarted; the healed room lives on a live worker.
    async def restarted() -> dict[str, Any] | None:
        now = await debug_state(base)
        pids = {name: w.get("pid") for name, w in now["workers"].items()}
        fresh = len(pids) == 2 and pid not in pids.values() and "sessions" in now["workers"][victim]
        return now if fresh else None

    after = await wait_for(restarted, "the killed worker to be restarted", 15)
    assert after["rooms"]["chat:w1"]["worker"] in after["workers"]
    assert after["rooms"]["chat:w2"]["worker"] == placed["chat:w2"]
    assert {len(r["participants"]) for r in after["rooms"].values()} == {2}

    for page in (*first, *second):
        await page.click("#leave")
