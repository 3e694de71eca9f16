"""The benchmark plot: CPU µs per delivered packet against fan-out, from ``--json`` results.

Owns ``plot_results`` and a small command line: ``python -m zvonok.bench.plot RESULTS_DIR
OUT.png``. Result files are named ``LABEL-SCENARIO-RUN.json`` (``after-fanout-2x20-1.json``);
each (label, scenario) point is the median of its runs; a scenario's fan-out is how many
subscribers receive each published packet. Imports matplotlib (the ``bench`` extra) only.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

#: Receivers of each published packet, per scenario.
FANOUT = {
    "calls-1to1-x25": 1,
    "mesh-4": 3,
    "fanout-2x5": 6,
    "fanout-2x10": 11,
    "fanout-2x20": 21,
    "fanout-2x40": 41,
    "audio-100": 99,
}
#: Janus 1.1.2 VideoRoom on this machine (from issue 5), for reference.
JANUS = {3: 57.8, 21: 31.5}


def medians(directory: Path) -> dict[str, dict[str, float]]:
    """label -> scenario -> median µs per delivered packet."""
    runs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for path in sorted(directory.glob("*.json")):
        result: dict[str, Any] = json.loads(path.read_text())
        label = path.name.split("-", 1)[0]
        value = result.get("cpu_us_per_delivered_packet")
        if value is not None:
            runs[(label, result["scenario"])].append(float(value))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (label, scenario), values in runs.items():
        out[label][scenario] = statistics.median(values)
    return out


def plot_results(directory: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, scenarios in sorted(medians(directory).items()):
        points = sorted((FANOUT[s], v, s) for s, v in scenarios.items() if s in FANOUT)
        video = [(f, v) for f, v, s in points if s != "audio-100"]
        ax.plot([f for f, _ in video], [v for _, v in video], marker="o", label=f"zvonok ({label})")
        for f, v, s in points:
            if s == "audio-100":
                ax.plot([f], [v], marker="s", linestyle="", label=f"zvonok ({label}), audio-100")
    ax.plot(list(JANUS), list(JANUS.values()), marker="x", linestyle="--", label="Janus 1.1.2")
    ax.axhline(12, color="grey", linewidth=0.8, linestyle=":", label="target at fan-out 21")
    ax.set_xscale("log")
    ax.set_xticks([1, 3, 6, 11, 21, 41, 99], labels=["1", "3", "6", "11", "21", "41", "99"])
    ax.set_xlabel("fan-out (subscribers per published packet)")
    ax.set_ylabel("server CPU µs per delivered packet")
    ax.set_title("zvonok SFU cost on a 2-core VM (loopback, medians of 3 runs)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)


if __name__ == "__main__":
    plot_results(Path(sys.argv[1]), Path(sys.argv[2]))
