"""The parser of the settings: the pydantic model that reads and validates them.

Sources, highest priority first: explicit values (CLI flags), ``ZVONOK_*`` environment variables,
an optional TOML file (``--config`` / ``ZVONOK_CONFIG``), then the defaults. ``SettingsModel`` has
the fields of ``config.Settings`` (same names, types and defaults; ``tests/unit/test_config.py``
holds the two in step) with their bounds and checks. Imported only where settings are parsed
(``Settings(...)``, ``Settings.model_validate``: the CLI, tests): a serving node gets its
settings already validated and never loads pydantic (issue 17, docs/benchmarks.md).
Implements no RFC.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .auth.turn import DEFAULT_TTL, check_turn_settings
from .cluster.settings import check_redis_url, parse_sentinel
from .media.transport.address import canonical_ip

#: A node id is part of Redis key names: short, no spaces, no braces.
NODE_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class SettingsModel(BaseSettings):
    """Parses and validates every field of ``config.Settings`` (same names, types, defaults)."""

    model_config = SettingsConfigDict(
        env_prefix="ZVONOK_",
        frozen=True,
        extra="forbid",
        env_nested_delimiter="__",
        hide_input_in_errors=True,  # an error must not print turn_secret, jwt_secret, ...
        title="Settings",  # errors name the class callers construct (config.Settings)
    )

    # --- HTTP / WebSocket ---
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path(".zvonok")
    dev_mode: bool | None = None
    forwarded_allow_ips: list[str] = Field(default_factory=list)

    # --- processes ---
    #: Media worker processes: 1 = one process (rooms, media and HTTP together); N or "auto"
    #: (usable cores) = a front process for HTTP plus N media workers (docs/architecture.md).
    workers: int | Literal["auto"] = 1

    # --- media plane ---
    media_host: str = "0.0.0.0"
    media_port: int = Field(40000, ge=0, le=65535)
    announce_ips: list[str] = Field(default_factory=list)
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: str | None = Field(None, repr=False)  # never logged or shown
    turn_ttl: int = Field(DEFAULT_TTL, gt=0)
    consent_timeout: float = 30.0
    dtls_timeout: float = 10.0
    ice_tcp: bool = True
    media_tcp_port: int | None = Field(None, ge=0, le=65535)
    ice_tcp_max_connections: int = Field(1000, gt=0)
    ice_tcp_auth_timeout: float = Field(5.0, gt=0)

    # --- auth ---
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: float = 30.0
    jwks_timeout: float = Field(5.0, gt=0)
    jwks_cache_ttl: float = Field(300.0, gt=0)
    jwks_refresh_cooldown: float = Field(30.0, ge=0)

    # --- membership ---
    membership_backend: Literal["sql", "http", "token"] = "sql"
    database_url: str | None = None
    sql_member_query_chat: str | None = None
    sql_member_query_group: str | None = None
    sql_timeout: float = Field(5.0, gt=0)
    membership_http_url: str | None = None
    membership_http_timeout: float = 2.0
    membership_http_cache_ttl: float = 10.0
    membership_http_token: str | None = None

    # --- rooms and sessions ---
    max_participants: int = Field(0, ge=0)
    resume_grace: float = Field(30.0, ge=0)
    inactivity_timeout: float = Field(60.0, gt=0)
    ping_interval: float = Field(10.0, gt=0)
    glare_yield_ms: int = Field(1000, ge=0)
    max_sessions_per_user: int = Field(8, ge=0)
    ws_compression: bool = False
    #: SIGTERM / ``zvonok drain``: how long existing rooms may go on before their sessions are
    #: told ``node-draining`` (shared design ``cluster.md`` §4 "Graceful drain": 15 min).
    drain_timeout: float = Field(900.0, ge=0)

    # --- limits ---
    max_message_bytes: int = Field(256 * 1024, gt=0)
    message_rate: float = Field(50.0, gt=0)
    message_burst: int = Field(200, gt=0)
    bad_message_limit: int = Field(20, gt=0)
    max_pending_ice: int = Field(200, gt=0)
    max_tracks_per_session: int = Field(16, gt=0)
    send_queue_size: int = Field(256, gt=0)
    connect_rate: float = Field(20.0, gt=0)
    connect_burst: int = Field(200, gt=0)
    max_connections: int = Field(10_000, gt=0)
    max_connections_per_ip: int = Field(200, gt=0)
    header_timeout: float = Field(10.0, gt=0)
    join_timeout: float = Field(10.0, gt=0)

    # --- logging ---
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_levels: dict[str, str] = Field(default_factory=dict)

    # --- operations: stats, admin API, webhooks ---
    stats_interval: float = Field(5.0, ge=0)
    admin_token: str | None = None
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_secret: str | None = None
    webhook_timeout: float = Field(5.0, gt=0)
    webhook_max_attempts: int = Field(8, ge=1)
    webhook_backoff: float = Field(0.5, gt=0)
    webhook_backoff_max: float = Field(30.0, gt=0)
    webhook_queue_size: int = Field(10_000, gt=0)

    # --- cluster (shared design cluster.md; docs/configuration.md "Cluster") ---
    #: ``local``: this node alone, no Redis (today's behaviour); ``redis``: nodes share Redis.
    cluster_backend: Literal["local", "redis"] = "local"
    redis_url: str | None = Field(None, repr=False)  # may carry a password: never logged
    redis_sentinels: list[str] = Field(default_factory=list)
    redis_master_name: str | None = None
    redis_password: str | None = Field(None, repr=False)  # the master's AUTH under Sentinel
    node_id: str | None = None
    #: Multiplies every cluster interval and TTL (heartbeats, leases, relay resends); below 1
    #: only for tests (docs/configuration.md).
    cluster_timing: float = Field(1.0, gt=0, le=1)

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str | None) -> str | None:
        if value is not None and not NODE_ID_RE.fullmatch(value):
            raise ValueError("node_id must be 1-64 of [A-Za-z0-9._:-]")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_redis_url(value)
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _redis_sentinels(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_sentinel(entry)
        return value

    @model_validator(mode="after")
    def _cluster_settings(self) -> SettingsModel:
        """``redis`` needs ``redis_url``, or ``redis_sentinels`` with ``redis_master_name``."""
        if self.redis_url is not None and self.redis_sentinels:
            raise ValueError("set redis_url or redis_sentinels, not both")
        if self.redis_sentinels and not self.redis_master_name:
            raise ValueError("redis_sentinels needs redis_master_name (the monitored master)")
        if self.redis_password is not None and self.redis_url is not None:
            raise ValueError("redis_password is for redis_sentinels; put it in redis_url instead")
        if self.cluster_backend == "redis" and self.redis_url is None and not self.redis_sentinels:
            raise ValueError(
                'cluster_backend = "redis" needs redis_url, or redis_sentinels and '
                "redis_master_name"
            )
        return self

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 256:
            raise ValueError('workers must be 1..256 or "auto"')
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("media_host")
    @classmethod
    def _media_host(cls, value: str) -> str:
        """An IP literal (brackets allowed): ``0.0.0.0``, ``::`` (dual-stack) or one address."""
        return canonical_ip(value)

    @field_validator("announce_ips")
    @classmethod
    def _announce_ips(cls, value: list[str]) -> list[str]:
        """IP literals only (a candidate's address, RFC 8839 §5.1), canonical, no duplicates;
        no IPv6 link-local address (a candidate cannot carry its zone)."""
        ips = list(dict.fromkeys(canonical_ip(ip) for ip in value))
        for ip in ips:
            if ipaddress.ip_address(ip.partition("%")[0]).is_link_local and ":" in ip:
                raise ValueError(f"{ip} is IPv6 link-local: a candidate cannot carry its zone")
        return ips

    @model_validator(mode="after")
    def _announce_families(self) -> SettingsModel:
        """Every announced address must be reachable on the media socket: an IPv6 one needs
        ``media_host`` ``::`` or an IPv6 address, an IPv4 one ``0.0.0.0``, ``::`` or IPv4."""
        bound_v6 = ":" in self.media_host
        for ip in self.announce_ips:
            if ":" in ip and not bound_v6:
                raise ValueError(
                    f"announce_ips has IPv6 address {ip} but media_host {self.media_host} is "
                    'IPv4: set media_host = "::" (dual-stack) or an IPv6 address'
                )
            if ":" not in ip and bound_v6 and self.media_host != "::":
                raise ValueError(
                    f"announce_ips has IPv4 address {ip} but media_host {self.media_host} is an "
                    'IPv6 address: set media_host = "::" (dual-stack) or an IPv4 address'
                )
        return self

    @model_validator(mode="after")
    def _turn_settings(self) -> SettingsModel:
        check_turn_settings(self.turn_urls, self.turn_secret, self.ice_servers)
        return self

    @field_validator("jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        allowed = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"}
        bad = [alg for alg in value if alg not in allowed]
        if bad:
            raise ValueError(f"unsupported JWT algorithms {bad}; allowed: {sorted(allowed)}")
        if not value:
            raise ValueError("at least one JWT algorithm is required")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("ZVONOK_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)
