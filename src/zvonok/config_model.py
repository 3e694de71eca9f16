"""The parser of the settings: the pydantic model that reads and validates them.

Sources, highest priority first: explicit values (CLI flags), ``ZVONOK_*`` environment variables,
an optional TOML file (``--config`` / ``ZVONOK_CONFIG``), then the defaults. ``SettingsModel`` is
generated from the fields of ``config.Settings`` (``config_fields.SettingsFields``: their names,
types, defaults, bounds and which are secrets, defined once there) on ``SettingsBase``, which
adds the sources and the checks. Imported only where settings are parsed (``Settings(...)``,
``Settings.model_validate``: the CLI, tests): a serving node gets its settings already validated
and never loads pydantic (issue 17, docs/benchmarks.md). Implements no RFC.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import typing
from pathlib import Path
from typing import Any, Self

from pydantic import Field, create_model, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .auth.turn import check_turn_settings
from .cluster.settings import check_redis_url, parse_sentinel
from .config_fields import SettingsFields, bounds_of
from .media.transport.address import canonical_ip

#: A node id is part of Redis key names: short, no spaces, no braces.
NODE_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class SettingsBase(BaseSettings):
    """What the parser adds to the fields of ``config.Settings``: where values come from, and the
    checks beyond a field's type and bounds. The static type of ``SettingsModel``; its fields come
    from the dataclass, so the checks read them through ``_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="ZVONOK_",
        frozen=True,
        extra="forbid",
        env_nested_delimiter="__",
        hide_input_in_errors=True,  # an error must not print turn_secret, jwt_secret, ...
        title="Settings",  # errors name the class callers construct (config.Settings)
    )

    def _settings(self) -> SettingsFields:
        """The parsed values, typed: the fields of the ``config.Settings`` they become."""
        names = (item.name for item in dataclasses.fields(SettingsFields))
        return SettingsFields.from_values({name: getattr(self, name) for name in names})

    @field_validator("node_id", check_fields=False)
    @classmethod
    def _node_id(cls, value: str | None) -> str | None:
        if value is not None and not NODE_ID_RE.fullmatch(value):
            raise ValueError("node_id must be 1-64 of [A-Za-z0-9._:-]")
        return value

    @field_validator("redis_url", check_fields=False)
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_redis_url(value)
        return value

    @field_validator("redis_sentinels", check_fields=False)
    @classmethod
    def _redis_sentinels(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_sentinel(entry)
        return value

    @model_validator(mode="after")
    def _cluster_settings(self) -> Self:
        """``redis`` needs ``redis_url``, or ``redis_sentinels`` with ``redis_master_name``."""
        given = self._settings()
        if given.redis_url is not None and given.redis_sentinels:
            raise ValueError("set redis_url or redis_sentinels, not both")
        if given.redis_sentinels and not given.redis_master_name:
            raise ValueError("redis_sentinels needs redis_master_name (the monitored master)")
        if given.redis_password is not None and given.redis_url is not None:
            raise ValueError("redis_password is for redis_sentinels; put it in redis_url instead")
        if (
            given.cluster_backend == "redis"
            and given.redis_url is None
            and not given.redis_sentinels
        ):
            raise ValueError(
                'cluster_backend = "redis" needs redis_url, or redis_sentinels and '
                "redis_master_name"
            )
        return self

    @field_validator("workers", check_fields=False)
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 256:
            raise ValueError('workers must be 1..256 or "auto"')
        return value

    @field_validator("forwarded_allow_ips", check_fields=False)
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("media_host", check_fields=False)
    @classmethod
    def _media_host(cls, value: str) -> str:
        """An IP literal (brackets allowed): ``0.0.0.0``, ``::`` (dual-stack) or one address."""
        return canonical_ip(value)

    @field_validator("announce_ips", check_fields=False)
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
    def _announce_families(self) -> Self:
        """Every announced address must be reachable on the media socket: an IPv6 one needs
        ``media_host`` ``::`` or an IPv6 address, an IPv4 one ``0.0.0.0``, ``::`` or IPv4."""
        given = self._settings()
        bound_v6 = ":" in given.media_host
        for ip in given.announce_ips:
            if ":" in ip and not bound_v6:
                raise ValueError(
                    f"announce_ips has IPv6 address {ip} but media_host {given.media_host} is "
                    'IPv4: set media_host = "::" (dual-stack) or an IPv6 address'
                )
            if ":" not in ip and bound_v6 and given.media_host != "::":
                raise ValueError(
                    f"announce_ips has IPv4 address {ip} but media_host {given.media_host} is an "
                    'IPv6 address: set media_host = "::" (dual-stack) or an IPv4 address'
                )
        return self

    @model_validator(mode="after")
    def _turn_settings(self) -> Self:
        given = self._settings()
        check_turn_settings(given.turn_urls, given.turn_secret, given.ice_servers)
        return self

    @field_validator("jwt_algorithms", check_fields=False)
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


def _field_definitions() -> dict[str, Any]:
    """Each field of ``config.Settings`` as pydantic declares it: ``(type, Field(...))``."""
    types = typing.get_type_hints(SettingsFields)
    definitions: dict[str, Any] = {}
    for item in dataclasses.fields(SettingsFields):
        bounds = bounds_of(item)
        limits: dict[str, Any] = {
            "ge": bounds.ge,
            "gt": bounds.gt,
            "le": bounds.le,
            "repr": item.repr,
        }
        if item.default_factory is not dataclasses.MISSING:
            info = Field(default_factory=item.default_factory, **limits)
        else:
            info = Field(item.default, **limits)
        definitions[item.name] = (types[item.name], info)
    return definitions


#: The parser: the fields of ``config.Settings`` on ``SettingsBase``.
SettingsModel: type[SettingsBase] = create_model(
    "SettingsModel",
    __base__=SettingsBase,
    __module__=__name__,
    __doc__="Parses and validates every field of ``config.Settings`` (same names, types, "
    "defaults).",
    **_field_definitions(),
)
