"""``_fastpath.pyi`` says exactly what the compiled ``_fastpath`` module has (``mypy.stubtest``).

stubtest imports the built extension and compares every name, member, property and signature it
can see with the stub. C ``tp_init`` functions carry no text signature, so their runtime signature
is ``(*args, **kwargs)``: only ``Fanout.__init__`` (no arguments at all) needs an allowlist line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zvonok.media import fastpath

ROOT = Path(__file__).parents[3]
STUB = Path(fastpath.__file__).with_name("_fastpath.pyi")

#: ``Fanout_init`` parses ``""``: no arguments, which a C type cannot spell for stubtest.
ALLOWLIST = "zvonok.media._fastpath.Fanout.__init__\n"


@pytest.mark.skipif(fastpath.native is None, reason="the compiled fast path is not built")
def test_the_stub_matches_the_compiled_module(tmp_path: Path) -> None:
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text(ALLOWLIST)
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "zvonok.media._fastpath",
         "--allowlist", str(allowlist)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_stub_ships_with_the_package() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert STUB.is_file()
    assert '"media/_fastpath.pyi"' in pyproject
