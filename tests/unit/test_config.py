"""``config.Settings`` (the plain settings a node holds; its fields, ``config_fields``, are the one
definition of every setting) and ``config_model.SettingsModel`` (the parser generated from them)
agree field by field, bounds and checks hold, and settings survive the JSON handover to the
serving image and the media workers unchanged (issue 17: a lighter process)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import annotated_types
import pytest
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from zvonok.config import Settings, load_settings
from zvonok.config_fields import NO_BOUNDS, Bounds, bounds_of, setting
from zvonok.config_model import SettingsBase, SettingsModel

FIELDS = dataclasses.fields(Settings)
BOUNDED = [item for item in FIELDS if bounds_of(item) != NO_BOUNDS]


@pytest.fixture(autouse=True)
def _no_zvonok_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in os.environ:
        if key.startswith("ZVONOK_"):
            monkeypatch.delenv(key)


def _default(item: dataclasses.Field[object]) -> object:
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def _model_bounds(info: FieldInfo) -> Bounds:
    found: dict[str, typing.Any] = {}
    for marker in info.metadata:
        if isinstance(marker, annotated_types.Ge):
            found["ge"] = marker.ge
        elif isinstance(marker, annotated_types.Gt):
            found["gt"] = marker.gt
        elif isinstance(marker, annotated_types.Le):
            found["le"] = marker.le
        else:
            raise AssertionError(f"unexpected constraint {marker!r}")
    return Bounds(**found)


def test_the_model_is_generated_from_the_fields_of_settings() -> None:
    """Names (in order: the repr and docs read alike), types, defaults, bounds and secrets."""
    hints = typing.get_type_hints(Settings)
    model = SettingsModel.model_fields
    assert list(model) == [item.name for item in FIELDS]
    assert issubclass(SettingsModel, SettingsBase) and not SettingsBase.model_fields
    for item in FIELDS:
        info = model[item.name]
        assert info.annotation == hints[item.name], item.name
        assert info.get_default(call_default_factory=True) == _default(item), item.name
        assert _model_bounds(info) == bounds_of(item), item.name
        assert info.repr is item.repr, item.name
        assert info.is_required() is False, item.name


def test_setting_records_bounds_and_secrets() -> None:
    @dataclasses.dataclass(frozen=True)
    class Example:
        plain: int = setting(3)
        bounded: float = setting(0.5, gt=0, le=1)
        hidden: str | None = setting(None, secret=True)

    plain, bounded, hidden = dataclasses.fields(Example)
    assert (bounds_of(plain), plain.repr, plain.default) == (NO_BOUNDS, True, 3)
    assert bounds_of(bounded) == Bounds(gt=0, le=1) and bounded.repr
    assert (bounds_of(hidden), hidden.repr) == (NO_BOUNDS, False)
    assert repr(Example(hidden="x")).endswith("Example(plain=3, bounded=0.5)")


@pytest.mark.parametrize("item", BOUNDED, ids=[item.name for item in BOUNDED])
def test_every_bound_is_enforced_at_its_edge(item: dataclasses.Field[object]) -> None:
    """A value on an inclusive bound passes; one past any bound is an error naming the field."""
    bounds = bounds_of(item)
    inside = [value for value in (bounds.ge, bounds.le) if value is not None]
    outside = [
        value
        for value in (
            None if bounds.ge is None else bounds.ge - 1,
            bounds.gt,
            None if bounds.le is None else bounds.le + 1,
        )
        if value is not None
    ]
    for value in inside:
        assert getattr(Settings.model_validate({item.name: value}), item.name) == value
    for value in outside:
        with pytest.raises(ValidationError) as caught:
            Settings.model_validate({item.name: value})
        assert [error["loc"] for error in caught.value.errors()] == [(item.name,)]


def test_the_parsers_repr_hides_the_secrets_too() -> None:
    secrets = {item.name for item in FIELDS if not item.repr}
    assert secrets == {"turn_secret", "redis_url", "redis_password"}
    model = SettingsModel.model_validate(
        {"turn_urls": ["turn:turn.example:3478"], "turn_secret": "turn-secret-value"}
    )
    assert "turn-secret-value" not in repr(model) and "turn_urls=" in repr(model)


def test_field_checks_and_model_checks_run_on_the_generated_model() -> None:
    """The checks live on ``SettingsBase``, which declares no field: they must reach the
    generated fields (a field check, a model check) and name the class callers construct."""
    with pytest.raises(ValidationError, match="1 validation error for Settings") as caught:
        Settings.model_validate({"workers": 0})
    assert "workers must be 1..256" in str(caught.value)
    with pytest.raises(ValidationError, match="not both"):
        Settings(redis_url="redis://127.0.0.1:6379/0", redis_sentinels=["127.0.0.1:26379"])


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
