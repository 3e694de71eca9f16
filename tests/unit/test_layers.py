"""The import rules of docs/architecture.md, checked on every module's imports (static, via ast).

signaling → rooms → media, one way; media imports nothing above it; the server never imports the
load generator (bench) or test code. The one door downwards-up: ``rooms`` may import the wire
vocabulary ``signaling.messages`` (the typed messages it sends), and nothing else of ``signaling``.
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

#: package -> modules (under zvonok) it may import although their package is forbidden to it
ALLOWED: dict[str, set[str]] = {
    "rooms": {"signaling.messages"},
}


def zvonok_imports(path: Path) -> set[str]:
    """First components under ``zvonok`` of everything ``path`` imports (absolute or relative)."""
    return {name.split(".")[0] for name in zvonok_modules(path)}


def zvonok_modules(path: Path) -> set[str]:
    """Dotted names under ``zvonok`` of everything ``path`` imports (``signaling.messages``)."""
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
                found.add(".".join(parts[1:]))
    return found


MODULES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_layer_rules(path: Path) -> None:
    layer = path.relative_to(SRC).parts[0].removesuffix(".py")
    banned = FORBIDDEN.get(layer, set())
    allowed = ALLOWED.get(layer, set())
    wrong = {
        name.split(".")[0]
        for name in zvonok_modules(path)
        if name.split(".")[0] in banned and name not in allowed
    }
    assert not wrong, f"{path.relative_to(SRC)} imports {sorted(wrong)} (see docs/architecture.md)"


def test_the_checker_sees_relative_imports() -> None:
    participant = SRC / "rooms" / "participant.py"
    assert "media" in zvonok_imports(participant)
    assert "signaling.messages" in zvonok_modules(participant)


def test_rooms_import_only_the_wire_vocabulary_of_signaling() -> None:
    """The rooms layer sends typed messages (``signaling.messages``) and sees no connection."""
    for path in sorted((SRC / "rooms").rglob("*.py")):
        signaling = {n for n in zvonok_modules(path) if n.split(".")[0] == "signaling"}
        assert signaling <= {"signaling.messages"}, (path.name, signaling)


def test_the_websocket_endpoint_does_not_import_the_media_plane() -> None:
    """Issue 13: the front process (signaling) needs no media; candidates are checked by
    ``signaling.messages``. Only that module may name ``media`` (its candidate grammar)."""
    assert "media" not in zvonok_imports(SRC / "signaling" / "ws.py")
    for path in sorted((SRC / "signaling").rglob("*.py")):
        if path.name != "messages.py":
            assert "media" not in zvonok_imports(path), path.name


def test_the_wire_vocabulary_imports_no_layer() -> None:
    """``signaling.messages`` is shared by both sides of the boundary: ids and the candidate
    grammar (a leaf of the media plane that imports nothing) only."""
    imported = {n.split(".")[0] for n in zvonok_modules(SRC / "signaling" / "messages.py")}
    assert imported <= {"ids", "media"}
    media = {n for n in zvonok_modules(SRC / "signaling" / "messages.py") if n.startswith("media")}
    assert all(n.startswith("media.sdp.candidate") for n in media), media
