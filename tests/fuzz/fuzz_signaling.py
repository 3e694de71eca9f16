"""Atheris harness: the signaling envelope parser (``zvonok.signaling.messages``).

Feeds raw WebSocket frame bytes to ``parse_client_message`` and, as the endpoint does, trickled
candidates to ``Candidate.parse``. Proves that a frame only ever raises ``MessageError`` (a
``ValueError``) carrying a documented error code, and that a parsed message has the fields its
type needs. Run: ``python tests/fuzz/fuzz_signaling.py [libFuzzer flags] [corpus dirs]``.
Imports atheris and ``zvonok.signaling.messages`` / ``zvonok.media.sdp.candidate`` only.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["zvonok"]):
    from zvonok.media.sdp.candidate import Candidate
    from zvonok.signaling.messages import MessageError, parse_client_message

#: The codes docs/protocol.md lists for a frame the parser refuses.
PARSER_CODES = frozenset({"bad-json", "bad-message", "bad-sdp"})


def test_one_input(data: bytes) -> None:
    for frame in (data, data.decode("utf-8", "replace")):
        try:
            msg = parse_client_message(frame)
        except MessageError as exc:
            assert exc.code in PARSER_CODES, exc.code
            continue
        if msg.type in ("offer", "answer"):
            assert msg.description is not None and msg.description.sdp
        if msg.type == "ice":
            assert msg.ice is not None
            if msg.ice.candidate:
                try:
                    Candidate.parse(msg.ice.candidate)
                except ValueError:
                    pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
