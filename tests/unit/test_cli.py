"""The ``zvonok`` command: token, chat/group management and serve's settings, on a tmp data dir."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from zvonok.auth.secret import load_or_create_secret
from zvonok.auth.tokens import Grants, TokenVerifier
from zvonok.cli import cli
from zvonok.config import Settings
from zvonok.ids import RoomKey, UserId
from zvonok.store.sql import SqlMembershipStore


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ZVONOK_* variable of the machine leaks in; ZVONOK_CONFIG is restored afterwards."""
    for name in list(os.environ):
        if name.startswith("ZVONOK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ZVONOK_CONFIG", "")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def is_member(data_dir: Path, user: str, room: str) -> bool:
    """Ask the embedded database directly (the CLI runs its own event loop, so tests are sync)."""

    async def ask() -> bool:
        store = SqlMembershipStore(f"sqlite+aiosqlite:///{data_dir / 'zvonok.db'}")
        try:
            grants = Grants(UserId(user), time.time() + 60, None, None)
            return await store.is_member(grants, RoomKey.parse(room))
        finally:
            await store.close()

    return asyncio.run(ask())


async def test_token_is_accepted_and_secret_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    result = run(
        "token", "--user", "42", "--rooms", "chat:1, group:abc", "--data-dir", str(data_dir)
    )
    assert result.exit_code == 0, result.stderr
    secret_file = data_dir / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    settings = Settings.model_validate({})
    verifier = TokenVerifier(settings, load_or_create_secret(data_dir))
    grants = await verifier.verify(result.stdout.strip())
    assert grants.user_id == "42"
    assert grants.rooms == frozenset({"chat:1", "group:abc"})
    assert grants.expires_at == pytest.approx(time.time() + 3600, abs=10)


async def test_token_uses_configured_secret_and_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZVONOK_JWT_SECRET", "k" * 64)
    monkeypatch.setenv("ZVONOK_DATA_DIR", str(tmp_path / "env-dir"))
    result = run("token", "--user", "bob", "--ttl", "60")
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / "env-dir").exists()
    verifier = TokenVerifier(Settings.model_validate({"jwt_secret": "k" * 64}), None)
    grants = await verifier.verify(result.stdout.strip())
    assert (grants.user_id, grants.rooms) == ("bob", None)
    assert grants.expires_at == pytest.approx(time.time() + 60, abs=10)


