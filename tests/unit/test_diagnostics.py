"""The text helpers of operator-facing failure lines: safe URLs, bounded excerpts, scrubbed ids."""

from __future__ import annotations

import pytest

from zvonok.diagnostics import EXCERPT_CHARS, excerpt, safe_url, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pw@id.example:8443/jwks.json?key=s3cret#f",
            "https://id.example:8443/jwks.json",
        ),
        ("http://api.internal/zvonok/membership", "http://api.internal/zvonok/membership"),
        ("http://[::1]:9000/m?token=x", "http://[::1]:9000/m"),
        ("http://host:notaport/", "<unparsable URL>"),
    ],
)
def test_safe_url_drops_credentials_query_and_fragment(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_excerpt_is_one_bounded_printable_line() -> None:
    assert excerpt("<html>\n\t<body>\x00 oops </body>") == "<html> <body> oops </body>"
    long = excerpt("x" * 1000)
    assert len(long) == EXCERPT_CHARS and long.endswith("…")
    assert excerpt("abcdef", limit=4) == "abc…"


def test_scrub_replaces_ids_in_every_form_drivers_use() -> None:
    values = {"room_id": "secret-room", "user_id": "1"}
    # asyncpg (client side): the value as repr; the $1 placeholder must survive a user id "1"
    line = "invalid input for query argument $1: 'secret-room' (not an integer)"
    assert scrub(line, values) == "invalid input for query argument $1: <room_id> (not an integer)"
    # PostgreSQL (server side): the value in double quotes
    line = 'invalid input syntax for type bigint: "secret-room"'
    assert scrub(line, values) == 'invalid input syntax for type bigint: "<room_id>"'
    # asyncpg cuts a long repr to 40 characters and appends "..."
    user = "u" * 100
    line = f"invalid input for query argument $2: {repr(user)[:40]}... (bad)"
    assert user[:20] not in scrub(line, {"user_id": user})
    # a bare value inside a longer word is not a match; a whole word is
    assert scrub("user 1 in room 12", values) == "user <user_id> in room 12"
    assert scrub("nothing to hide", {}) == "nothing to hide"
