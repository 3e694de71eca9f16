"""The benchmark plot: CPU µs per delivered packet against fan-out, from ``--json`` results.

Owns ``plot_results`` and a small command line: ``python -m zvonok.bench.plot RESULTS_DIR
OUT.png``. Result files are named ``LABEL-SCENARIO-RUN.json`` (``after-fanout-2x20-1.json``);
each (label, scenario) point is the median of its runs; a scenario's fan-out is how many
subscribers receive each published packet. Only what the files hold is drawn, and the title says
what was measured (machine, runs per point, window, pacing, dates), read from the same files.
Imports matplotlib (the ``bench`` extra) only.
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


def _series(label: str, result: dict[str, Any]) -> str:
    server = str(result.get("server", "zvonok"))
    return f"zvonok ({label})" if server == "zvonok" else f"{server} ({label})"


def _results(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """(label, result) of every plotted result file: one with a µs-per-packet figure."""
    out = []
    for path in sorted(directory.glob("*.json")):
        result: dict[str, Any] = json.loads(path.read_text())
        if result.get("cpu_us_per_delivered_packet") is not None and "scenario" in result:
            out.append((path.name.split("-", 1)[0], result))
    return out


def medians(directory: Path) -> dict[str, dict[str, float]]:
    """series ("zvonok (LABEL)", "janus 1.1.2 (LABEL)") -> scenario -> median µs per packet."""
    runs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for label, result in _results(directory):
        value = float(result["cpu_us_per_delivered_packet"])
        runs[(_series(label, result), result["scenario"])].append(value)
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (label, scenario), values in runs.items():
        out[label][scenario] = statistics.median(values)
    return out


def _span(values: list[Any], unit: str = "") -> str:
    """ "3" when all equal, "2–3" otherwise."""
    low, high = min(values), max(values)
    return f"{low:g}{unit}" if low == high else f"{low:g}–{high:g}{unit}"


def describe(directory: Path) -> str:
    """The plot's title: what the result files say was measured."""
    results = _results(directory)
    if not results:
        return "no results"
    machines = set()
    for _, r in results:
        m = r.get("machine") or {}
        machines.add(
            f"{m['cpus']} CPUs ({m.get('cpu_model') or 'model unknown'})"
            if m.get("cpus") else "machine not recorded"
        )  # fmt: skip
    per_point: dict[tuple[str, str], int] = defaultdict(int)
    for label, r in results:
        per_point[(_series(label, r), r["scenario"])] += 1
    durations = [round(float(r["duration_s"])) for _, r in results if "duration_s" in r]
    pacing = {bool(r.get("pacing", True)) for _, r in results}
    video = " / ".join(("paced video" if p else "video in bursts") for p in sorted(pacing))
    dates = sorted(str(r["started_utc"])[:10] for _, r in results if r.get("started_utc"))
    when = (dates[0] if dates[0] == dates[-1] else f"{dates[0]} – {dates[-1]}") if dates else ""
    runs = _span(list(per_point.values()))
    lines = [
        f"SFU cost on {', '.join(sorted(machines))}, loopback",
        f"medians of {runs} run(s) of {_span(durations or [0], ' s')}, {video}"
        + (f", {when}" if when else ""),
    ]
    return "\n".join(lines)


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
    ax.axhline(12, color="grey", linewidth=0.8, linestyle=":", label="target at fan-out 21")
    ax.set_xscale("log")
    ax.set_xticks([1, 3, 6, 11, 21, 41, 99], labels=["1", "3", "6", "11", "21", "41", "99"])
    ax.set_xlabel("fan-out (subscribers per published packet)")
    ax.set_ylabel("server CPU µs per delivered packet")
    ax.set_title(describe(directory), fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)


if __name__ == "__main__":
    plot_results(Path(sys.argv[1]), Path(sys.argv[2]))
