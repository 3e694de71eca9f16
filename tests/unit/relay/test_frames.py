"""Worker-link frames (``zvonok.relay.frames``): every kind round-trips through
``bytes(frame)`` / ``Frame.parse(body)``, and each malformed twin is refused with ``FrameError``
saying what is wrong; hypothesis holds the parser to "parses or raises ``FrameError``"."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.relay.frames import HEADER, MAX_COUNTER, MAX_FRAME, Frame, FrameError, frame_length

FRAMES = [
    Frame("req", 1, 0, 7, 1, "join", {"room": "group:7", "user": "alice", "rawRoomId": 7}),
    Frame("req", 2, 5, 0, 9, "metrics", {}),
    Frame("res", 3, 2, 7, 1, value=None),
    Frame("res", 4, 2, 0, 9, value="# HELP zvonok_up\n"),
    Frame("res", 5, 3, 7, 2, value={"user": "bob", "room": "chat:1", "list": [1, 2.5, True]}),
    Frame("res", 6, 3, 7, 3, error={"signal": True, "code": "room-full", "fatal": False}),
    Frame("note", 7, 4, 7, method="send", params={"m": {"type": "joined", "payload": {}}}),
    Frame("note", 8, 4, 0, method="load", params={"cpu": 0.25, "pps": 10.0}),
    Frame("ack", 0, 8),
    Frame("ack", 0, 8, 3),
    Frame("note", MAX_COUNTER, MAX_COUNTER, MAX_COUNTER, method="x", params={}),
    Frame("req", 1, 0, 0, MAX_COUNTER, "ünïcødé", {"text": "звонок ☎"}),
]


def body_of(frame: Frame) -> bytes:
    data = bytes(frame)
    assert HEADER.unpack(data[: HEADER.size]) == (len(data) - HEADER.size,)
    return data[HEADER.size :]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: f"{f.kind}-{f.seq}")
def test_every_kind_round_trips(frame: Frame) -> None:
    body = body_of(frame)
    assert Frame.parse(body) == frame
    assert frame_length(bytes(frame)[: HEADER.size]) == len(body)


def test_the_wire_shape() -> None:
    req = json.loads(body_of(FRAMES[0]))
    assert req == {
        "k": "req",
        "s": 1,
        "a": 0,
        "r": 7,
        "i": 1,
        "m": "join",
        "p": {"room": "group:7", "user": "alice", "rawRoomId": 7},
    }
    assert json.loads(body_of(Frame("ack", 0, 3))) == {"k": "ack", "s": 0, "a": 3}
    assert json.loads(body_of(Frame("res", 2, 1, 0, 4, value=5))) == {
        "k": "res",
        "s": 2,
        "a": 1,
        "i": 4,
        "v": 5,
    }
    # an error wins over a value; an answer of None is carried as null
    assert "v" not in json.loads(body_of(Frame("res", 1, 0, 0, 1, value=5, error={"code": "x"})))
    assert json.loads(body_of(Frame("res", 1, 0, 0, 1)))["v"] is None


def test_parse_fills_defaults_and_ignores_what_a_kind_does_not_carry() -> None:
    assert Frame.parse(b'{"k":"ack"}') == Frame("ack")
    assert Frame.parse(b'{"k":"note","s":1,"m":"ready"}') == Frame("note", 1, method="ready")
    assert Frame.parse(b'{"k":"ack","s":0,"a":2,"m":"x","i":"junk"}') == Frame("ack", 0, 2)
    assert Frame.parse(b'{"k":"note","s":1,"m":"x","i":4}').id == 0


def test_lone_surrogates_survive_the_round_trip() -> None:
    # JSON lets a peer escape a lone surrogate; what parses must encode again (as an escape),
    # or relaying such a client string would fail mid-send
    frame = Frame.parse(b'{"k":"req","s":1,"i":1,"m":"ice","p":{"ice":{"sdpMid":"\\ud800"}}}')
    assert frame.params == {"ice": {"sdpMid": "\ud800"}}
    assert Frame.parse(body_of(frame)) == frame


MALFORMED: list[tuple[bytes, str]] = [
    (b"", "frame is not JSON"),
    (b"{", "frame is not JSON"),
    (b"\xff\xfe\x00", "frame is not JSON"),
    (b'{"k":"req"}\n{"k":"req"}', "frame is not JSON"),
    (b"[]", "frame is not a JSON object"),
    (b'"req"', "frame is not a JSON object"),
    (b"null", "frame is not a JSON object"),
    (b"{}", "unknown frame kind None"),
    (b'{"k":"ping"}', "unknown frame kind 'ping'"),
    (b'{"k":["req"]}', "unknown frame kind ['req']"),
    (b'{"k":{"req":1}}', "unknown frame kind {'req': 1}"),
    (b'{"k":"ack","s":-1}', "frame field 's' must be an integer in 0..2^53-1"),
    (b'{"k":"ack","a":true}', "frame field 'a' must be an integer in 0..2^53-1"),
    (b'{"k":"ack","r":9007199254740992}', "frame field 'r' must be an integer in 0..2^53-1"),
    (b'{"k":"ack","s":1.0}', "frame field 's' must be an integer in 0..2^53-1"),
    (b'{"k":"ack","s":"1"}', "frame field 's' must be an integer in 0..2^53-1"),
    (b'{"k":"ack","s":null}', "frame field 's' must be an integer in 0..2^53-1"),
    (b'{"k":"res","s":1,"i":-5}', "frame field 'i' must be an integer in 0..2^53-1"),
    (b'{"k":"req","s":1,"i":false,"m":"x"}', "frame field 'i' must be an integer in 0..2^53-1"),
    (b'{"k":"req","s":1,"i":1}', "req frame without a method"),
    (b'{"k":"req","s":1,"i":1,"m":""}', "req frame without a method"),
    (b'{"k":"note","s":1,"m":7}', "note frame without a method"),
    (b'{"k":"req","s":1,"i":1,"m":"x","p":[]}', "req frame params must be an object"),
    (b'{"k":"note","s":1,"m":"x","p":null}', "note frame params must be an object"),
    (b'{"k":"res","s":1,"i":1,"e":"boom"}', "res frame error must be an object"),
    (b'{"k":"res","s":1,"i":1,"e":[1]}', "res frame error must be an object"),
    (b"[" * 100_000, "frame is nested too deeply"),
    (b'{"p":' * 50_000, "frame is nested too deeply"),
]


@pytest.mark.parametrize(("body", "message"), MALFORMED, ids=lambda v: repr(v)[:40])
def test_malformed_twins_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(FrameError) as refused:
        Frame.parse(body)
    assert str(refused.value).startswith(message), str(refused.value)


def test_oversize_is_refused_from_the_header_and_the_body() -> None:
    assert frame_length(HEADER.pack(MAX_FRAME)) == MAX_FRAME
    assert frame_length(HEADER.pack(0)) == 0
    with pytest.raises(FrameError, match=f"announced frame of {MAX_FRAME + 1} bytes is above"):
        frame_length(HEADER.pack(MAX_FRAME + 1))
    with pytest.raises(FrameError, match="announced frame of 4294967295 bytes"):
        frame_length(b"\xff\xff\xff\xff")
    with pytest.raises(FrameError, match=f"frame of {MAX_FRAME + 1} bytes is above {MAX_FRAME}"):
        Frame.parse(b" " * (MAX_FRAME + 1))
    big = Frame("res", 1, 0, 0, 1, value="x" * MAX_FRAME)
    with pytest.raises(FrameError, match=f"is above {MAX_FRAME}"):
        bytes(big)


# ---------------------------------------------------------------------------- hypothesis
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
COUNTERS = st.integers(0, MAX_COUNTER)
PARAMS = st.dictionaries(st.text(max_size=8), JSON, max_size=4)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    kind = draw(st.sampled_from(["req", "res", "note", "ack"]))
    seq, ack, relay = draw(COUNTERS), draw(COUNTERS), draw(COUNTERS)
    if kind == "ack":
        return Frame("ack", seq, ack, relay)
    method = draw(st.text(min_size=1, max_size=12))
    if kind == "req":
        return Frame("req", seq, ack, relay, draw(COUNTERS), method, draw(PARAMS))
    if kind == "note":
        return Frame("note", seq, ack, relay, 0, method, draw(PARAMS))
    error: dict[str, Any] | None = draw(st.none() | PARAMS)
    value = None if error is not None else draw(JSON)
    return Frame("res", seq, ack, relay, draw(COUNTERS), value=value, error=error)


@settings(max_examples=200, deadline=None)
@given(frames())
def test_valid_frames_round_trip(frame: Frame) -> None:
    assert Frame.parse(body_of(frame)) == frame


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256) | st.builds(lambda v: json.dumps(v).encode(), JSON))
def test_any_bytes_parse_or_raise_frame_error(body: bytes) -> None:
    try:
        frame = Frame.parse(body)
    except FrameError:
        return
    again = body_of(frame)  # a fixed point (bytes: a NaN the parser accepts is no equal value)
    assert body_of(Frame.parse(again)) == again


@settings(max_examples=200, deadline=None)
@given(frames(), st.sampled_from(["k", "s", "a", "r", "i", "m", "p", "e"]), JSON)
def test_any_field_swapped_for_any_value_parses_or_raises_frame_error(
    frame: Frame, key: str, value: Any
) -> None:
    obj = frame.to_json()
    obj[key] = value
    try:
        parsed = Frame.parse(json.dumps(obj).encode())
    except FrameError:
        return
    again = body_of(parsed)
    assert body_of(Frame.parse(again)) == again


def test_an_error_answer_carries_no_value() -> None:
    frame = Frame.parse(b'{"k":"res","s":1,"i":1,"v":[1],"e":{"code":"x"}}')
    assert frame.value is None and frame.error == {"code": "x"}
