"""The fields of ``config.Settings``: every setting's name, type, default, bounds and whether it
is a secret, defined once.

``config.Settings`` (the plain settings every layer reads) is ``SettingsFields`` with its
properties and its parsing; ``config_model.SettingsModel`` (the parser, pydantic) is generated
from these fields (their bounds travel in each field's metadata, ``setting``). Imports no parser:
the serving image loads this module. Every field is documented in ``docs/configuration.md``;
keep the two in step. Implements no RFC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from .auth.turn import DEFAULT_TTL

# ``Path``, ``Any`` and ``Literal`` stay imported at run time: ``config_model`` resolves the
# fields' annotations in this module (``typing.get_type_hints``).

_T = TypeVar("_T")


@dataclass(frozen=True)
class Bounds:
    """A numeric setting's limits, checked when settings are parsed (pydantic's ``ge``, ``gt``,
    ``le``); ``None``: no such limit."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None


NO_BOUNDS = Bounds()


def setting(
    default: _T,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    secret: bool = False,
) -> _T:
    """A field of ``Settings`` with a default and bounds (``value >= ge``, ``> gt``, ``<= le``);
    a ``secret`` one is left out of the ``repr`` (of ``Settings`` and of the parser's model)."""
    bounds = Bounds(ge=ge, gt=gt, le=le)
    metadata = {} if bounds == NO_BOUNDS else {"bounds": bounds}
    return field(default=default, repr=not secret, metadata=metadata)


def bounds_of(item: Field[Any]) -> Bounds:
    """The bounds ``setting`` gave a field of ``Settings`` (``NO_BOUNDS`` when none)."""
    bounds: Bounds = item.metadata.get("bounds", NO_BOUNDS)
    return bounds


@dataclass(frozen=True, kw_only=True)
class SettingsFields:
    """The fields of ``config.Settings`` (which see); immutable once made."""

    # --- HTTP / WebSocket ---
    host: str = "127.0.0.1"
    port: int = setting(8080, ge=0, le=65535)
    data_dir: Path = Path(".zvonok")
    dev_mode: bool | None = None
    forwarded_allow_ips: list[str] = field(default_factory=list)

    # --- processes ---
    #: Media worker processes: 1 = one process (rooms, media and HTTP together); N or "auto"
    #: (usable cores) = a front process for HTTP plus N media workers (docs/architecture.md).
    workers: int | Literal["auto"] = 1

    # --- media plane ---
    media_host: str = "0.0.0.0"
    media_port: int = setting(40000, ge=0, le=65535)
    announce_ips: list[str] = field(default_factory=list)
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str | None = setting(None, secret=True)  # never logged or shown
    turn_ttl: int = setting(DEFAULT_TTL, gt=0)
    consent_timeout: float = 30.0
    dtls_timeout: float = 10.0
    ice_tcp: bool = True
    media_tcp_port: int | None = setting(None, ge=0, le=65535)
    ice_tcp_max_connections: int = setting(1000, gt=0)
    ice_tcp_auth_timeout: float = setting(5.0, gt=0)

    # --- auth ---
    jwt_algorithms: list[str] = field(default_factory=lambda: ["HS256"])
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: float = 30.0
    jwks_timeout: float = setting(5.0, gt=0)
    jwks_cache_ttl: float = setting(300.0, gt=0)
    jwks_refresh_cooldown: float = setting(30.0, ge=0)

    # --- membership ---
    membership_backend: Literal["sql", "http", "token"] = "sql"
    database_url: str | None = None
    sql_member_query_chat: str | None = None
    sql_member_query_group: str | None = None
    sql_timeout: float = setting(5.0, gt=0)
    membership_http_url: str | None = None
    membership_http_timeout: float = 2.0
    membership_http_cache_ttl: float = 10.0
    membership_http_token: str | None = None

    # --- rooms and sessions ---
    max_participants: int = setting(0, ge=0)
    resume_grace: float = setting(30.0, ge=0)
    inactivity_timeout: float = setting(60.0, gt=0)
    ping_interval: float = setting(10.0, gt=0)
    glare_yield_ms: int = setting(1000, ge=0)
    max_sessions_per_user: int = setting(8, ge=0)
    ws_compression: bool = False
    #: SIGTERM / ``zvonok drain``: how long existing rooms may go on before their sessions are
    #: told ``node-draining`` (shared design ``cluster.md`` §4 "Graceful drain": 15 min).
    drain_timeout: float = setting(900.0, ge=0)

    # --- limits ---
    max_message_bytes: int = setting(256 * 1024, gt=0)
    message_rate: float = setting(50.0, gt=0)
    message_burst: int = setting(200, gt=0)
    bad_message_limit: int = setting(20, gt=0)
    max_pending_ice: int = setting(200, gt=0)
    max_tracks_per_session: int = setting(16, gt=0)
    send_queue_size: int = setting(256, gt=0)
    connect_rate: float = setting(20.0, gt=0)
    connect_burst: int = setting(200, gt=0)
    max_connections: int = setting(10_000, gt=0)
    max_connections_per_ip: int = setting(200, gt=0)
    header_timeout: float = setting(10.0, gt=0)
    join_timeout: float = setting(10.0, gt=0)

    # --- logging ---
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_levels: dict[str, str] = field(default_factory=dict)

    # --- operations: stats, admin API, webhooks ---
    stats_interval: float = setting(5.0, ge=0)
    admin_token: str | None = None
    webhook_urls: list[str] = field(default_factory=list)
    webhook_secret: str | None = None
    webhook_timeout: float = setting(5.0, gt=0)
    webhook_max_attempts: int = setting(8, ge=1)
    webhook_backoff: float = setting(0.5, gt=0)
    webhook_backoff_max: float = setting(30.0, gt=0)
    webhook_queue_size: int = setting(10_000, gt=0)

    # --- cluster (shared design cluster.md; docs/configuration.md "Cluster") ---
    #: ``local``: this node alone, no Redis (today's behaviour); ``redis``: nodes share Redis.
    cluster_backend: Literal["local", "redis"] = "local"
    redis_url: str | None = setting(None, secret=True)  # may carry a password: never logged
    redis_sentinels: list[str] = field(default_factory=list)
    redis_master_name: str | None = None
    redis_password: str | None = setting(None, secret=True)  # the master's AUTH under Sentinel
    node_id: str | None = None
    #: Multiplies every cluster interval and TTL (heartbeats, leases, relay resends); below 1
    #: only for tests (docs/configuration.md).
    cluster_timing: float = setting(1.0, gt=0, le=1)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Self:
        """One holding ``values`` (one for every field) as they are: not validated."""
        made = object.__new__(cls)
        fill(made, values)
        return made


def fill(target: SettingsFields, values: Mapping[str, Any]) -> None:
    """Set every field of (frozen) ``target`` from ``values``."""
    for item in fields(target):
        object.__setattr__(target, item.name, values[item.name])
