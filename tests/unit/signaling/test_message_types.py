"""The typed signaling messages: every message round-trips, its wire form is the documented one,
every malformed twin is refused with the documented code, and hypothesis drives the parsers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvonok.ids import SESSION_ID_RE, SessionId
from zvonok.signaling.messages import (
    CONNECTION_STATES,
    LEAVE_REASONS,
    MAX_SDP_CHARS,
    MAX_TRACK_SETTINGS,
    PAUSE_REASONS,
    SERVER_MESSAGES,
    Answer,
    ClientMessage,
    Error,
    Ice,
    IcePayload,
    Join,
    Joined,
    LayerState,
    Leave,
    MessageError,
    Offer,
    ParsedServerMessage,
    ParticipantJoined,
    ParticipantLeft,
    Peer,
    PublishBackup,
    PublishedStats,
    PublishLayers,
    ReceivingStats,
    ServerAnswer,
    ServerIce,
    ServerOffer,
    SessionDescriptionPayload,
    Speaker,
    Speakers,
    State,
    Stats,
    TrackInfo,
    TrackMuted,
    TrackPaused,
    Tracks,
    TrackSetting,
    TrackSettings,
    TrackUnavailable,
    encode_server_message,
    parse_client_message,
    parse_client_object,
    parse_server_object,
    server_message,
)

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CANDIDATE = "candidate:1 1 UDP 2113667326 192.168.1.100 54400 typ host"
S = SessionId("unique-session-id")

CLIENT: list[ClientMessage] = [
    Join(1, S),
    Join("abc-1", S),
    Offer(1, S, SessionDescriptionPayload("offer", SDP)),
    Answer("7", S, SessionDescriptionPayload("answer", SDP)),
    Ice(1, S, IcePayload(CANDIDATE, "0", 0)),
    Ice(1, S, IcePayload(CANDIDATE, None, None, "uf1")),
    Ice(1, S, IcePayload("", "0", None)),
    Leave(1, S),
    TrackSettings(1, S, ()),
    TrackSettings(
        "g-1",
        S,
        (
            TrackSetting("t1", paused=True),
            TrackSetting("t2", max_width=320, max_height=180),
            TrackSetting("t3", max_width=1280),
        ),
    ),
]

PUBLISHED = PublishedStats("t1", "0", "audio", 32000, 250, 1, 2.5, 0, 0, False)
RECEIVING = ReceivingStats(
    "t2", "video", "s-b", "bob", None, 10, 1, 0.0, 0, 1.0, None, 2, 1, False, "h", 3, 1
)
SERVER: list[ParsedServerMessage] = [
    Joined("s-a", "alice", "chat:1", (Peer("s-b", "bob"),), ({"urls": ["stun:x"]},), False),
    Joined("s-a", "alice", "group:g", (), (), True),
    ParticipantJoined("s-b", "bob"),
    *(ParticipantLeft("s-b", "bob", reason) for reason in LEAVE_REASONS),
    Tracks((TrackInfo("t1", "s-b", "2", "video", "s-b", "bob"),)),
    Tracks(()),
    ServerOffer(SDP),
    ServerAnswer(SDP),
    ServerIce(CANDIDATE, "0", 0),
    ServerIce("", "0", 0),
    *(State(state) for state in CONNECTION_STATES),
    Error("bad-sdp", "offer refused: no m-line", ref="offer"),
    Error("shutdown", "the server is shutting down", retry_after_ms=1000),
    Error("kicked", "removed by an operator"),
    TrackUnavailable("t1", "video", "s-b", "bob", True, "unsupported-codec", ("video/H264",)),
    TrackUnavailable("t1", "video", "s-b", "bob", False, None, ("video/VP8", "video/H264")),
    Stats(5000, "connected", None, None, None, (), ()),
    Stats(5000, "connected", 64000, 128000, 12.5, (PUBLISHED,), (RECEIVING,), 850_000),
    TrackMuted("t1", "audio", "s-b", "bob", True),
    *(TrackPaused("t1", "video", "s-b", "bob", True, reason) for reason in PAUSE_REASONS),
    TrackPaused("t1", "video", "s-b", "bob", False, "bandwidth"),
    PublishLayers(
        "t1", "1", (LayerState("q", True), LayerState("h", True), LayerState("f", False))
    ),
    PublishBackup("t1", "1", "video/H264", True),
    PublishBackup("t1", "1", "video/VP8", False),
    Speakers(()),
    Speakers((Speaker("s-b", "bob", 0.62), Speaker("s-c", "carol", 0))),
]


def test_every_message_type_has_an_example() -> None:
    assert {type(m).type for m in CLIENT} == {
        "join", "offer", "answer", "ice", "leave", "track-settings"
    }  # fmt: skip
    assert {type(m).type for m in SERVER} == set(SERVER_MESSAGES)


@pytest.mark.parametrize("message", CLIENT, ids=repr)
def test_client_messages_round_trip(message: ClientMessage) -> None:
    assert type(message).parse(message.to_json()) == message
    assert parse_client_object(message.to_json()) == message
    assert parse_client_message(json.dumps(message.to_json())) == message


@pytest.mark.parametrize("message", SERVER, ids=repr)
def test_server_messages_round_trip(message: ParsedServerMessage) -> None:
    assert type(message).parse(message.to_json()) == message
    frame = json.loads(encode_server_message(message, 1, "s"))
    assert (frame["type"], frame["roomId"], frame["sessionId"]) == (message.type, 1, "s")
    assert parse_server_object(frame) == message


def test_track_settings_wire_form() -> None:
    frame = {
        "type": "track-settings",
        "payload": {
            "tracks": [
                {"trackId": "t1", "paused": True},
                {"trackId": "t2", "maxWidth": 320, "maxHeight": 180},
                {"trackId": "t3"},
            ]
        },
        "roomId": 1,
        "sessionId": S,
    }
    message = parse_client_message(json.dumps(frame))
    assert message == TrackSettings(
        1,
        S,
        (TrackSetting("t1", True), TrackSetting("t2", False, 320, 180), TrackSetting("t3")),
    )
    assert message.to_json() == frame
    # null members mean "no limit", like absent ones; the payload may be a JSON string
    nulls = {**frame, "payload": json.dumps({"tracks": [{"trackId": "t", "paused": None,
                                                          "maxWidth": None}]})}  # fmt: skip
    assert parse_client_message(json.dumps(nulls)) == TrackSettings(1, S, (TrackSetting("t"),))
    full = [{"trackId": f"t{i}"} for i in range(MAX_TRACK_SETTINGS)]
    assert len(parse_client_object({**frame, "payload": {"tracks": full}}).tracks) == 64  # type: ignore[union-attr]


def test_adaptive_server_messages_wire_form() -> None:
    assert TrackPaused("t", "video", "b", "bob", True, "bandwidth").to_json() == {
        "trackId": "t", "kind": "video", "sessionId": "b", "userId": "bob", "paused": True,
        "reason": "bandwidth",
    }  # fmt: skip
    assert PublishLayers("t", "1", (LayerState("q", True), LayerState("f", False))).to_json() == {
        "trackId": "t", "mid": "1",
        "layers": [{"rid": "q", "active": True}, {"rid": "f", "active": False}],
    }  # fmt: skip
    assert PublishBackup("t", "1", "video/H264", True).to_json() == {
        "trackId": "t", "mid": "1", "codec": "video/H264", "active": True,
    }  # fmt: skip
    with pytest.raises(MessageError):
        PublishBackup.parse({"trackId": "t", "mid": "1", "codec": "video/VP8", "active": "yes"})
    with pytest.raises(MessageError):
        PublishBackup.parse({"trackId": "t", "mid": "1", "active": True})
    assert encode_server_message(Speakers((Speaker("b", "bob", 0.5),)), 1, "s") == (
        '{"type":"speakers","payload":{"speakers":[{"sessionId":"b","userId":"bob",'
        '"level":0.5}]},"roomId":1,"sessionId":"s"}'
    )
    with pytest.raises(MessageError):
        TrackPaused.parse({**TrackPaused("t", "video", "b", "u", True, "bandwidth").to_json(),
                           "reason": "weather"})  # fmt: skip


def test_client_wire_form_is_the_spec_examples() -> None:
    # calls-api.md, verbatim
    assert Join(1, S).to_json() == {"type": "join", "roomId": 1, "sessionId": S}
    assert Offer(1, S, SessionDescriptionPayload("offer", "v=0\r\n...")).to_json() == {
        "type": "offer",
        "payload": {"type": "offer", "sdp": "v=0\r\n..."},
        "roomId": 1,
        "sessionId": S,
    }
    assert Ice(1, S, IcePayload(CANDIDATE, "0", 0)).to_json()["payload"] == {
        "candidate": CANDIDATE,
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    assert Leave(1, S).to_json() == {"type": "leave", "roomId": 1, "sessionId": S}


@pytest.mark.parametrize(
    ("message", "frame"),
    [
        (
            ServerIce(CANDIDATE, "0", 0),
            server_message(
                "ice", {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}, 1, "s"
            ),
        ),
        (ServerOffer("v=0"), server_message("offer", {"type": "offer", "sdp": "v=0"}, 1, "s")),
        (ServerAnswer("v=0"), server_message("answer", {"type": "answer", "sdp": "v=0"}, 1, "s")),
        (
            State("connected"),
            '{"type":"state","payload":{"state":"connected"},"roomId":1,"sessionId":"s"}',
        ),
        (
            Error("glare", "m", ref="offer"),
            server_message("error", {"code": "glare", "message": "m", "ref": "offer"}, 1, "s"),
        ),
        (
            Error("media-failed", "m", retry_after_ms=0),
            server_message(
                "error", {"code": "media-failed", "message": "m", "retryAfterMs": 0}, 1, "s"
            ),
        ),
        (
            ParticipantLeft("b", "bob", "kicked"),
            server_message(
                "participant-left", {"sessionId": "b", "userId": "bob", "reason": "kicked"}, 1, "s"
            ),
        ),
        (
            TrackMuted("t", "video", "b", "bob", False),
            server_message(
                "track-muted",
                {
                    "trackId": "t",
                    "kind": "video",
                    "sessionId": "b",
                    "userId": "bob",
                    "muted": False,
                    "by": "operator",
                },
                1,
                "s",
            ),
        ),
    ],
)
def test_server_wire_form_is_byte_for_byte_the_old_one(
    message: ParsedServerMessage, frame: str
) -> None:
    assert encode_server_message(message, 1, "s") == frame


def test_joined_and_stats_keys_are_the_documented_ones() -> None:
    joined = SERVER[0].to_json()
    assert list(joined) == [
        "sessionId", "userId", "room", "participants", "iceServers", "resumed"
    ]  # fmt: skip
    assert joined["participants"] == [{"sessionId": "s-b", "userId": "bob"}]
    stats = next(m for m in SERVER if isinstance(m, Stats) and m.receiving).to_json()
    assert list(stats) == [
        "intervalMs", "state", "bitrateIn", "bitrateOut", "rttMs", "published", "receiving",
        "downlinkBps",
    ]  # fmt: skip
    assert stats["downlinkBps"] == 850_000
    assert list(stats["published"][0]) == [
        "trackId", "mid", "kind", "bitrate", "packets", "packetsLost", "jitterMs", "keyframes",
        "nacksSent", "muted",
    ]  # fmt: skip
    assert list(stats["receiving"][0]) == [
        "trackId", "kind", "sessionId", "userId", "bitrate", "packets", "rtx", "fractionLost",
        "packetsLost", "jitterMs", "rttMs", "nacks", "keyframeRequests", "paused", "layer",
        "layerSwitches", "temporalLayer",
    ]  # fmt: skip
    assert stats["receiving"][0]["temporalLayer"] == 1
    tracks = SERVER[len(LEAVE_REASONS) + 3].to_json()
    assert list(tracks["tracks"][0]) == [
        "trackId", "streamId", "mid", "kind", "sessionId", "userId"
    ]  # fmt: skip


# ---------------------------------------------------------------------------- malformed twins
def _client_twins() -> list[tuple[str, dict[str, Any] | str, str]]:
    """(name, a broken frame, the code docs/protocol.md gives) for every client message."""
    twins: list[tuple[str, dict[str, Any] | str, str]] = [
        ("not-json", "{join", "bad-json"),
        ("not-an-object", "[]", "bad-json"),
        ("unknown-type", {"type": "dance", "roomId": 1, "sessionId": "s"}, "bad-message"),
    ]
    for message in CLIENT:
        good = message.to_json()
        name = repr(message)[:40]
        without_room = {k: v for k, v in good.items() if k != "roomId"}
        twins += [
            (f"{name}/no-roomId", without_room, "bad-message"),
            (f"{name}/bool-roomId", {**good, "roomId": True}, "bad-message"),
            (f"{name}/bad-sessionId", {**good, "sessionId": "a b"}, "bad-message"),
            (f"{name}/list-payload", {**good, "payload": [1]}, "bad-message"),
            (f"{name}/broken-payload-string", {**good, "payload": "{x"}, "bad-message"),
        ]
        if isinstance(message, Offer | Answer):
            kind = message.type
            twins += [
                (f"{name}/no-payload", {**good, "payload": None}, "bad-message"),
                (f"{name}/empty-sdp", {**good, "payload": {"sdp": ""}}, "bad-message"),
                (
                    f"{name}/other-type",
                    {**good, "payload": {"type": "x", "sdp": SDP}},
                    "bad-message",
                ),
                (
                    f"{name}/huge-sdp",
                    {**good, "payload": {"type": kind, "sdp": "v" * (MAX_SDP_CHARS + 1)}},
                    "bad-sdp",
                ),
            ]
        if isinstance(message, TrackSettings):
            entry = {"trackId": "t1"}
            broken_entries: list[tuple[str, object]] = [
                ("no-payload", None),
                ("no-tracks", {}),
                ("tracks-object", {"tracks": {"trackId": "t1"}}),
                ("entry-not-object", {"tracks": ["t1"]}),
                ("no-trackId", {"tracks": [{"paused": True}]}),
                ("trackId-number", {"tracks": [{"trackId": 5}]}),
                ("trackId-empty", {"tracks": [{"trackId": ""}]}),
                ("trackId-long", {"tracks": [{"trackId": "t" * 65}]}),
                ("paused-string", {"tracks": [{**entry, "paused": "yes"}]}),
                ("maxWidth-float", {"tracks": [{**entry, "maxWidth": 320.5}]}),
                ("maxWidth-bool", {"tracks": [{**entry, "maxWidth": True}]}),
                ("maxWidth-zero", {"tracks": [{**entry, "maxWidth": 0}]}),
                ("maxHeight-negative", {"tracks": [{**entry, "maxHeight": -1}]}),
                ("maxHeight-huge", {"tracks": [{**entry, "maxHeight": 16385}]}),
                ("too-many", {"tracks": [entry] * (MAX_TRACK_SETTINGS + 1)}),
            ]
            twins += [
                (f"{name}/{what}", {**good, "payload": payload}, "bad-message")
                for what, payload in broken_entries
            ]
        if isinstance(message, Ice):
            payload = good["payload"]
            broken: list[tuple[str, object]] = [
                ("candidate", 5),
                ("candidate", "c" * 1025),
                ("sdpMid", 0),
                ("sdpMid", "m" * 65),
                ("sdpMLineIndex", -1),
                ("sdpMLineIndex", True),
                ("usernameFragment", 1),
            ]
            twins += [
                (
                    f"{name}/{key}={value!r:.8}",
                    {**good, "payload": {**payload, key: value}},
                    "bad-message",
                )
                for key, value in broken
            ]
    return twins


@pytest.mark.parametrize(("name", "frame", "code"), _client_twins(), ids=lambda v: str(v)[:60])
def test_malformed_client_twins(name: str, frame: dict[str, Any] | str, code: str) -> None:
    text = frame if isinstance(frame, str) else json.dumps(frame)
    with pytest.raises(MessageError) as info:
        parse_client_message(text)
    assert info.value.code == code, name
    if isinstance(frame, dict) and frame["type"] != "dance":
        assert info.value.ref == frame["type"]  # the error names the message it answers


@pytest.mark.parametrize("text", ["candidate:garbage", "candidate:1 1 UDP 1 10.0.0.1 9 typ nope"])
def test_a_bad_candidate_is_bad_candidate_when_used(text: str) -> None:
    message = parse_client_object(Ice(1, S, IcePayload(text, "0", 0)).to_json())
    assert isinstance(message, Ice)  # the envelope is fine: room and session are judged first
    with pytest.raises(MessageError, match="bad ICE candidate") as info:
        message.ice.parsed_candidate()
    assert (info.value.code, info.value.ref) == ("bad-candidate", "ice")


def test_good_candidates_parse_when_used() -> None:
    assert str(IcePayload(CANDIDATE, "0", 0).parsed_candidate()) == CANDIDATE
    assert IcePayload("", "0", 0).parsed_candidate() is None


def _server_twins() -> list[tuple[str, dict[str, Any]]]:
    """Every server message with one field missing (when required) or of the wrong type."""
    twins: list[tuple[str, dict[str, Any]]] = []
    for message in SERVER:
        good = message.to_json()
        for _, key, _ in type(message).FIELDS:
            name = f"{message.type}/{key}"
            twins.append((f"{name}=object", {**good, key: {"x": 1}}))
            if not (isinstance(message, Error) and key in ("ref", "retryAfterMs")):
                twins.append((f"{name}-missing", {k: v for k, v in good.items() if k != key}))
        if isinstance(message, ServerOffer | ServerAnswer):
            twins.append((f"{message.type}/type", {**good, "type": "pranswer"}))
            twins.append((f"{message.type}/empty-sdp", {**good, "sdp": ""}))
    return twins


@pytest.mark.parametrize(("name", "payload"), _server_twins(), ids=lambda v: str(v)[:60])
def test_malformed_server_twins(name: str, payload: dict[str, Any]) -> None:
    kind = SERVER_MESSAGES[name.split("/")[0]]
    with pytest.raises(MessageError) as info:
        kind.parse(payload)
    assert (info.value.code, info.value.ref) == ("bad-message", kind.type), name


def test_server_envelope_errors() -> None:
    for data in ({}, {"type": "dance", "payload": {}}, {"type": "state", "payload": "x"}):
        with pytest.raises(MessageError) as info:
            parse_server_object(data)
        assert info.value.code == "bad-message"


# ---------------------------------------------------------------------------- hypothesis
text = st.text(max_size=12)
ids = st.from_regex(SESSION_ID_RE, fullmatch=True)
room_ids = st.integers(0, 2**53) | st.text(min_size=1, max_size=8)
count = st.integers(0, 2**40)
maybe_count = st.none() | count
number = st.integers(0, 10**6) | st.floats(0, 1e6, allow_nan=False)
kind = st.sampled_from(["audio", "video"])
descriptions = st.text(min_size=1, max_size=40)
ice_payloads = st.builds(
    IcePayload,
    st.text(max_size=60),
    st.none() | st.text(max_size=64),
    st.none() | st.integers(0, 2**31),
    st.none() | text,
)
client_messages: st.SearchStrategy[ClientMessage] = st.one_of(
    st.builds(Join, room_ids, ids),
    st.builds(Leave, room_ids, ids),
    st.builds(
        Offer, room_ids, ids, st.builds(SessionDescriptionPayload, st.just("offer"), descriptions)
    ),
    st.builds(
        Answer, room_ids, ids, st.builds(SessionDescriptionPayload, st.just("answer"), descriptions)
    ),
    st.builds(Ice, room_ids, ids, ice_payloads),
    st.builds(
        TrackSettings,
        room_ids,
        ids,
        st.lists(
            st.builds(
                TrackSetting,
                st.text(min_size=1, max_size=64),
                st.booleans(),
                st.none() | st.integers(1, 16384),
                st.none() | st.integers(1, 16384),
            ),
            max_size=4,
        ).map(tuple),
    ),
)
published = st.builds(
    PublishedStats, text, text, kind, maybe_count, count, count, number, count, count, st.booleans()
)
receiving = st.builds(
    ReceivingStats,
    text,
    kind,
    st.none() | text,
    st.none() | text,
    maybe_count,
    count,
    count,
    number,
    count,
    number,
    st.none() | number,
    count,
    count,
    st.booleans(),
    st.none() | text,
    count,
)
json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
ice_servers = st.dictionaries(
    st.text(max_size=8), json_scalars | st.lists(json_scalars), max_size=3
)
server_messages: st.SearchStrategy[ParsedServerMessage] = st.one_of(
    st.builds(
        Joined,
        text,
        text,
        text,
        st.lists(st.builds(Peer, text, text), max_size=3).map(tuple),
        st.lists(ice_servers, max_size=3).map(tuple),
        st.booleans(),
    ),
    st.builds(ParticipantJoined, text, text),
    st.builds(ParticipantLeft, text, text, st.sampled_from(LEAVE_REASONS)),
    st.builds(
        Tracks,
        st.lists(st.builds(TrackInfo, text, text, text, kind, text, text), max_size=3).map(tuple),
    ),
    st.builds(ServerOffer, descriptions),
    st.builds(ServerAnswer, descriptions),
    st.builds(ServerIce, text, text, st.integers(0, 100)),
    st.builds(State, st.sampled_from(CONNECTION_STATES)),
    st.builds(Error, text, text, st.none() | text, st.none() | st.integers(0, 10**6)),
    st.builds(
        Stats,
        count,
        st.sampled_from(CONNECTION_STATES),
        maybe_count,
        maybe_count,
        st.none() | number,
        st.lists(published, max_size=2).map(tuple),
        st.lists(receiving, max_size=2).map(tuple),
        maybe_count,
    ),
    st.builds(TrackMuted, text, kind, text, text, st.booleans()),
    st.builds(
        TrackUnavailable,
        text,
        kind,
        text,
        text,
        st.booleans(),
        st.none() | st.sampled_from(("unsupported-codec", "codec-conflict")),
        st.lists(text, max_size=3).map(tuple),
    ),
    st.builds(TrackPaused, text, kind, text, text, st.booleans(), st.sampled_from(PAUSE_REASONS)),
    st.builds(
        PublishLayers,
        text,
        text,
        st.lists(st.builds(LayerState, text, st.booleans()), max_size=3).map(tuple),
    ),
    st.builds(PublishBackup, text, text, text, st.booleans()),
    st.builds(Speakers, st.lists(st.builds(Speaker, text, text, number), max_size=3).map(tuple)),
)


@settings(max_examples=300, deadline=None)
@given(client_messages)
def test_property_client_messages_round_trip_through_the_wire(message: ClientMessage) -> None:
    assert parse_client_message(json.dumps(message.to_json())) == message


@settings(max_examples=300, deadline=None)
@given(server_messages, room_ids, st.none() | ids)
def test_property_server_messages_round_trip_through_the_wire(
    message: ParsedServerMessage, room: int | str, session: str | None
) -> None:
    frame = json.loads(encode_server_message(message, room, session))
    assert (frame["roomId"], frame["sessionId"]) == (room, session)
    assert parse_server_object(frame) == message


json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(server_messages, st.data())
def test_property_server_parsers_only_raise_bad_message(
    message: ParsedServerMessage, data: st.DataObject
) -> None:
    """A payload with any field replaced by any JSON value parses to a message or is refused
    with ``bad-message``; what parses says what the payload said."""
    payload = message.to_json()
    key = data.draw(st.sampled_from([key for _, key, _ in type(message).FIELDS]))
    payload[key] = data.draw(json_values)
    try:
        parsed = type(message).parse(payload)
    except MessageError as exc:
        assert (exc.code, exc.ref) == ("bad-message", message.type)
        return
    again = parsed.to_json()
    assert type(message).parse(again) == parsed
    for _, k, _ in type(message).FIELDS:
        if payload.get(k) is not None:
            assert again[k] == payload[k], k


@settings(max_examples=300, deadline=None)
@given(client_messages, st.data())
def test_property_client_parsers_only_raise_documented_codes(
    message: ClientMessage, data: st.DataObject
) -> None:
    """One envelope or payload member of a good message replaced by any JSON value."""
    frame = message.to_json()
    payload = frame.get("payload")
    if isinstance(payload, dict) and data.draw(st.booleans()):
        payload[data.draw(st.sampled_from(sorted(payload) + ["x"]))] = data.draw(json_values)
    else:
        frame[data.draw(st.sampled_from(["roomId", "sessionId", "payload"]))] = data.draw(
            json_values
        )
    try:
        parsed = parse_client_object(frame)
    except MessageError as exc:
        assert exc.code in ("bad-message", "bad-sdp") and exc.ref == message.type
        return
    assert type(parsed) is type(message)
    assert parse_client_object(parsed.to_json()) == parsed
