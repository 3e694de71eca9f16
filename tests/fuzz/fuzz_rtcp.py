"""Atheris harness: compound RTCP parsing and building (``zvonok.media.packets.rtcp``).

Each input is one decrypted compound RTCP packet (RFC 3550 §6.1) as a participant could send
it: SR/RR/SDES/BYE, NACK/PLI/FIR/REMB/transport-cc feedback, unknown types. Proves that only
``ValueError`` escapes the parser, that every parsed packet serialises (or refuses with
``ValueError``) and that a rebuilt compound parses to the same packets. Run:
``python tests/fuzz/fuzz_rtcp.py [libFuzzer flags] [corpus dirs]``. Imports atheris and
``zvonok.media.packets.rtcp`` only.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["zvonok"]):
    from zvonok.media.packets.rtcp import parse_compound


def rebuild(data: bytes) -> bytes | None:
    """Parse and serialise again; None where a packet refuses to serialise (``ValueError``)."""
    parts: list[bytes] = []
    for packet in parse_compound(data):
        try:
            parts.append(bytes(packet))
        except ValueError:
            return None
    return b"".join(parts)


def test_one_input(data: bytes) -> None:
    try:
        once = rebuild(data)
    except ValueError:
        return
    if once is not None:
        # Serialising may normalise (e.g. NACK order); after one round it is a fixed point.
        assert rebuild(once) == once, "rebuilt RTCP does not parse back to itself"


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
