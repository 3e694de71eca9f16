"""A node imports what its configuration needs and nothing else (issue 17: a lighter process).

Each case runs what ``zvonok serve`` runs, in two fresh interpreters as the command does: the
CLI image (the CLI module, the settings parsed from the ``ZVONOK_*`` variables, handed over as
JSON) and the serving image ``zvonok.node`` execs into (the settings read back with
``node.handed_over``, ``app.create_app`` and ``app.build``: store, media worker, rooms, operations
on free ports, then ``app.shutdown``), and lists the serving image's ``sys.modules``. The embedded
default must not load the settings parser (pydantic), the CLI (its module and click's commands),
SQLAlchemy (the embedded store is stdlib ``sqlite3``), the admin API (FastAPI), webhooks (httpx),
the HTTP membership backend, Redis, the relay of a split or clustered node, the load generator or
any test-only library. The positive cases prove the check sees a module when the configuration
does need it. Deterministic: module names, not timings or sizes (``zvonok bench`` measures the
RSS, docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: What the embedded default must not load (a module or a package and all its submodules).
NOT_ON_THE_DEFAULT_PATH = (
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "zvonok.config_model",
    "zvonok.cli",
    "argparse",
    "watchfiles",
    "click",  # uvicorn's command line (uvicorn.main), which its package __init__ imports
    "uvicorn.main",
    "multiprocessing",  # uvicorn's process supervisors
    "zvonok.relay",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "greenlet",
    "fastapi",
    "httpx",
    "zvonok.store.sql",
    "zvonok.store.http",
    "zvonok.admin.api",
    "zvonok.admin.webhooks",
    "zvonok.admin.cluster",
    "redis",
    "zvonok.cluster.node",
    "zvonok.bench",
    "hypothesis",
    "pytest",
    "aiortc",
    "aioice",
    "av",
    "matplotlib",
)

#: The CLI image: parse the settings as ``zvonok serve`` does, print them as handed over.
_PARSE = """
import sys
from zvonok.cli import cli  # noqa: F401  (what the console script imports)
from zvonok.config import load_settings

settings = load_settings(data_dir=sys.argv[1], port=0, media_port=0, media_host="127.0.0.1")
print(settings.to_json())
"""

#: The serving image: the settings handed over, the node built and shut down, its modules.
_SERVE = """
import asyncio, json, os, sys
from zvonok import node

settings = node.handed_over(os.open(sys.argv[1], os.O_RDONLY))
from zvonok import app

app.create_app(settings)

async def main() -> None:
    components = await app.build(settings)
    await app.shutdown(components)

asyncio.run(main())
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
"""


def _python(code: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def loaded_modules(tmp_path: Path, **env: str) -> set[str]:
    """The modules a node with these ``ZVONOK_*`` variables has loaded once built."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ZVONOK_")}
    handover = tmp_path / "settings.json"
    handover.write_text(
        _python(
            _PARSE,
            str(tmp_path / "data"),
            env=clean | {f"ZVONOK_{key.upper()}": value for key, value in env.items()},
        )
    )
    names: list[str] = json.loads(_python(_SERVE, str(handover), env=clean))
    return set(names)


def loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(module.startswith(name + ".") for module in modules)


def test_the_embedded_default_loads_only_what_it_needs(tmp_path: Path) -> None:
    modules = loaded_modules(tmp_path)
    assert "zvonok.store.embedded" in modules  # the node was built with the embedded store
    assert "zvonok.media.worker" in modules
    unexpected = [name for name in NOT_ON_THE_DEFAULT_PATH if loaded(modules, name)]
    assert not unexpected, f"the embedded default imports {unexpected}"


@pytest.mark.parametrize(
    ("env", "needed"),
    [
        ({"database_url": "sqlite+aiosqlite:///{data}/other.db"}, "sqlalchemy"),
        ({"admin_token": "t" * 32}, "fastapi"),
        ({"webhook_urls": '["http://127.0.0.1:9/hook"]'}, "zvonok.admin.webhooks"),
        ({"membership_backend": "http", "membership_http_url": "http://127.0.0.1:9/"}, "httpx"),
        # nothing listens on port 9: the node starts degraded, and still loads the backend
        ({"cluster_backend": "redis", "redis_url": "redis://127.0.0.1:9/0"}, "redis"),
    ],
    ids=["database_url", "admin_token", "webhook_urls", "http-backend", "redis-cluster"],
)
def test_a_configured_feature_loads_its_modules(
    tmp_path: Path, env: dict[str, str], needed: str
) -> None:
    (tmp_path / "data").mkdir()
    values = {key: value.format(data=tmp_path / "data") for key, value in env.items()}
    assert loaded(loaded_modules(tmp_path, **values), needed)
