"""Atheris harness: ICE candidate parsing (``zvonok.media.sdp.candidate``, RFC 8839 §5.1).

Each input is one ``candidate:`` attribute value as a client trickles it. Proves that only
``ValueError`` escapes and that a parsed candidate renders to text that parses back equal. Run:
``python tests/fuzz/fuzz_candidate.py [libFuzzer flags] [corpus dirs]``. Imports atheris and
``zvonok.media.sdp.candidate`` only.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["zvonok"]):
    from zvonok.media.sdp.candidate import Candidate


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        candidate = Candidate.parse(text)
    except ValueError:
        return
    assert Candidate.parse(str(candidate)) == candidate
    candidate.protocol  # noqa: B018 - property access is part of the contract
    candidate.is_mdns  # noqa: B018


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
