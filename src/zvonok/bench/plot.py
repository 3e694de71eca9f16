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
#: Janus 1.1.2 VideoRoom on this machine (from issue 5), drawn only when the results hold no
#: Janus runs of their own (``zvonok bench --janus``).
JANUS = {3: 57.8, 21: 31.5}


def _series(label: str, result: dict[str, Any]) -> str:
    server = str(result.get("server", "zvonok"))
    return f"zvonok ({label})" if server == "zvonok" else f"{server} ({label})"


def medians(directory: Path) -> dict[str, dict[str, float]]:
    """series ("zvonok (LABEL)", "janus 1.1.2 (LABEL)") -> scenario -> median µs per packet."""
    runs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for path in sorted(directory.glob("*.json")):
        result: dict[str, Any] = json.loads(path.read_text())
        label = path.name.split("-", 1)[0]
        value = result.get("cpu_us_per_delivered_packet")
        if value is not None:
            runs[(_series(label, result), result["scenario"])].append(float(value))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (label, scenario), values in runs.items():
        out[label][scenario] = statistics.median(values)
    return out


def plot_results(directory: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    series = medians(directory)
    for name, scenarios in sorted(series.items(), key=lambda item: not item[0].startswith("zv")):
        points = sorted((FANOUT[s], v, s) for s, v in scenarios.items() if s in FANOUT)
        video = [(f, v) for f, v, s in points if s != "audio-100"]
        marker, style = ("o", "-") if name.startswith("zvonok") else ("x", "--")
        line = ax.plot([f for f, _ in video], [v for _, v in video], marker=marker,
                       linestyle=style, label=name)[0]  # fmt: skip
        for f, v, s in points:
            if s == "audio-100":
                ax.plot([f], [v], marker="s", linestyle="", color=line.get_color(),
                        label=f"{name}, audio-100")  # fmt: skip
    if not any(not name.startswith("zvonok") for name in series):
        ax.plot(list(JANUS), list(JANUS.values()), marker="x", linestyle="--",
                label="Janus 1.1.2 (issue 5)")  # fmt: skip
    ax.axhline(12, color="grey", linewidth=0.8, linestyle=":", label="target at fan-out 21")
    ax.set_xscale("log")
    ax.set_xticks([1, 3, 6, 11, 21, 41, 99], labels=["1", "3", "6", "11", "21", "41", "99"])
    ax.set_xlabel("fan-out (subscribers per published packet)")
    ax.set_ylabel("server CPU µs per delivered packet")
    ax.set_title("SFU cost on a 2-core VM (loopback, medians of 3 runs)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)


if __name__ == "__main__":
    plot_results(Path(sys.argv[1]), Path(sys.argv[2]))
