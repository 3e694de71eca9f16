"""One typed settings object for the whole server.

Sources, highest priority first: explicit overrides (CLI flags), ``ZVONOK_*`` environment
variables, an optional TOML file (``--config`` / ``ZVONOK_CONFIG``), then the defaults below.
Every field is documented in ``docs/configuration.md``; keep the two in step.

``Settings`` is a frozen dataclass: constructing one (``Settings(...)``,
``Settings.model_validate``, ``load_settings``) parses and validates through
``config_model.SettingsModel`` (pydantic, loaded on first use; a bad value raises its
``ValidationError``). A process that gets settings validated elsewhere (the serving image,
``node``; a media worker, ``relay.worker``) rebuilds them with ``from_json`` without loading
pydantic (issue 17: a lighter process). Implements no RFC.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .auth.turn import DEFAULT_TTL
from .edge import is_loopback_host

if TYPE_CHECKING:
    from .config_model import SettingsModel


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of a zvonok node. Immutable once loaded.

    mypy sees the dataclass's keyword arguments; at run time ``Settings(**values)`` validates
    them together with the environment and the TOML file (``_validating_init`` below).
    """

    # --- HTTP / WebSocket ---
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".zvonok")
    dev_mode: bool | None = None
    forwarded_allow_ips: list[str] = field(default_factory=list)

    # --- processes ---
    #: Media worker processes: 1 = one process (rooms, media and HTTP together); N or "auto"
    #: (usable cores) = a front process for HTTP plus N media workers (docs/architecture.md).
    workers: int | Literal["auto"] = 1

    # --- media plane ---
    media_host: str = "0.0.0.0"
    media_port: int = 40000
    announce_ips: list[str] = field(default_factory=list)
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str | None = field(default=None, repr=False)  # never logged or shown
    turn_ttl: int = DEFAULT_TTL
    consent_timeout: float = 30.0
    dtls_timeout: float = 10.0
    ice_tcp: bool = True
    media_tcp_port: int | None = None
    ice_tcp_max_connections: int = 1000
    ice_tcp_auth_timeout: float = 5.0

    # --- auth ---
    jwt_algorithms: list[str] = field(default_factory=lambda: ["HS256"])
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: float = 30.0
    jwks_timeout: float = 5.0
    jwks_cache_ttl: float = 300.0
    jwks_refresh_cooldown: float = 30.0

    # --- membership ---
    membership_backend: Literal["sql", "http", "token"] = "sql"
    database_url: str | None = None
    sql_member_query_chat: str | None = None
    sql_member_query_group: str | None = None
    sql_timeout: float = 5.0
    membership_http_url: str | None = None
    membership_http_timeout: float = 2.0
    membership_http_cache_ttl: float = 10.0
    membership_http_token: str | None = None

    # --- rooms and sessions ---
    max_participants: int = 0
    resume_grace: float = 30.0
    inactivity_timeout: float = 60.0
    ping_interval: float = 10.0
    glare_yield_ms: int = 1000
    max_sessions_per_user: int = 8
    ws_compression: bool = False
    #: SIGTERM / ``zvonok drain``: how long existing rooms may go on before their sessions are
    #: told ``node-draining`` (shared design ``cluster.md`` §4 "Graceful drain": 15 min).
    drain_timeout: float = 900.0

    # --- limits ---
    max_message_bytes: int = 256 * 1024
    message_rate: float = 50.0
    message_burst: int = 200
    bad_message_limit: int = 20
    max_pending_ice: int = 200
    max_tracks_per_session: int = 16
    send_queue_size: int = 256
    connect_rate: float = 20.0
    connect_burst: int = 200
    max_connections: int = 10_000
    max_connections_per_ip: int = 200
    header_timeout: float = 10.0
    join_timeout: float = 10.0

    # --- logging ---
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_levels: dict[str, str] = field(default_factory=dict)

    # --- operations: stats, admin API, webhooks ---
    stats_interval: float = 5.0
    admin_token: str | None = None
    webhook_urls: list[str] = field(default_factory=list)
    webhook_secret: str | None = None
    webhook_timeout: float = 5.0
    webhook_max_attempts: int = 8
    webhook_backoff: float = 0.5
    webhook_backoff_max: float = 30.0
    webhook_queue_size: int = 10_000

    # --- cluster (shared design cluster.md; docs/configuration.md "Cluster") ---
    #: ``local``: this node alone, no Redis (today's behaviour); ``redis``: nodes share Redis.
    cluster_backend: Literal["local", "redis"] = "local"
    redis_url: str | None = field(default=None, repr=False)  # may carry a password: never logged
    redis_sentinels: list[str] = field(default_factory=list)
    redis_master_name: str | None = None
    redis_password: str | None = field(default=None, repr=False)  # the master's AUTH under Sentinel
    node_id: str | None = None
    #: Multiplies every cluster interval and TTL (heartbeats, leases, relay resends); below 1
    #: only for tests (docs/configuration.md).
    cluster_timing: float = 1.0

    @property
    def dev_enabled(self) -> bool:
        """Development helpers are on when asked for, or by default on a loopback embedded setup.

        The embedded setup is an auto-generated HS256 secret and the embedded SQLite store; as soon
        as an operator points zvonok at real keys or a real database, or binds the HTTP server to
        anything but a loopback address, dev mode must be asked for (``dev_mode = true``).
        """
        if self.dev_mode is not None:
            return self.dev_mode
        return (
            is_loopback_host(self.host)
            and self.jwt_secret is None
            and self.jwt_public_key is None
            and self.jwks_url is None
            and self.membership_backend == "sql"
            and self.database_url is None
        )

    @property
    def worker_count(self) -> int:
        """How many media worker processes ``workers`` asks for (``auto``: usable cores)."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return self.workers

    @property
    def cluster_node_id(self) -> str:
        """This node's name in the cluster: ``node_id``, else ``<hostname>:<port>``."""
        if self.node_id is not None:
            return self.node_id
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:58] or "node"
        return f"{host}:{self.port}"

    @property
    def dev_on_network(self) -> bool:
        """Dev mode is on while the HTTP server listens on a non-loopback address."""
        return self.dev_enabled and not is_loopback_host(self.host)

    @classmethod
    def model_validate(cls, values: Mapping[str, Any]) -> Settings:
        """``values`` validated as pydantic-settings' ``model_validate`` does (the values win
        over the environment and the TOML file); raises ``pydantic.ValidationError``."""
        from .config_model import SettingsModel

        return cls._of(SettingsModel.model_validate(dict(values)))

    @classmethod
    def from_json(cls, text: str | bytes) -> Settings:
        """Settings that ``to_json`` wrote after validation, rebuilt without validating again
        (and so without pydantic); every field must be there."""
        values = json.loads(text)
        names = {item.name for item in fields(cls)}
        if not isinstance(values, dict) or set(values) != names:
            raise ValueError("not the JSON of a complete Settings")
        values["data_dir"] = Path(values["data_dir"])
        settings = object.__new__(cls)
        _fill(settings, values)
        return settings

    def to_json(self) -> str:
        """Every field as JSON (secrets included: only for a process of this node)."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        values["data_dir"] = str(self.data_dir)
        return json.dumps(values)

    @classmethod
    def _of(cls, model: SettingsModel) -> Settings:
        settings = object.__new__(cls)
        _fill(settings, {item.name: getattr(model, item.name) for item in fields(cls)})
        return settings


def _fill(settings: Settings, values: Mapping[str, Any]) -> None:
    for item in fields(Settings):
        object.__setattr__(settings, item.name, values[item.name])


def _validating_init(self: Settings, **values: Any) -> None:
    """``Settings(**values)``: the values, the ``ZVONOK_*`` environment and the TOML file,
    parsed and validated by ``SettingsModel`` (pydantic-settings)."""
    from .config_model import SettingsModel

    model = SettingsModel(**values)
    _fill(self, {item.name: getattr(model, item.name) for item in fields(Settings)})


# Outside the class body, so that type checkers keep the dataclass's typed keyword arguments.
setattr(Settings, "__init__", _validating_init)  # noqa: B010


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings; ``overrides`` (from CLI flags) win; ``None`` overrides are ignored."""
    if config_file is not None:
        os.environ["ZVONOK_CONFIG"] = str(config_file)
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)
