"""``config.Settings`` (the plain settings a node holds) and ``config_model.SettingsModel`` (the
parser that validates them) agree field by field, and settings survive the JSON handover to the
serving image and the media workers unchanged (issue 17: a lighter process)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from zvonok.config import Settings, load_settings
from zvonok.config_model import SettingsModel


def _default(item: dataclasses.Field[object]) -> object:
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def test_the_model_has_the_fields_and_defaults_of_settings() -> None:
    plain = {item.name: _default(item) for item in dataclasses.fields(Settings)}
    model = {
        name: info.get_default(call_default_factory=True)
        for name, info in SettingsModel.model_fields.items()
    }
    assert plain == model
    assert list(plain) == list(model)  # same order: the repr and docs read alike


def test_secrets_stay_out_of_the_repr() -> None:
    settings = Settings.model_validate(
        {
            "turn_urls": ["turn:turn.example:3478"],
            "turn_secret": "turn-secret-value",
            "redis_url": "redis://:redis-pass@127.0.0.1:6379/0",
        }
    )
    shown = repr(settings)
    assert "turn-secret-value" not in shown and "redis-pass" not in shown
    assert "turn_urls=['turn:turn.example:3478']" in shown


def test_settings_validate_and_coerce_like_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZVONOK_PORT", "9000")
    monkeypatch.setenv("ZVONOK_LOG_LEVELS__zvonok.media", "DEBUG")
    settings = Settings(media_host="[::]", workers="auto")
    assert (settings.port, settings.media_host, settings.workers) == (9000, "::", "auto")
    assert settings.log_levels == {"zvonok.media": "DEBUG"}
    assert Settings(port=9001).port == 9001  # a value given wins over the environment
    assert Settings.model_validate({"port": 9002}).port == 9002
    with pytest.raises(ValidationError, match="1 validation error for Settings"):
        Settings(port=70000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_json_handover_keeps_every_value(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path / "d",
            "workers": "auto",
            "announce_ips": ["192.0.2.1"],
            "ice_servers": [{"urls": ["stun:192.0.2.2:3478"]}],
            "log_levels": {"zvonok.media": "DEBUG"},
            "jwt_secret": "k" * 32,
            "consent_timeout": 12,
        }
    )
    again = Settings.from_json(settings.to_json())
    assert again == settings
    assert isinstance(again.data_dir, Path) and again.consent_timeout == 12.0
    assert again.dev_enabled == settings.dev_enabled


def test_from_json_takes_only_a_complete_settings() -> None:
    values = json.loads(Settings.model_validate({}).to_json())
    del values["port"]
    with pytest.raises(ValueError, match="complete Settings"):
        Settings.from_json(json.dumps(values))
    with pytest.raises(ValueError, match="complete Settings"):
        Settings.from_json(json.dumps({**values, "port": 1, "extra": 2}))


def test_loading_and_rebuilding_settings_leaves_pydantic_out_of_the_serving_image(
    tmp_path: Path,
) -> None:
    """``from_json`` (the serving image, a media worker) imports no parser at all."""
    handover = tmp_path / "settings.json"
    handover.write_text(load_settings(data_dir=tmp_path).to_json())
    probe = (
        "import sys; from zvonok.config import Settings; "
        "s = Settings.from_json(open(sys.argv[1]).read()); "
        "print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'zvonok.config_model'))))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("ZVONOK_")}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(handover)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"
