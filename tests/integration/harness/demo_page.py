"""The demo page (``/``) in a Chromium inside a test's network namespace, joined to a call.

Owns ``open_demo``, which test_adaptive_network.py, test_vp9_svc.py and bench_layer_switch.py
share: a browser in the client's namespace (harness/netns.py) with Chromium's fake camera at 30
frames a second, the page opened with ``?kind=...&room=...`` plus ``query`` (``codec=vp9``: the
SDK's ``videoCodec``), the token pasted into the production form, the call joined (publishing
camera and microphone unless ``publish`` is false). ``init_scripts`` run before the page's own
scripts (message taps, a fake microphone); ``watch_js`` runs once the call exists (listeners on
``window.zvonokDemo.call``). Also ``wait_for``: poll until truthy, bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from playwright.async_api import Browser, Page

from .netns import Client, EmulatedNetwork
from .server import ZvonokServer

#: Chromium's fake camera at 30 frames a second (its default is 20); the last switch wins.
FAKE_DEVICE_30FPS = ["--use-fake-device-for-media-stream=fps=30"]


async def open_demo(
    network: EmulatedNetwork,
    client: Client,
    server: ZvonokServer,
    user: str,
    room: str,
    *,
    kind: str = "chat",
    publish: bool = True,
    viewport: tuple[int, int] = (1280, 720),
    scale: float = 1.0,
    query: str = "",
    init_scripts: Sequence[str] = (),
    watch_js: str = "",
) -> Page:
    """The demo page in a Chromium in ``client``'s namespace, joined to ``kind`` ``room`` as
    ``user``; ``query`` (``name=value&...``) is added to the page's URL."""
    browser: Browser = await network.chromium(client, server.http_url, FAKE_DEVICE_30FPS)
    context = await browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=scale
    )
    for script in init_scripts:
        if script:
            await context.add_init_script(script)
    page = await context.new_page()
    page.set_default_timeout(20000)
    token = await asyncio.to_thread(server.token, user)
    extra = f"&{query.lstrip('&?')}" if query else ""
    await page.goto(f"{server.http_url}/?kind={kind}&room={room}{extra}")
    await page.wait_for_selector("#prod-fields:not([hidden])")
    await page.fill("#token", token)
    await page.select_option("#kind", kind)
    await page.fill("#room-id", room)
    if not publish:
        await page.uncheck("#with-audio")
        await page.uncheck("#with-video")
    await page.click("#join")
    await page.wait_for_selector("#call:not([hidden])")
    if watch_js:
        await page.evaluate(watch_js)
    return page


async def wait_for(
    probe: Callable[[], Awaitable[Any]], what: str, limit: float, every: float = 0.5
) -> Any:
    """Poll ``probe`` every ``every`` s until it returns something truthy; fails after
    ``limit`` s, showing the last value."""
    deadline = time.monotonic() + limit
    value: Any = None
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {limit} s waiting for {what} (last: {value!r})")
