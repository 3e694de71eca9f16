"""The process image of a serving node: validated settings in, the server out (``zvonok serve``).

``zvonok serve`` parses its flags (click) and validates the settings (pydantic) in the CLI; its
``run`` then replaces the process image (``execv``: the same PID, standard streams, environment
and interpreter flags) with ``python -m zvonok serve --settings-fd N -- <the original flags>``,
handing the validated settings over as JSON in an inherited memfd. ``zvonok.__main__`` sends
that command line here before the CLI is imported; this image rebuilds the settings with
``Settings.from_json`` and serves (``app.run``) without ever loading the parsers: pydantic and
pydantic-settings alone are ~10 MB of an empty node (issue 17, docs/benchmarks.md). The
original flags after ``--`` are only there for ``ps``/``pgrep -f "zvonok serve"``. Where a
memfd or ``execv`` is not available the CLI process serves itself, as before. Implements no RFC.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from .config import Settings

#: ``python -m zvonok`` arguments that mean "serve the settings handed over in fd N".
HANDOVER = ("serve", "--settings-fd")


def run(settings: Settings) -> None:
    """Serve ``settings`` until SIGINT/SIGTERM, in a fresh process image when this one can be
    replaced (it returns only when it could not, after serving in this process)."""
    if hasattr(os, "memfd_create") and sys.executable:
        fd = os.memfd_create("zvonok-settings")  # close-on-exec until handed over below
        os.write(fd, settings.to_json().encode())
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        # -X, -W, -O ... as this interpreter got them (what multiprocessing's spawn passes on)
        flags: list[str] = getattr(subprocess, "_args_from_interpreter_flags", list)()
        shown = sys.argv[2:] if sys.argv[1:2] == ["serve"] else []
        argv = [sys.executable, *flags, "-m", "zvonok", *HANDOVER, str(fd), "--", *shown]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, argv)
    from .app import run as serve

    serve(settings)


def is_handover(argv: list[str]) -> bool:
    """Whether ``python -m zvonok`` was started by ``run`` (``argv`` without the program)."""
    return len(argv) >= 3 and tuple(argv[:2]) == HANDOVER and argv[2].isdigit()


def handed_over(fd: int) -> Settings:
    """The settings ``run`` handed over in ``fd`` (closed after reading), with the process
    prepared to import only what serving them needs."""
    with os.fdopen(fd, "rb") as handover:
        settings = Settings.from_json(handover.read())
    # uvicorn's package imports its reloader, and so watchfiles (a Rust extension, ~0.9 MB
    # resident), only to offer --reload, which a node never uses; without it uvicorn picks its
    # stat-based reloader class, which is never started either.
    sys.modules.setdefault("watchfiles", None)  # type: ignore[arg-type]
    _uvicorn_without_its_command_line()
    return settings


def _uvicorn_without_its_command_line() -> None:
    """uvicorn's package ``__init__`` imports its command line (``uvicorn.main``: click, ~1.7 MB
    resident) and its process supervisors (multiprocessing, ~0.6 MB) only to offer ``run`` and
    ``main``; a node uses ``uvicorn.Config``, ``uvicorn.Server`` and the protocol modules. So the
    package is registered without running its ``__init__`` (its submodules import as usual) and
    gets the two names ``__init__`` would have given it."""
    if "uvicorn" in sys.modules:
        return
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules["uvicorn"] = package
    try:
        from uvicorn._version import __version__
        from uvicorn.config import Config
        from uvicorn.server import Server
    except BaseException:
        del sys.modules["uvicorn"]
        raise
    package.__version__ = __version__  # type: ignore[attr-defined]
    package.Config = Config  # type: ignore[attr-defined]
    package.Server = Server  # type: ignore[attr-defined]


def main(argv: list[str]) -> None:
    """Serve the settings ``run`` handed over (``argv``: ``serve --settings-fd N -- ...``)."""
    try:
        settings = handed_over(int(argv[2]))
    except (OSError, ValueError) as exc:  # not started by ``run``: no such fd, or not settings
        sys.exit(f"error: --settings-fd is zvonok serve's own handover, not an option ({exc})")
    from .app import run as serve

    serve(settings)
