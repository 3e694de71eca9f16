"""What an operator is told about a failing dependency (database, membership callback, JWKS).

Owns three small text helpers used in those log lines: ``safe_url`` (a URL without credentials,
query or fragment), ``excerpt`` (a bounded, single-line, printable excerpt of a foreign text) and
``scrub`` (request values such as user and room ids replaced by their names). Imports nothing from
zvonok. Implements no RFC (``safe_url`` drops the RFC 3986 §3.2.1 userinfo, §3.4 query and §3.5
fragment).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

#: The longest foreign text (an error message, a response body) one log line quotes.
EXCERPT_CHARS = 200
#: asyncpg quotes a bad query argument as ``repr(value)`` cut to this many characters.
_ASYNCPG_REPR_CHARS = 40
_SPACE_RE = re.compile(r"\s+")


def safe_url(url: str) -> str:
    """``url`` without userinfo, query and fragment (they may carry credentials)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """One printable line of at most ``limit`` characters (``…`` marks a cut)."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    line = _SPACE_RE.sub(" ", printable).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def scrub(text: str, values: Mapping[str, str]) -> str:
    """Replace each value in ``text`` by ``<name>`` (``values`` maps names to values).

    Covers the value as it is, quoted, as ``repr`` and as asyncpg's cut ``repr``; a bare value is
    replaced only where it is not part of a longer word (so the ``1`` of ``$1`` stays).
    """
    forms: list[tuple[str, str, bool]] = []  # (form, name, bare)
    for name, value in values.items():
        if value:
            shown = repr(value)
            forms += [(shown, name, False), (shown[:_ASYNCPG_REPR_CHARS], name, False)]
            forms.append((value, name, True))
    for form, name, bare in sorted(forms, key=lambda item: -len(item[0])):
        if bare:
            text = re.sub(rf"(?<![\w$]){re.escape(form)}(?!\w)", f"<{name}>", text)
        else:
            text = text.replace(form, f"<{name}>")
    return text
