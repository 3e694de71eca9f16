"""The import rules of docs/architecture.md, checked on every module's imports (static, via ast).

signaling → rooms → media, one way; media imports nothing above it; the server never imports the
load generator (bench) or test code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "zvonok"

#: package (first component under zvonok) -> packages it must never import
FORBIDDEN: dict[str, set[str]] = {
    "media": {"rooms", "signaling", "auth", "store", "cluster", "admin", "app", "metrics", "web",
              "cli", "bench", "config"},
    "rooms": {"signaling", "admin", "app", "web", "cli", "bench"},
    "signaling": {"admin", "app", "web", "cli", "bench"},
    "auth": {"rooms", "signaling", "media", "store", "admin", "app", "bench"},
    "store": {"rooms", "signaling", "media", "admin", "app", "bench"},
    "cluster": {"rooms", "signaling", "media", "admin", "app", "bench"},
    "app": {"bench"},
    "admin": {"bench", "signaling"},
    "metrics": {"bench", "signaling"},
}  # fmt: skip


def zvonok_imports(path: Path) -> set[str]:
    """First components under ``zvonok`` of everything ``path`` imports (absolute or relative)."""
    module = path.relative_to(SRC.parent).with_suffix("").parts
    package = module[:-1] if path.name != "__init__.py" else module[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                names = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:
                    names = [".".join(base + [a.name]) for a in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "zvonok" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_layer_rules(path: Path) -> None:
    layer = path.relative_to(SRC).parts[0].removesuffix(".py")
    banned = FORBIDDEN.get(layer, set())
    wrong = zvonok_imports(path) & banned
    assert not wrong, f"{path.relative_to(SRC)} imports {sorted(wrong)} (see docs/architecture.md)"


def test_the_checker_sees_relative_imports() -> None:
    participant = SRC / "rooms" / "participant.py"
    assert "media" in zvonok_imports(participant)
