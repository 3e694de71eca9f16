"""Envelope parsing: every message of the spec, payload as object or JSON string, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from zvonok.ids import SESSION_ID_RE
from zvonok.signaling.messages import (
    ClientMessage,
    MessageError,
    parse_client_message,
    server_message,
)

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def frame(**fields: object) -> str:
    return json.dumps(fields)


def test_spec_examples_parse() -> None:
    join = parse_client_message(frame(type="join", roomId=1, sessionId="unique-session-id"))
    assert (join.type, join.room_id, join.raw_room_id) == ("join", "1", 1)
    offer = parse_client_message(
        frame(type="offer", payload={"type": "offer", "sdp": SDP}, roomId=1, sessionId="s")
    )
    assert offer.description is not None and offer.description.sdp == SDP
    ice = parse_client_message(
        frame(
            type="ice",
            payload={
                "candidate": "candidate:1 1 UDP 2113667326 192.168.1.100 54400 typ host",
                "sdpMLineIndex": 0,
                "sdpMid": "0",
            },
            roomId=1,
            sessionId="s",
        )
    )
    assert ice.ice is not None and ice.ice.sdp_mid == "0" and ice.ice.sdp_mline_index == 0
    leave = parse_client_message(frame(type="leave", roomId=1, sessionId="s"))
    assert leave.type == "leave"


def test_payload_as_json_string() -> None:
    msg = parse_client_message(
        frame(
            type="answer",
            payload=json.dumps({"type": "answer", "sdp": SDP}),
            roomId="7",
            sessionId="s",
        )
    )
    assert msg.description is not None and msg.description.type == "answer"
    assert msg.room_id == "7" and msg.raw_room_id == "7"


def test_end_of_candidates() -> None:
    msg = parse_client_message(frame(type="ice", payload=None, roomId=1, sessionId="s"))
    assert msg.ice is not None and msg.ice.end_of_candidates
    msg = parse_client_message(
        frame(type="ice", payload={"candidate": "", "sdpMid": "0"}, roomId=1, sessionId="s")
    )
    assert msg.ice is not None and msg.ice.end_of_candidates


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("{not json", "bad-json", "invalid JSON"),
        ("[1,2]", "bad-json", "must be a JSON object"),
        ('{"roomId":1,"sessionId":"s"}', "bad-message", "missing or non-string 'type'"),
        ('{"type":"dance","roomId":1,"sessionId":"s"}', "bad-message", "unknown message type"),
        ('{"type":"join","sessionId":"s"}', "bad-message", "missing 'roomId'"),
        ('{"type":"join","roomId":true,"sessionId":"s"}', "bad-message", "roomId must be"),
        ('{"type":"join","roomId":1}', "bad-message", "'sessionId' must be"),
        ('{"type":"join","roomId":1,"sessionId":"a b"}', "bad-message", "'sessionId' must be"),
        ('{"type":"offer","roomId":1,"sessionId":"s"}', "bad-message", "needs a payload"),
        (
            '{"type":"offer","roomId":1,"sessionId":"s","payload":{"sdp":""}}',
            "bad-message",
            "payload.sdp must be",
        ),
        (
            '{"type":"offer","roomId":1,"sessionId":"s","payload":{"type":"answer","sdp":"v=0"}}',
            "bad-message",
            "payload.type",
        ),
        (
            '{"type":"offer","roomId":1,"sessionId":"s","payload":"{broken"}',
            "bad-message",
            "'payload' string is not JSON",
        ),
        (
            '{"type":"ice","roomId":1,"sessionId":"s","payload":{"candidate":5}}',
            "bad-message",
            "payload.candidate must be",
        ),
        (
            '{"type":"ice","roomId":1,"sessionId":"s","payload":{"candidate":"x","sdpMLineIndex":-1}}',
            "bad-message",
            "sdpMLineIndex",
        ),
        ('{"type":"join","roomId":1,"sessionId":"s","payload":[1]}', "bad-message", "'payload'"),
    ],
)
def test_malformed(text: str, code: str, message: str) -> None:
    with pytest.raises(MessageError, match=message) as info:
        parse_client_message(text)
    assert info.value.code == code


def test_server_message_envelope() -> None:
    out = json.loads(server_message("state", {"state": "connected"}, 1, "s"))
    assert out == {
        "type": "state",
        "payload": {"state": "connected"},
        "roomId": 1,
        "sessionId": "s",
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


#: values that make a field usable, so accepted envelopes are generated too
_plausible_values = (
    st.from_regex(SESSION_ID_RE, fullmatch=True)
    | st.fixed_dictionaries(
        {"sdp": st.text(min_size=1, max_size=20)},
        optional={"type": st.sampled_from(["offer", "answer"])},
    )
    | st.fixed_dictionaries(
        {},
        optional={
            "candidate": st.text(max_size=20) | st.none(),
            "sdpMid": st.text(max_size=3) | st.none(),
            "sdpMLineIndex": st.integers(-1, 3) | st.none(),
        },
    )
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_fuzz_raw_frames_only_raise_message_error(data: str | bytes) -> None:
    try:
        decoded = json.loads(data)
    except (ValueError, RecursionError):
        decoded = None
    try:
        msg = parse_client_message(data)
    except MessageError as exc:
        # not a JSON object: "bad-json"; an object that is not a usable message: "bad-message"
        # (or "bad-sdp" for an oversized description), as docs/protocol.md documents
        if isinstance(decoded, dict):
            assert exc.code in ("bad-message", "bad-sdp"), exc.code
        else:
            assert exc.code == "bad-json", exc.code
        return
    assert isinstance(decoded, dict)
    _assert_reflects(msg, decoded)


def _assert_reflects(msg: ClientMessage, fields: dict[str, Any]) -> None:
    """A parsed message says what its frame said."""
    assert msg.type == fields["type"]
    assert msg.raw_room_id == fields["roomId"] and msg.room_id == str(fields["roomId"])
    assert msg.session_id == fields["sessionId"] and SESSION_ID_RE.match(msg.session_id)
    payload = fields.get("payload")
    if isinstance(payload, str):
        payload = json.loads(payload)
    if msg.type in ("offer", "answer"):
        assert isinstance(payload, dict) and msg.description is not None
        assert msg.description.sdp == payload["sdp"] and msg.description.type == msg.type
    else:
        assert msg.description is None
    if msg.type == "ice":
        assert msg.ice is not None
        assert msg.ice.candidate == ((payload or {}).get("candidate") or "")
    else:
        assert msg.ice is None


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "roomId", "sessionId", "payload", "x"]),
        json_values | _plausible_values,
        max_size=5,
    ),
    st.sampled_from(["join", "offer", "answer", "ice", "leave"]),
)
def test_fuzz_envelopes_only_raise_message_error(fields: dict[str, Any], msg_type: str) -> None:
    fields.setdefault("type", msg_type)
    room, session = fields.get("roomId"), fields.get("sessionId")
    try:
        msg = parse_client_message(json.dumps(fields))
    except MessageError as exc:
        assert exc.code in ("bad-message", "bad-sdp"), exc.code  # a JSON object: never bad-json
        if fields["type"] == msg_type:
            assert exc.ref == msg_type  # the error names the message it answers
        event("rejected")
        return
    event("accepted")
    # what is accepted has a usable type, roomId and sessionId
    assert fields["type"] == msg_type
    assert isinstance(room, int | str) and not isinstance(room, bool)
    assert isinstance(session, str)
    _assert_reflects(msg, fields)
