"""Hypothesis: random and mutated SDP only ever raises ValueError, and what parses round-trips."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvonok.media.sdp.codecs import filter_offer_codecs
from zvonok.media.sdp.description import SessionDescription

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sdp"
TEXTS = [p.read_bytes().decode() for p in sorted(FIXTURES.glob("*.sdp"))]
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
