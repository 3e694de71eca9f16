"""Logging for the whole server: one stderr handler, text or JSON lines, ids on every record.

Owns ``configure_logging``, ``get_logger`` (a ``LoggerAdapter`` carrying room/session/user ids) and
the redaction of secrets. A worker process of a split node (issue 13) passes its id, and every
record it writes carries ``worker=<id>`` (a ``worker`` field in JSON). Imports only
``config``. Anything that looks like a JWT (RFC 7519 §3: three base64url segments), any
``Bearer`` credential (RFC 6750 §2.1) and any field or ``key=value`` whose name contains
``token``, ``secret`` or ``password`` is replaced by ``[redacted]`` before a line is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from .config import Settings

REDACTED = "[redacted]"
#: A JWT: a JSON header always starts ``eyJ``; or any three long base64url segments.
_JWT_RE = re.compile(
    r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|\b[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"
)
#: ``token=...``, ``"secret": "..."``, ``password: ...`` (also inside URLs and JSON).
_SECRET_KV_RE = re.compile(
    r"(?i)(\b[\w-]*(?:token|secret|password)[\w-]*[\"']?\s*[:=]\s*[\"']?)([^\s\"'&,;}]+)"
)
#: ``Bearer <credential>`` (RFC 6750 §2.1), whatever the credential looks like.
_BEARER_RE = re.compile(r"(?i)(\bbearer\s+)([A-Za-z0-9._~+/=-]+)")
_SECRET_NAME_RE = re.compile(r"(?i)token|secret|password")
#: Attributes every ``LogRecord`` has; everything else on a record came from ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's colored duplicate of the message
}
#: Marks the handler ``configure_logging`` installs so a second call replaces it.
_HANDLER_MARK = "_zvonok_handler"


def redact(text: str) -> str:
    """Hide JWTs and secret-named values in ``text``."""
    text = _JWT_RE.sub(REDACTED, text)
    text = _BEARER_RE.sub(lambda m: m.group(1) + REDACTED, text)
    return _SECRET_KV_RE.sub(lambda m: m.group(1) + REDACTED, text)


def record_fields(record: logging.LogRecord) -> dict[str, str]:
    """The ``extra`` fields of a record (room, session, user, ...), redacted, as strings."""
    fields: dict[str, str] = {}
    for name, value in record.__dict__.items():
        if name in _STANDARD or name.startswith("_"):
            continue
        if not isinstance(value, str | int | float | bool) and value is not None:
            continue  # objects libraries attach to records (e.g. uvicorn's protocol) are noise
        fields[name] = REDACTED if _SECRET_NAME_RE.search(name) else redact(str(value))
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message> key=value ...`` (+ traceback), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = record_fields(record)
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, the ids, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in record_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class IdLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds its ids to every record; a call's own ``extra`` is merged over them."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        own: Mapping[str, object] = self.extra or {}
        kwargs["extra"] = {**own, **(kwargs.get("extra") or {})}
        return msg, kwargs

    def bind(self, **ids: str) -> IdLoggerAdapter:
        """A new adapter with more ids (``log.bind(session="s-1")``)."""
        return IdLoggerAdapter(self.logger, {**(self.extra or {}), **ids})


def get_logger(name: str, **ids: str) -> IdLoggerAdapter:
    """A logger whose records carry ``ids`` (e.g. ``room="chat:1", session="s-1", user="42"``)."""
    return IdLoggerAdapter(logging.getLogger(name), dict(ids))


class WorkerFilter(logging.Filter):
    """Stamps ``worker=<id>`` on every record that does not carry its own ``worker``."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if "worker" not in record.__dict__:
            record.worker = self.worker
        return True


def configure_logging(settings: Settings, worker: str | None = None) -> None:
    """Install one stderr handler on the root logger (replacing an earlier one) and set levels.

    ``settings.log_levels`` maps logger names to levels, e.g. ``{"zvonok.media": "DEBUG"}``.
    ``worker``: this process is that media worker of a split node; its every line says so
    (``worker=<id>``). Raises ``ValueError`` for an unknown level name.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    if worker is not None:
        handler.addFilter(WorkerFilter(worker))
    root.addHandler(handler)
    root.setLevel(_level(settings.log_level))
    for name, level in settings.log_levels.items():
        logging.getLogger(name).setLevel(_level(level))


def check_level(*names: str) -> None:
    """Raise ``ValueError`` if any of ``names`` is not a logging level name."""
    for name in names:
        _level(name)


def _level(name: str) -> int:
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {name!r}")
    return level
