"""The tables of docs/benchmarks.md, from the ``--json`` results they summarise.

Owns ``table`` and a small command line: ``python -m zvonok.bench.tables RESULTS_DIR``. Result
files are named ``LABEL-SCENARIO-RUN.json`` as for ``bench.plot``; one row per (server,
scenario), each figure the median of that row's runs (the µs per delivered packet also lists the
runs, in file order). Idle runs (no packet delivered) get their own, shorter rows; runs with
media workers (``zvonok bench --workers N``) also get a row of the workers table: rooms per
worker, each worker's CPU, the front's, and the empty node's RSS per process. Standard library
only.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

#: Row order of the scenarios, as on the page.
ORDER = [
    "calls-1to1-x25", "mesh-4", "fanout-2x5", "fanout-2x10", "fanout-2x20", "fanout-2x40",
    "audio-100", "idle-200",
]  # fmt: skip
HEADER = (
    "| scenario | server | runs | delivered pkt/s | server CPU % | µs / delivered pkt (runs) "
    "| delivery a/v | duplicates, unexpected | SFU-added p50 / p95 / p99 ms | end-to-end p99 ms "
    "| RSS MB (kB/session) | join p50/max ms | generator CPU %, lag p99 ms | keyframe requests |"
)
IDLE_HEADER = (
    "| scenario | server | runs | server CPU % (runs) | RSS MB (kB/session) | empty node RSS MB |"
)

WORKERS_HEADER = (
    "| scenario | server | runs | rooms per worker (runs) | CPU % per worker | front CPU % "
    "| empty node RSS MB: front + workers |"
)


def load(directory: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(server, scenario) -> its results, in file-name order."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(directory.glob("*.json")):
        result: dict[str, Any] = json.loads(path.read_text())
        rows[(str(result.get("server", "zvonok")), str(result["scenario"]))].append(result)
    return rows


def _median(results: list[dict[str, Any]], *keys: str) -> float | None:
    values = []
    for result in results:
        value: Any = result
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(float(value))
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _row(server: str, scenario: str, results: list[dict[str, Any]]) -> str:
    def m(*keys: str) -> float | None:
        return _median(results, *keys)

    runs = ", ".join(_fmt(r.get("cpu_us_per_delivered_packet"), 1) for r in results)
    delivery = " / ".join(_fmt(m("delivery_ratio", k), 4) for k in ("audio", "video"))
    dup = sum(sum(r.get("duplicates", {}).values()) for r in results)
    unexpected = sum(sum(r.get("unexpected", {}).values()) for r in results)
    sfu = " / ".join(_fmt(m("sfu_latency_ms", q)) for q in ("p50", "p95", "p99"))
    rss = f"{_fmt(m('server_rss_mb'), 1)} ({_fmt(m('server_rss_per_session_kb'), 0)})"
    join = f"{_fmt(m('join_ms', 'p50'), 0)} / {_fmt(m('join_ms', 'max'), 0)}"
    gen = f"{_fmt(m('generator_cpu_percent'), 1)}, {_fmt(m('generator_loop_lag_ms', 'p99'), 1)}"
    cells = [
        scenario, server, str(len(results)), _fmt(m("delivered_per_s"), 0),
        _fmt(m("server_cpu_percent")),
        f"**{_fmt(m('cpu_us_per_delivered_packet'), 1)}** ({runs})", delivery,
        f"{dup}, {unexpected}", sfu, _fmt(m("latency_ms", "p99")), rss, join, gen,
        _fmt(m("keyframe_requests_seen"), 0),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def _idle_row(server: str, scenario: str, results: list[dict[str, Any]]) -> str:
    runs = ", ".join(_fmt(r.get("server_cpu_percent")) for r in results)
    rss = (
        f"{_fmt(_median(results, 'server_rss_mb'), 1)} "
        f"({_fmt(_median(results, 'server_rss_per_session_kb'), 0)})"
    )
    cpu = f"**{_fmt(_median(results, 'server_cpu_percent'))}** ({runs})"
    empty = _fmt(_median(results, "server_rss_empty_mb"), 1)
    return f"| {scenario} | {server} | {len(results)} | {cpu} | {rss} | {empty} |"


def _workers_row(server: str, scenario: str, results: list[dict[str, Any]]) -> str:
    names = list(results[0]["server_workers"])
    spread = ", ".join(
        "/".join(str(r.get("rooms_per_worker", {}).get(n, 0)) for n in names) for r in results
    )
    cpu = " / ".join(_fmt(_median(results, "server_workers", n, "cpu_percent")) for n in names)
    front = _fmt(_median(results, "server_front_cpu_percent"))
    rss_parts = ["front", *names]
    rss = " + ".join(
        _fmt(_median(results, "server_rss_empty_processes_mb", n), 1) for n in rss_parts
    )
    total = _fmt(_median(results, "server_rss_empty_mb"), 1)
    return (
        f"| {scenario} | {server} | {len(results)} | {spread} | {cpu} | {front} | {rss} = {total} |"
    )


def table(directory: Path) -> str:
    """Markdown tables (media runs, then idle runs) of the results in ``directory``."""
    rows = load(directory)

    def order(key: tuple[str, str]) -> tuple[int, bool, str]:
        server, scenario = key
        index = ORDER.index(scenario) if scenario in ORDER else len(ORDER)
        return (index, server != "zvonok", server)

    media = [k for k in sorted(rows, key=order) if _median(rows[k], "delivered_per_s")]
    idle = [k for k in sorted(rows, key=order) if k not in media]
    out: list[str] = []
    if media:
        out += [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
        out += [_row(server, scenario, rows[(server, scenario)]) for server, scenario in media]
    if idle:
        out += [""] if out else []
        out += [IDLE_HEADER, "|---|---|---|---|---|---|"]
        out += [_idle_row(server, scenario, rows[(server, scenario)]) for server, scenario in idle]
    split = [k for k in sorted(rows, key=order) if rows[k][0].get("server_workers")]
    if split:
        out += [""] if out else []
        out += [WORKERS_HEADER, "|---|---|---|---|---|---|---|"]
        out += [
            _workers_row(server, scenario, rows[(server, scenario)]) for server, scenario in split
        ]
    return "\n".join(out)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
