"""Atheris harness: the worker-link frames (``zvonok.relay.frames``, ``zvonok.relay.link``).

The input is read twice, as a link's reader would and as one frame body. (1) As a stream:
4-byte length prefixes (``frame_length``) and bodies (``Frame.parse``), frame after frame, until
the bytes run out. (2) As one body. Proves that a header or body only ever raises
``FrameError``, that a parsed frame encodes again and parses back to the same bytes (a fixed
point), and that the error of a parsed ``res`` frame always makes an exception for the
requester (``link.raise_error``) instead of raising one. Run:
``python tests/fuzz/fuzz_relay.py [libFuzzer flags] [corpus dirs]``.
Imports atheris and ``zvonok.relay.frames`` / ``zvonok.relay.link`` only.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["zvonok"]):
    from zvonok.relay.frames import HEADER, Frame, FrameError, frame_length
    from zvonok.relay.link import raise_error


def check(body: bytes) -> None:
    try:
        frame = Frame.parse(body)
    except FrameError:
        return
    again = bytes(frame)
    assert frame_length(again[: HEADER.size]) == len(again) - HEADER.size
    assert bytes(Frame.parse(again[HEADER.size :])) == again, "frame is not a fixed point"
    if frame.error is not None:
        assert isinstance(raise_error(frame.error), Exception)


def as_stream(data: bytes) -> None:
    at = 0
    while at + HEADER.size <= len(data):
        try:
            length = frame_length(data[at : at + HEADER.size])
        except FrameError:
            return
        at += HEADER.size
        if at + length > len(data):
            return  # the rest has not arrived
        check(data[at : at + length])
        at += length


def test_one_input(data: bytes) -> None:
    as_stream(data)
    check(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
