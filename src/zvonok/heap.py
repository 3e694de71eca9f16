"""The serving process's heap once it has started: start-up objects out of the collector's way.

Everything a node makes before it serves (modules, classes, the components ``build`` made:
~45,000 objects for the embedded default) lives as long as the process. CPython's cyclic
collector nevertheless walks all of them in every full (generation 2) collection, which it runs
whenever the long-lived objects have grown by a quarter since the last one: after a wave of
joins, say. That walk holds the event loop, and every packet waiting on it, for ~20 ms on the
2-vCPU test VM (docs/benchmarks.md, Round 16). ``settle_heap`` collects what start-up left as
garbage, then freezes the survivors (``gc.freeze``, CPython 3.7+): later collections skip them.
Sessions, rooms and packets made afterwards are collected as before.

Only a serving process calls it (``zvonok serve`` and a media worker's ``main``), never an
in-process test: frozen objects are never collected, which a test checking that something was
freed would trip over. Implements no RFC.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SettledHeap:
    """What ``settle_heap`` did: garbage collected, objects frozen, and how long it took."""

    collected: int
    frozen: int
    seconds: float


def type_counts(limit: int = 40) -> dict[str, int]:
    """The collector's tracked objects by type name, the ``limit`` most common (leak hunting:
    ``/debug/state?gc=1``'s ``gcTypes``; frozen start-up objects are not among them)."""
    counts = Counter(type(o).__name__ for o in gc.get_objects())
    return dict(counts.most_common(limit))


def merge_counts(into: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Two ``type_counts`` added up (a front and its workers)."""
    total = Counter(into)
    total.update(more)
    return dict(total)


def settle_heap() -> SettledHeap:
    """Collect start-up garbage, then move every surviving object to the permanent generation."""
    started = time.perf_counter()
    collected = gc.collect()
    gc.freeze()
    return SettledHeap(collected, gc.get_freeze_count(), time.perf_counter() - started)
