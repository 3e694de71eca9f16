"""Atheris harness: SDP parsing and offer/answer negotiation (``zvonok.media.sdp``).

Each input is SDP text: it is parsed (what parses must render and parse back equal, and its
codec helpers must work), applied as a client offer to a fresh ``SessionNegotiator`` and as the
client's answer to a server offer. Proves that only ``ValueError`` ever escapes. Run:
``python tests/fuzz/fuzz_sdp.py [libFuzzer flags] [corpus dirs]``. Imports atheris and
``zvonok.media.sdp`` only.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["zvonok"]):
    from zvonok.media.sdp.codecs import filter_offer_codecs
    from zvonok.media.sdp.description import SessionDescription
    from zvonok.media.sdp.negotiation import LocalParameters, SessionNegotiator

LOCAL = LocalParameters(
    ice_ufrag="srvufrag",
    ice_pwd="serverpasswordserverpassword",
    fingerprint=("sha-256", ":".join(["AB"] * 32)),
    candidates=["candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"],
)


def local_for(restart: bool) -> LocalParameters:
    return LOCAL


def check_parse(text: str) -> None:
    try:
        desc = SessionDescription.parse(text)
    except ValueError:
        return
    assert SessionDescription.parse(str(desc)) == desc
    for media in desc.media:
        filter_offer_codecs(media)
        media.ssrc_of_media()
        media.rtx_ssrc()
        media.rtx_apt()


def check_offer(text: str) -> None:
    try:
        answer, _ = SessionNegotiator().apply_offer(text, [], local_for)
    except ValueError:
        return
    SessionDescription.parse(answer)


def check_answer(text: str) -> None:
    negotiator = SessionNegotiator()
    negotiator.create_offer([], LOCAL)
    try:
        negotiator.apply_answer(text)
    except ValueError:
        pass


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    check_parse(text)
    check_offer(text)
    check_answer(text)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
