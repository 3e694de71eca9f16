"""One typed settings object for the whole server.

Sources, highest priority first: explicit overrides (CLI flags), ``ZVONOK_*`` environment
variables, an optional TOML file (``--config`` / ``ZVONOK_CONFIG``), then the defaults.
The fields (names, types, defaults, bounds, secrets) are defined once, in ``config_fields``;
every one is documented in ``docs/configuration.md``; keep the two in step.

``Settings`` is a frozen dataclass: constructing one (``Settings(...)``,
``Settings.model_validate``, ``load_settings``) parses and validates through
``config_model.SettingsModel``, the pydantic model generated from the same fields (loaded on
first use; a bad value raises its ``ValidationError``). A process that gets settings validated
elsewhere (the serving image, ``node``; a media worker, ``relay.worker``) rebuilds them with
``from_json`` without loading pydantic (issue 17: a lighter process). Implements no RFC.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config_fields import SettingsFields, fill
from .edge import is_loopback_host

if TYPE_CHECKING:
    from .config_model import SettingsBase


@dataclass(frozen=True, kw_only=True)
class Settings(SettingsFields):
    """Every knob of a zvonok node (its fields: ``config_fields.SettingsFields``). Immutable once
    loaded.

    mypy sees the dataclass's keyword arguments; at run time ``Settings(**values)`` validates
    them together with the environment and the TOML file (``_validating_init`` below).
    """

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
        return cls.from_values(values)

    def to_json(self) -> str:
        """Every field as JSON (secrets included: only for a process of this node)."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        values["data_dir"] = str(self.data_dir)
        return json.dumps(values)

    @classmethod
    def _of(cls, model: SettingsBase) -> Settings:
        return cls.from_values({item.name: getattr(model, item.name) for item in fields(cls)})


def _validating_init(self: Settings, **values: Any) -> None:
    """``Settings(**values)``: the values, the ``ZVONOK_*`` environment and the TOML file,
    parsed and validated by ``SettingsModel`` (pydantic-settings)."""
    from .config_model import SettingsModel

    model = SettingsModel(**values)
    fill(self, {item.name: getattr(model, item.name) for item in fields(Settings)})


# Outside the class body, so that type checkers keep the dataclass's typed keyword arguments.
setattr(Settings, "__init__", _validating_init)  # noqa: B010


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings; ``overrides`` (from CLI flags) win; ``None`` overrides are ignored."""
    if config_file is not None:
        os.environ["ZVONOK_CONFIG"] = str(config_file)
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)
