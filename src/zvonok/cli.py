"""The ``zvonok`` command: ``serve``, ``token``, and management of the SQL membership tables.

Owns the click command tree and ``main`` (the console-script entry point). Imports ``config``,
``auth``, ``store``, ``ids`` and ``logs``; ``node`` (the serving process image, and so ``app``
and the media plane) only lazily, inside ``serve``, and the ``bench`` package (the load
generator, an optional extra) only inside ``bench``. Errors a user can fix (bad flags, a chat
not of two members, a duplicate id, an unknown group) print ``error: ...`` on stderr and exit
with status 2. Implements no RFC.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from pydantic import ValidationError

from .admin.cli import COMMANDS as ADMIN_COMMANDS
from .admin.cluster_cli import cluster as cluster_group
from .auth.secret import load_or_create_secret
from .config import Settings, load_settings
from .errors import StoreUnavailable
from .ids import RoomKey
from .logs import check_level

if TYPE_CHECKING:  # `serve` hands over to the serving image: its CLI imports only what it needs
    from .store.base import SqlStore

T = TypeVar("T")

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (secret, embedded database); default ZVONOK_DATA_DIR or ./.zvonok.",
)
_config = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A TOML settings file (same keys as the ZVONOK_* variables, lower case).",
)


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


def _settings(config_file: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config_file, **overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        _fail(f"invalid settings: {problems}")


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@click.group()
def cli() -> None:
    """zvonok: a WebRTC calls server (SFU + WebSocket signaling) for messengers."""


@cli.command()
@click.option("--host", default=None, help="HTTP/WebSocket listen address.")
@click.option("--port", type=int, default=None, help="HTTP/WebSocket port.")
@_data_dir
@click.option("--media-port", type=int, default=None, help="The UDP port of the media plane.")
@click.option(
    "--workers",
    default=None,
    help='Media worker processes: 1 (one process), a number, or "auto" (one per usable core).',
)
@click.option(
    "--announce-ip", multiple=True, help="Address clients reach the media port at (repeatable)."
)
@_config
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR.")
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    media_port: int | None,
    workers: str | None,
    announce_ip: tuple[str, ...],
    config_file: Path | None,
    log_format: str | None,
    log_level: str | None,
) -> None:
    """Run the server until SIGINT/SIGTERM. Flags override ZVONOK_* variables and --config."""
    settings = _settings(
        config_file,
        host=host,
        port=port,
        data_dir=data_dir,
        media_port=media_port,
        workers=workers,
        announce_ips=list(announce_ip) or None,
        log_format=log_format,
        log_level=log_level,
    )
    try:
        check_level(settings.log_level, *settings.log_levels.values())
    except ValueError as exc:
        _fail(str(exc))
    from .node import run  # a fresh process image that serves without the CLI's parsers

    run(settings)


@cli.command()
@click.option("--user", required=True, help="The user id (the token's sub).")
@click.option("--ttl", type=click.FloatRange(min=1), default=3600.0, show_default=True)
@click.option("--rooms", default=None, help="Token grants, e.g. chat:1,group:2.")
@_data_dir
@_config
def token(
    user: str, ttl: float, rooms: str | None, data_dir: Path | None, config_file: Path | None
) -> None:
    """Print an HS256 token the server accepts (development and tests)."""
    settings = _settings(config_file, data_dir=data_dir)
    if "HS256" not in settings.jwt_algorithms:
        _fail(f"the server accepts {settings.jwt_algorithms}, not HS256; sign with your own key")
    room_list = None
    if rooms is not None:
        try:
            room_list = [str(RoomKey.parse(room)) for room in _split(rooms)]
        except ValueError as exc:
            _fail(str(exc))
    from .auth.tokens import issue_token  # PyJWT and cryptography: not for `serve`

    secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
    click.echo(
        issue_token(
            secret,
            user,
            ttl,
            rooms=room_list,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )


def _with_store(settings: Settings, action: Callable[[SqlStore], Awaitable[T]]) -> T:
    """Run ``action`` on the configured SQL store (schema created first) and close it."""
    import asyncio

    from .store.base import open_sql_store

    if settings.membership_backend != "sql":
        click.echo(
            f"note: membership_backend is {settings.membership_backend!r}; "
            "the server does not read these tables",
            err=True,
        )

    async def go() -> T:
        store = open_sql_store(settings)
        try:
            await store.create_schema()
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except ValueError as exc:
        _fail(str(exc))
    except StoreUnavailable as exc:  # its message carries the database's own, without the SQL
        _fail(str(exc), code=1)


@cli.group()
def chat() -> None:
    """Private chats (exactly two members) in the SQL membership tables."""


@chat.command("create")
@click.option("--members", required=True, help="The two user ids, e.g. alice,bob.")
@click.option("--id", "room_id", default=None, help="The chat id; default: the next integer.")
@_data_dir
@_config
def chat_create(
    members: str, room_id: str | None, data_dir: Path | None, config_file: Path | None
) -> None:
    """Create a private chat and print its id."""
    settings = _settings(config_file, data_dir=data_dir)
    click.echo(_with_store(settings, lambda store: store.create_chat(_split(members), room_id)))


@cli.group()
def group() -> None:
    """Groups in the SQL membership tables."""


@group.command("create")
@click.option("--members", default="", help="User ids, e.g. alice,bob,carol.")
@click.option("--id", "room_id", default=None, help="The group id; default: the next integer.")
@_data_dir
@_config
def group_create(
    members: str, room_id: str | None, data_dir: Path | None, config_file: Path | None
) -> None:
    """Create a group and print its id."""
    settings = _settings(config_file, data_dir=data_dir)
    click.echo(_with_store(settings, lambda store: store.create_group(_split(members), room_id)))


@group.command("add")
@click.option("--id", "room_id", required=True, help="The group id.")
@click.option("--members", required=True, help="User ids to add.")
@_data_dir
@_config
def group_add(room_id: str, members: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Add members to a group; prints the group id."""
    settings = _settings(config_file, data_dir=data_dir)
    _with_store(settings, lambda store: store.add_members(room_id, _split(members)))
    click.echo(room_id)