def test_token_refuses_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("token", "--user", "a", "--rooms", "room:1", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "room kind 'room' is not 'chat' or 'group'" in result.stderr
    monkeypatch.setenv("ZVONOK_JWT_ALGORITHMS", '["RS256"]')
    result = run("token", "--user", "a", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "not HS256" in result.stderr


def test_chat_commands(tmp_path: Path) -> None:
    data_dir = str(tmp_path)
    assert run("chat", "create", "--members", "alice,bob", "--data-dir", data_dir).stdout == "1\n"
    assert run("chat", "create", "--members", "a,c", "--data-dir", data_dir).stdout == "2\n"
    result = run("chat", "create", "--members", "a,c", "--id", "dm-9", "--data-dir", data_dir)
    assert result.stdout == "dm-9\n"
    duplicate = run("chat", "create", "--members", "x,y", "--id", "1", "--data-dir", data_dir)
    assert (duplicate.exit_code, duplicate.stderr) == (2, "error: chat 1 already exists\n")
    for members in ("alice", "alice,alice", "a,b,c"):
        wrong = run("chat", "create", "--members", members, "--data-dir", data_dir)
        assert wrong.exit_code == 2
        assert "exactly 2 distinct members" in wrong.stderr
    assert is_member(tmp_path, "bob", "chat:1")
    assert is_member(tmp_path, "c", "chat:dm-9")
    assert not is_member(tmp_path, "c", "chat:1")


def test_group_commands(tmp_path: Path) -> None:
    data_dir = str(tmp_path)
    assert run("group", "create", "--members", "a,b,c", "--data-dir", data_dir).stdout == "1\n"
    result = run("group", "create", "--members", "a", "--id", "team", "--data-dir", data_dir)
    assert result.stdout == "team\n"
    assert run("group", "add", "--id", "1", "--members", "d,e", "--data-dir", data_dir).stdout == (
        "1\n"
    )
    removed = run("group", "remove", "--id", "1", "--members", "a", "--data-dir", data_dir)
    assert removed.stdout == "1\n"
    for command in ("add", "remove"):
        unknown = run("group", command, "--id", "9", "--members", "a", "--data-dir", data_dir)
        assert (unknown.exit_code, unknown.stderr) == (2, "error: no group '9'\n")
    duplicate = run("group", "create", "--members", "a", "--id", "team", "--data-dir", data_dir)
    assert duplicate.exit_code == 2
    assert is_member(tmp_path, "e", "group:1")
    assert not is_member(tmp_path, "a", "group:1")
    assert is_member(tmp_path, "a", "group:team")


def test_data_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZVONOK_DATA_DIR", str(tmp_path / "from-env"))
    assert run("group", "create", "--members", "a").stdout == "1\n"
    assert (tmp_path / "from-env" / "zvonok.db").exists()


def test_serve_builds_settings_from_flags_env_and_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Settings] = []
    fake_node = types.ModuleType("zvonok.node")
    fake_node.run = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zvonok.node", fake_node)
    config = tmp_path / "zvonok.toml"
    config.write_text('port = 7000\nlog_level = "DEBUG"\nmedia_port = 41000\n')
    monkeypatch.setenv("ZVONOK_HOST", "127.0.0.2")
    monkeypatch.setenv("ZVONOK_MEDIA_PORT", "42000")
    result = run(
        "serve",
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "d"),
        "--announce-ip",
        "127.0.0.1",
        "--announce-ip",
        "127.0.0.3",
        "--log-format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    (settings,) = seen
    assert (settings.host, settings.port, settings.media_port) == ("127.0.0.2", 7000, 42000)
    assert settings.announce_ips == ["127.0.0.1", "127.0.0.3"]
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    assert settings.data_dir == tmp_path / "d"
    result = run("serve", "--config", str(config), "--port", "7001", "--media-port", "0")
    assert result.exit_code == 0, result.stderr
    assert (seen[1].port, seen[1].media_port) == (7001, 0)


def test_serve_workers_from_flag_env_and_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``workers``: 1 by default (one process), a number, or "auto" (usable cores)."""
    seen: list[Settings] = []
    fake_node = types.ModuleType("zvonok.node")
    fake_node.run = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zvonok.node", fake_node)
    monkeypatch.delenv("ZVONOK_WORKERS", raising=False)
    assert run("serve").exit_code == 0
    assert (seen[-1].workers, seen[-1].worker_count) == (1, 1)
    assert run("serve", "--workers", "3").exit_code == 0
    assert seen[-1].worker_count == 3
    assert run("serve", "--workers", "auto").exit_code == 0
    assert seen[-1].worker_count == len(os.sched_getaffinity(0))
    monkeypatch.setenv("ZVONOK_WORKERS", "2")
    assert run("serve").exit_code == 0
    assert seen[-1].worker_count == 2
    config = tmp_path / "zvonok.toml"
    config.write_text('workers = "auto"\n')
    monkeypatch.delenv("ZVONOK_WORKERS")
    assert run("serve", "--config", str(config)).exit_code == 0
    assert seen[-1].workers == "auto"
    for bad in ("0", "257", "many"):
        result = run("serve", "--workers", bad)
        assert result.exit_code == 2, bad
        assert "invalid settings: workers" in result.stderr


def test_serve_reports_invalid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zvonok.node", types.ModuleType("zvonok.node"))
    result = run("serve", "--port", "70000")
    assert result.exit_code == 2
    assert "invalid settings: port" in result.stderr


def test_python_dash_m(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ZVONOK_")}
    done = subprocess.run(
        [sys.executable, "-m", "zvonok", "chat", "create", "--members", "a,b"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr
    assert (tmp_path / ".zvonok" / "zvonok.db").exists()


def test_the_settings_handover_is_not_an_option_to_give_by_hand(tmp_path: Path) -> None:
    """``serve --settings-fd N`` is what ``zvonok serve`` execs into (``zvonok.node``); by hand,
    without a handover behind the fd, it stops with a message instead of a traceback."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ZVONOK_")}
    done = subprocess.run(
        [sys.executable, "-m", "zvonok", "serve", "--settings-fd", "999"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "zvonok serve's own handover" in done.stderr and "Traceback" not in done.stderr
