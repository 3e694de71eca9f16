"""Checks and helpers for the cluster settings (shared design ``cluster.md`` §1, §4 "Sentinel").

``config`` calls these while it validates; the connection factory (``cluster.connection``) uses
them again. A Redis URL can carry a password, so nothing here ever puts a URL into an error or a
log line unredacted (``redact_url``). Imports only the standard library: the default ``local``
backend must not load redis-py. Implements no RFC beyond the URL shapes of RFC 3986 §3.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

#: URL schemes the Redis backend accepts (``rediss`` is Redis over TLS).
REDIS_SCHEMES = ("redis", "rediss")
#: Sentinel's usual port, used when a ``redis_sentinels`` entry gives none.
SENTINEL_PORT = 26379


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ValueError("redis_url is not a valid URL") from None
    return parts


def check_redis_url(url: str) -> None:
    """Refuse anything but ``redis[s]://[[user]:password@]host[:port][/db]``, naming no secret."""
    parts = _split(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError("redis_url must start with redis:// or rediss://")
    if not parts.hostname:
        raise ValueError("redis_url has no host")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError("redis_url's path must be a database number (/0, /1, ...)")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``: what logs and errors may show."""
    try:
        parts = _split(url)
    except ValueError:
        return "<invalid redis_url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return parts._replace(netloc=netloc).geturl()


def parse_sentinel(entry: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; the port defaults to 26379) → ``(host, port)``."""
    text = entry.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"redis_sentinels entry {entry!r} is not [host]:port")
        port_text = rest[1:]
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"redis_sentinels entry {entry!r} has no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"redis_sentinels entry {entry!r} has no valid port")
    return host, int(port_text)
