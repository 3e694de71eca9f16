"""libwebrtc's video layers allocation extension in the SDP: answered (and offered) only on the
m-lines a client sends on, never on what we send; and ``a=extmap-allow-mixed`` (RFC 8285 §6)
echoed when the client's description has it, which Chromium needs to write the allocation with
its layers' sizes (over 16 bytes: the two-byte form). Against Chromium's captured offer."""

from __future__ import annotations

from zvonok.media.sdp.codecs import RECEIVE_ONLY_EXTENSIONS, VLA_URI
from zvonok.media.sdp.description import SessionDescription
from zvonok.media.sdp.negotiation import SessionNegotiator

from .test_sdp_simulcast import edit, load, local_for, subscribed, video


def test_the_allocation_is_answered_where_the_client_sends() -> None:
    assert VLA_URI in RECEIVE_ONLY_EXTENSIONS
    neg = SessionNegotiator()
    text, result = neg.apply_offer(load("chromium_offer_simulcast"), [], local_for)
    answer = SessionDescription.parse(text)
    ids = {e.uri: e.id for e in video(answer).extensions}
    assert ids[VLA_URI] == 9  # Chromium's own id
    published = [t for t in result.published.values() if t.kind == "video"]
    assert published and published[0].extensions[VLA_URI] == 9
    # never on what we send: a subscriber's m-line does not carry it, so it is not forwarded
    assert all(VLA_URI not in s.extensions for s in result.sending.values())


def test_allow_mixed_follows_the_client() -> None:
    offer = load("chromium_offer_simulcast")
    neg = SessionNegotiator()
    text, _ = neg.apply_offer(offer, [], local_for)
    assert SessionDescription.parse(text).extmap_allow_mixed
    # and our next offer keeps it
    reoffer = SessionDescription.parse(neg.create_offer([subscribed()], local_for(False)))
    assert reoffer.extmap_allow_mixed
    assert VLA_URI in {e.uri for e in video(reoffer).extensions}  # where the client sends
    sent = [m for m in reoffer.media if m.kind == "video" and m.direction == "sendonly"]
    assert sent and all(VLA_URI not in {e.uri for e in m.extensions} for m in sent)
    # a client that does not allow it gets an answer without it
    plain = edit(offer, "a=extmap-allow-mixed\r\n", "")
    text, _ = SessionNegotiator().apply_offer(plain, [], local_for)
    assert not SessionDescription.parse(text).extmap_allow_mixed
