"""heap.settle_heap: start-up garbage collected, the survivors frozen out of later collections.

Run in a child interpreter each: freezing this test process's heap would keep every object the
other tests make before it alive for good.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import gc, json
    from zvonok.heap import settle_heap

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a

    gc.disable()  # the garbage must still be there when settle_heap runs
    for _ in range(100):
        cycle()
    import zvonok.app  # a serving process's modules and classes
    tracked_before = len(gc.get_objects())
    settled = settle_heap()
    gc.enable()
    keep = [Node() for _ in range(10)]  # made after the freeze: collected as before
    print(json.dumps({
        "collected": settled.collected,
        "frozen": settled.frozen,
        "freeze_count": gc.get_freeze_count(),
        "tracked_before": tracked_before,
        "tracked_after": len(gc.get_objects()),
        "seconds": settled.seconds,
    }))
    """
)


def test_settle_heap_collects_start_up_garbage_and_freezes_the_rest() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout)
    assert result["collected"] >= 200  # the 100 cycles (two objects and their dicts each)
    assert result["frozen"] == result["freeze_count"] > 10_000
    # a full collection now walks only what came after: a few objects, not the modules
    assert result["tracked_after"] < 1_000 < result["tracked_before"]
    assert 0 <= result["seconds"] < 10