@group.command("remove")
@click.option("--id", "room_id", required=True, help="The group id.")
@click.option("--members", required=True, help="User ids to remove.")
@_data_dir
@_config
def group_remove(
    room_id: str, members: str, data_dir: Path | None, config_file: Path | None
) -> None:
    """Remove members from a group; prints the group id."""
    settings = _settings(config_file, data_dir=data_dir)
    _with_store(settings, lambda store: store.remove_members(room_id, _split(members)))
    click.echo(room_id)


@cli.command()
@click.argument("scenario")
@click.option("--duration", type=click.FloatRange(1, 600), default=20.0, show_default=True)
@click.option("--warmup", type=click.FloatRange(0, 60), default=3.0, show_default=True)
@click.option("--rooms", type=click.IntRange(1, 200), default=None, help="Override room count.")
@click.option("--url", default=None, help="A running server (http://host:port); default: own.")
@_data_dir
@click.option("--server-pid", type=int, default=None, help="PID of --url's server (CPU, RSS).")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the result."
)
@click.option(
    "--no-pacing",
    is_flag=True,
    help="Send each video frame back to back instead of through the browser-like pacer.",
)
@click.option(
    "--janus",
    is_flag=True,
    help="Measure our own Janus VideoRoom (the installed janus binary) instead of zvonok.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Media worker processes of the server the bench starts (CPU counts every process).",
)
@click.option(
    "--tcp",
    is_flag=True,
    help="Every participant's media over ICE-TCP (RFC 6544 passive candidate) instead of UDP.",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="2: two nodes on a redis-server the bench starts; half the late joiners go through the "
    "node that does not own the room (join latency direct vs relayed).",
)
@click.option(
    "--simulcast",
    is_flag=True,
    help="Video publishers send 3 simulcast layers (rids q/h/f, their own offer) like Chrome; "
    "delivery counts the top layer.",
)
@click.option(
    "--dynacast",
    is_flag=True,
    help="With --simulcast: publishers stop and resume layers as the server's publish-layers say "
    "(as the SDK does); without it they keep sending all 3.",
)
def bench(
    scenario: str,
    duration: float,
    warmup: float,
    rooms: int | None,
    url: str | None,
    data_dir: Path | None,
    server_pid: int | None,
    json_path: Path | None,
    no_pacing: bool,
    janus: bool,
    workers: int,
    tcp: bool,
    nodes: int,
    simulcast: bool,
    dynacast: bool,
) -> None:
    """Load-test a server (see docs/benchmarks.md): mesh-4, fanout-2x5/2x10/2x20/2x40,
    calls-1to1-x25, audio-100, idle-200. Starts its own server unless --url is given; with
    --janus, its own Janus instead (for comparison; not idle-200). The summary gives the
    server's CPU per delivered packet, delivery, latency, joins and its RSS: at the end, the
    empty node (before the first join) and per session."""
    try:
        from .bench.runner import SCENARIOS, run_bench, summary, write_json
    except ImportError as exc:
        _fail(f"zvonok bench needs the bench extra (pip install 'zvonok[bench]'): {exc}")
    if scenario not in SCENARIOS:
        _fail(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    if janus and url is not None:
        _fail("--janus starts its own Janus and does not take --url")
    if workers != 1 and (janus or url is not None):
        _fail("--workers sets up the server the bench starts; not with --url or --janus")
    if tcp and janus:
        _fail("--tcp measures zvonok's ICE-TCP; not with --janus")
    if simulcast and janus:
        _fail("--simulcast measures zvonok's simulcast; not with --janus")
    if dynacast and not simulcast:
        _fail("--dynacast is about simulcast publishers; it needs --simulcast")
    if url is not None:  # the running server's secret and embedded membership database
        data_dir = _settings(None, data_dir=data_dir).data_dir
    import uvloop

    def progress(line: str) -> None:
        click.echo(line, err=True)

    try:
        result = uvloop.run(
            run_bench(
                scenario,
                duration=duration,
                rooms=rooms,
                url=url,
                data_dir=data_dir,
                server_pid=server_pid,
                warmup=warmup,
                progress=progress,
                pacing=not no_pacing,
                janus=janus,
                workers=workers,
                tcp=tcp,
                nodes=nodes,
                simulcast=simulcast,
                dynacast=dynacast,
            )  # fmt: skip
        )
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc), code=1)
    result["command"] = shlex.join(["zvonok", *sys.argv[1:]])  # how to measure it again
    if json_path is not None:
        write_json(json_path, result)
    click.echo(summary(result))


for _command in ADMIN_COMMANDS:  # rooms, kick, mute, close-room: the admin API from a shell
    cli.add_command(_command)
cli.add_command(cluster_group)  # zvonok cluster status


def main() -> None:
    """The console-script entry point (``zvonok``)."""
    cli(prog_name="zvonok")
