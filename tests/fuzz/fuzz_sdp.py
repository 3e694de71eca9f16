"""Atheris harness: SDP parsing and offer/answer negotiation (``zvonok.media.sdp``).

Each input is SDP text: it is parsed (what parses must render and parse back equal, and its
codec helpers must work), applied as a client offer to a fresh ``SessionNegotiator`` and as the
client's answer to a server offer. Proves that only ``ValueError`` ever escapes, and that an
answer to an accepted offer is one (RFC 3264 §6, RFC 8829 §5.3): as many m-lines of the same
kinds and mids, our ICE-lite credentials, fingerprint and ``a=setup:passive`` in each, only
offered codecs (same payload types) and header extensions (same ids) on the accepted m-lines,
a direction that mirrors the offer's, port 0 and ``a=inactive`` on the rejected ones, and one
BUNDLE group of exactly the accepted mids. Run:
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
        answer_text, _ = SessionNegotiator().apply_offer(text, [], local_for)
    except ValueError:
        return
    offer = SessionDescription.parse(text)
    answer = SessionDescription.parse(answer_text)
    assert answer.ice_lite, "the answer does not say a=ice-lite"
    assert len(answer.media) == len(offer.media), "the answer's m-lines differ from the offer's"
    accepted: list[str] = []
    for o, a in zip(offer.media, answer.media, strict=True):
        assert a.kind == o.kind, f"m-line kind {o.kind} answered as {a.kind}"
        assert a.mid is not None and (o.mid is None or a.mid == o.mid), (o.mid, a.mid)
        ice = (a.ice_ufrag or answer.ice_ufrag, a.ice_pwd or answer.ice_pwd)
        assert ice == (LOCAL.ice_ufrag, LOCAL.ice_pwd), ice
        fingerprints = [(h.lower(), v.upper()) for h, v in a.fingerprints or answer.fingerprints]
        assert fingerprints == [LOCAL.fingerprint], fingerprints
        assert (a.setup or answer.setup) == "passive", "zvonok is always the DTLS server"
        if a.port == 0:
            assert a.direction == "inactive", a.direction
            continue
        accepted.append(a.mid)
        assert a.rtcp_mux and a.codecs, "an accepted m-line needs rtcp-mux and a codec"
        offered = {c.payload_type: c for c in o.codecs}
        for codec in a.codecs:
            mine = offered.get(codec.payload_type)
            assert mine is not None, f"payload type {codec.payload_type} was not offered"
            assert (codec.name.lower(), codec.clock_rate) == (mine.name.lower(), mine.clock_rate)
        extensions = {(e.id, e.uri) for e in a.extensions}
        assert extensions <= {(e.id, e.uri) for e in o.extensions}, extensions
        client_sends = (o.direction or "sendrecv") in ("sendrecv", "sendonly")
        client_receives = (o.direction or "sendrecv") in ("sendrecv", "recvonly")
        # Nothing to send yet: an m-line the client receives on is vacant (a placeholder that
        # reserves SSRCs, docs/protocol.md), so we answer as sending there.
        expected = {(True, True): "sendrecv", (True, False): "recvonly"}
        expected |= {(False, True): "sendonly", (False, False): "inactive"}
        assert a.direction == expected[client_sends, client_receives], (o.direction, a)
        if client_receives:
            assert a.msid == ("-", f"vacant-{a.mid}") and a.ssrc_of_media() is not None, a
    assert answer.bundle == ([accepted] if accepted else []), (answer.bundle, accepted)


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
