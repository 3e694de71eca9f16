"""Hypothesis: random and mutated SDP only ever raises ValueError, and what parses round-trips."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvonok.media.sdp.codecs import filter_offer_codecs
from zvonok.media.sdp.description import SessionDescription
from zvonok.media.sdp.negotiation import LocalParameters, SessionNegotiator
from zvonok.media.sdp.simulcast import MAX_LAYERS, send_rids

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sdp"
TEXTS = [p.read_bytes().decode() for p in sorted(FIXTURES.glob("*.sdp"))]
SIMULCAST = (FIXTURES / "chromium_offer_simulcast.sdp").read_bytes().decode()
LOCAL = LocalParameters("srvu", "serverpasswordserverpassword", ("sha-256", "AB:" * 31 + "AB"), [])
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
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
        try:
            rids = send_rids(media)
        except ValueError:
            continue
        assert len(rids) <= MAX_LAYERS and len(set(rids)) == len(rids)
        assert set(rids) <= {r.id for r in media.rids if r.direction == "send"}


@SETTINGS
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    check(text)


@SETTINGS
@given(st.text(alphabet="vosmact=:/ 0123456789-\r\nIP4UDPaudiortpmap", max_size=300))
def test_random_sdp_alphabet(text: str) -> None:
    check("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n" + text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(TEXTS)).split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "cut", "char", "swap"]))
        line = lines[index]
        if action == "drop":
            del lines[index]
        elif action == "dup":
            lines.insert(index, line)
        elif action == "cut":
            lines[index] = line[: draw(st.integers(0, len(line)))]
        elif action == "char" and line:
            pos = draw(st.integers(0, len(line) - 1))
            char = draw(st.sampled_from(list(" :/=;x9\x00é-")))
            lines[index] = line[:pos] + char + line[pos + 1 :]
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], line
        if not lines:
            lines = [""]
    return "\r\n".join(lines)


@SETTINGS
@given(mutated())
def test_mutated_fixtures(text: str) -> None:
    check(text)


RID_IDS = st.sampled_from(["q", "h", "f", "x", "~q", "~h", "", "é", "a" * 17, "1_-"])


@st.composite
def simulcast_lines(draw: st.DrawFn) -> str:
    """Chromium's simulcast offer with random a=rid and a=simulcast lines in its video m-line."""
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        rid = draw(RID_IDS).lstrip("~")
        direction = draw(st.sampled_from(["send", "recv", "sendrecv"]))
        params = draw(st.sampled_from(["", " max-width=640", " pt=96;max-fps=30", " ;"]))
        lines.append(f"a=rid:{rid} {direction}{params}")
    if draw(st.booleans()):
        streams = [
            ",".join(draw(st.lists(RID_IDS, min_size=1, max_size=3)))
            for _ in range(draw(st.integers(1, 5)))
        ]
        head = draw(st.sampled_from(["send ", "recv ", "recv z send ", "send ", " send "]))
        lines.append("a=simulcast:" + head + ";".join(streams))
    video = SIMULCAST.index("a=rid:q send")
    end = SIMULCAST.index("a=simulcast:send q;h;f\r\n") + len("a=simulcast:send q;h;f\r\n")
    return SIMULCAST[:video] + "".join(line + "\r\n" for line in lines) + SIMULCAST[end:]


@SETTINGS
@given(simulcast_lines())
def test_random_simulcast_offers(text: str) -> None:
    """Any rid/simulcast combination either refuses the offer with ValueError or is answered
    with at most three declared, distinct rids (paused ones marked), which our answer receives
    and the published track lists."""
    check(text)
    neg = SessionNegotiator()
    try:
        answer, result = neg.apply_offer(text, [], lambda restart: LOCAL)
    except ValueError:
        assert neg.slots == []
        return
    video = SessionDescription.parse(answer).media[1]
    rids = tuple(r.id for r in video.rids)
    assert len(rids) <= MAX_LAYERS and all(r.direction == "recv" for r in video.rids)
    written = None if video.simulcast is None else video.simulcast.replace("~", "")
    assert written == ("recv " + ";".join(rids) if rids else None)  # paused ones marked ~
    published = result.published.get("1")
    assert (published.rids if published is not None else ()) == rids
