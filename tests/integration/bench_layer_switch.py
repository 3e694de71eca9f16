"""Layer switch time after a bandwidth drop, and back up after the limit is lifted (issue 15's
"Numbers"): a measurement, not a check, so not collected with the suite (the name does not
start with ``test_``); run it by naming the file, under the integration lock:

    flock /tmp/zvonok-it.lock timeout 900 .venv/bin/pytest -p no:cacheprovider -q -s \
        tests/integration/bench_layer_switch.py

A Chromium publisher (the demo page, fake camera 1280x720 at 30 fps, 3 simulcast layers) and a
receive-only Chromium subscriber whose tile wants 1280 px, each in its own network namespace
(harness/netns.py, as test_adaptive_network.py). ``ZVONOK_SWITCH_CYCLES`` cycles (default 5),
each: the subscriber decodes >= 1280 px; its downlink is limited to 300 kbit/s (tbf) and the
clock starts; **down** is the time until the subscriber decodes <= 320 px (``frameWidth`` of its
inbound video, frames growing); the limit is lifted after 10 s on the low layer; **up** is the
time until it decodes >= 640 px again (within 30 s), then until >= 1280 px (within 20 s
more; a cycle that did not get there starts from where it is). Sampled every 100 ms from
``getStats`` in the page; each figure is accurate to about one sample plus the page's stats
cadence. Prints one ``SWITCH`` line per cycle and the medians and maxima; writes them as JSON
to ``ZVONOK_SWITCH_OUT`` when set.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from .harness.netns import EmulatedNetwork, Shaping, emulated_network
from .test_adaptive_network import open_demo, wait_media

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]
__all__ = ["emulated_network"]

SAMPLE = 0.1
#: How long each wait may take before the cycle counts as a miss (s).
DOWN_LIMIT = 30.0
UP_LIMIT = 30.0
TOP_LIMIT = 20.0
WIDTH_JS = """async () => {
  let out = null;
  (await window.zvonokDemo.call.peerConnection.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out = [s.frameWidth || 0, s.framesDecoded || 0];
    }
  });
  return out;
}"""


async def until_width(page: Page, ok: Any, limit: float) -> float | None:
    """Seconds until ``page`` decodes frames of a width ``ok`` accepts (frames growing since
    the previous sample), None after ``limit``."""
    started = time.monotonic()
    last = -1
    while time.monotonic() - started < limit:
        value = await page.evaluate(WIDTH_JS)
        if value is not None:
            width, frames = value
            if ok(width) and last >= 0 and frames > last:
                return time.monotonic() - started
            last = frames
        await asyncio.sleep(SAMPLE)
    return None


async def test_layer_switch_time(emulated_network: EmulatedNetwork) -> None:
    network = emulated_network
    pub_net, sub_net = network.add_client(), network.add_client()
    server = network.start_server()
    group = server.create_group(["pub", "sub"])
    publisher = await open_demo(network, pub_net, server, "pub", group, kind="group")
    big = {"viewport": (1400, 900), "scale": 2.0, "publish": False, "kind": "group"}
    sub = await open_demo(network, sub_net, server, "sub", group, **big)  # type: ignore[arg-type]
    await wait_media(sub, "sub", publisher)
    cycles = int(os.environ.get("ZVONOK_SWITCH_CYCLES", "5"))
    rows: list[dict[str, float | None]] = []
    for cycle in range(cycles):
        top = await until_width(sub, lambda w: w >= 1280, UP_LIMIT if cycle == 0 else 5.0)
        assert top is not None or cycle > 0, "the subscriber never decoded 1280 px"
        await asyncio.sleep(3)
        start = await sub.evaluate(WIDTH_JS)
        network.shape(sub_net, "down", Shaping(rate_kbit=300))
        down = await until_width(sub, lambda w: 0 < w <= 320, DOWN_LIMIT)
        await asyncio.sleep(10)
        network.lift(sub_net, "down")
        lifted = time.monotonic()
        up640 = await until_width(sub, lambda w: w >= 640, UP_LIMIT)
        up1280 = await until_width(sub, lambda w: w >= 1280, TOP_LIMIT)
        if up1280 is not None:
            up1280 = time.monotonic() - lifted
        row = {"from": start[0] if start else None, "down_320": down, "up_640": up640}
        row["up_1280"] = up1280
        rows.append(row)
        print(f"SWITCH cycle {cycle}: " + ", ".join(f"{k} {v}" for k, v in row.items()))

    def summary(key: str) -> dict[str, float | int | None]:
        values = [v for r in rows if (v := r[key]) is not None]
        return {
            "median": round(statistics.median(values), 2) if values else None,
            "max": round(max(values), 2) if values else None,
            "runs": len(values),
            "missed": len(rows) - len(values),
        }

    result = {k: summary(k) for k in ("down_320", "up_640", "up_1280")}
    print(f"SWITCH summary over {cycles} cycles: {result}")
    out = os.environ.get("ZVONOK_SWITCH_OUT")
    if out:
        text = json.dumps({"cycles": rows, "summary": result}, indent=1)
        await asyncio.to_thread(Path(out).write_text, text)
