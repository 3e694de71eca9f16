"""configure_logging / get_logger: ids on every record, text and JSON lines, redaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from zvonok.config import Settings
from zvonok.logs import configure_logging, get_logger, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("zvonok.test.quiet").setLevel(logging.NOTSET)


def configure(**values: Any) -> None:
    configure_logging(Settings.model_validate(values))


def test_text_lines_carry_ids_and_hide_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure(log_format="text", log_level="INFO")
    log = get_logger("zvonok.test", room="chat:1", user="42").bind(session="s-1")
    log.info("joined with %s", JWT)
    log.debug("not shown")
    line = capsys.readouterr().err.strip()
    assert " INFO zvonok.test: joined with [redacted] " in line
    assert line.endswith("room=chat:1 user=42 session=s-1")
    assert "eyJ" not in line


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure(log_format="json", log_level="DEBUG")
    log = get_logger("zvonok.test", room="group:7")
    log.debug("hello", extra={"user": "u1", "access_token": "abc", "password": "hunter2"})
    try:
        raise RuntimeError(f"boom token={JWT}")
    except RuntimeError:
        log.exception("failed")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["msg"] == "hello"
    assert (first["level"], first["logger"]) == ("DEBUG", "zvonok.test")
    assert (first["room"], first["user"]) == ("group:7", "u1")
    assert first["access_token"] == first["password"] == "[redacted]"
    assert first["ts"].endswith("Z")
    assert "RuntimeError: boom token=[redacted]" in second["exc"]


def test_plain_loggers_with_extra_and_per_module_levels(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(log_levels={"zvonok.test.quiet": "ERROR"})
    logging.getLogger("zvonok.test.loud").warning("x", extra={"room": "chat:2"})
    logging.getLogger("zvonok.test.quiet").warning("hidden")
    err = capsys.readouterr().err
    assert "zvonok.test.loud: x room=chat:2" in err
    assert "hidden" not in err


def test_configure_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure()
    configure(log_format="json")
    logging.getLogger("zvonok.test").warning("once")
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        configure(log_level="LOUD")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Bearer {JWT}", "Bearer [redacted]"),
        ("Authorization: bearer api-key.v2", "Authorization: bearer [redacted]"),
        ("GET /api/v1/chat/1/call?access_token=abc.def&x=1", "?access_token=[redacted]&x=1"),
        ('{"jwt_secret": "s3cr3t", "port": 1}', '{"jwt_secret": "[redacted]", "port": 1}'),
        ("password: hunter2", "password: [redacted]"),
        ("version 1.2.3 on example.com.au", "version 1.2.3 on example.com.au"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert expected in redact(text)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_worker_process_names_itself_on_every_line(
    capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    configure_logging(Settings.model_validate({"log_format": log_format}), worker="w1")
    get_logger("zvonok.test", room="chat:1").warning("joined")
    logging.getLogger("uvicorn.error").warning("plain logger")
    logging.getLogger("zvonok.test").warning("own", extra={"worker": "w0"})  # kept as given
    lines = capsys.readouterr().err.splitlines()
    if log_format == "json":
        assert [json.loads(line).get("worker") for line in lines] == ["w1", "w1", "w0"]
        assert json.loads(lines[0])["room"] == "chat:1"
    else:
        assert lines[0].endswith("zvonok.test: joined room=chat:1 worker=w1")
        assert lines[1].endswith("uvicorn.error: plain logger worker=w1")
        assert lines[2].endswith("own worker=w0")
    configure_logging(Settings.model_validate({"log_format": log_format}))  # the front: none
    logging.getLogger("zvonok.test").warning("front")
    assert "worker" not in capsys.readouterr().err
