"""Errors that happen must fail the test: what counts as one, and the allow-list.

Owns ``Allowed`` (the test's ``@pytest.mark.allow_errors(server=[...], client=[...])``: regular
expressions, searched in an error's text, naming the errors that are the point of the test),
``server_problems`` (the ERROR/CRITICAL records and tracebacks among a server's captured output
lines, JSON or text format) and ``check`` (raise ``AssertionError`` listing every error the
allow-list does not cover). The fixtures of server.py, chromium.py, firefox.py and aiortc_peer.py
call ``check`` at teardown, so every integration test ends by asserting that neither the server
nor any client recorded an error it did not expect.

Imports only the standard library and pytest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest

MARKER = "allow_errors"
MARKER_HELP = (
    f"{MARKER}(server=[regex, ...], client=[regex, ...], reason=str): errors the test expects;"
    " any other server ERROR/traceback or client-recorded error fails it at teardown"
)
# zvonok's text format (``<time> ERROR <logger>: ...``) and uvicorn's own (``ERROR:    ...``).
_TEXT_LEVEL = re.compile(r"^(\S+ (ERROR|CRITICAL) |(ERROR|CRITICAL):)")
SHOWN = 20


@dataclass(frozen=True, slots=True)
class Allowed:
    """The allow-list of one test (empty unless it carries the marker)."""

    server: tuple[re.Pattern[str], ...] = ()
    client: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(cls, request: pytest.FixtureRequest) -> Allowed:
        marker = request.node.get_closest_marker(MARKER)
        if marker is None:
            return cls()
        if marker.args or not marker.kwargs.get("reason"):
            raise ValueError(f"@pytest.mark.{MARKER} takes server=, client= and a reason=")
        return cls(
            server=tuple(re.compile(p) for p in marker.kwargs.get("server", ())),
            client=tuple(re.compile(p) for p in marker.kwargs.get("client", ())),
        )


def server_problems(lines: Iterable[str]) -> list[str]:
    """The ERROR/CRITICAL records and tracebacks in a server's output (one entry per record)."""
    out: list[str] = []
    in_traceback = False
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            in_traceback = False
            if str(entry.get("level")) in ("ERROR", "CRITICAL") or entry.get("exc"):
                out.append(line)
            continue
        if _TEXT_LEVEL.match(line):
            out.append(line)
            in_traceback = False
        elif line.startswith("Traceback (most recent call last)"):
            out.append(line)
            in_traceback = True
        elif in_traceback and out and line.strip():
            out[-1] += "\n" + line  # the traceback's body, so the allow-list can match it
            if not line.startswith((" ", "\t")):
                in_traceback = False  # the exception line ends it
    return out


def check(what: str, errors: Sequence[str], allowed: Sequence[re.Pattern[str]]) -> None:
    """Fail with every error in ``errors`` that no pattern of ``allowed`` covers."""
    unexpected = [e for e in errors if not any(p.search(e) for p in allowed)]
    if unexpected:
        shown = "\n".join(f"  {e[:2000]}" for e in unexpected[:SHOWN])
        more = f"\n  ... and {len(unexpected) - SHOWN} more" if len(unexpected) > SHOWN else ""
        raise AssertionError(
            f"{what} recorded {len(unexpected)} unexpected error(s) (allow one with "
            f"@pytest.mark.{MARKER} if it is the point of the test):\n{shown}{more}"
        )
