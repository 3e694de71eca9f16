"""The WebSocket sink's envelope: the client's ``roomId`` is echoed as written, ``0`` included."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from starlette.websockets import WebSocket

from zvonok.signaling.messages import State
from zvonok.signaling.ws import WebSocketSink


@pytest.mark.parametrize(("room_id", "echoed"), [(None, ""), (0, 0), ("0", "0"), (7, 7)])
async def test_room_id_is_echoed_as_the_client_wrote_it(room_id: Any, echoed: Any) -> None:
    sink = WebSocketSink(cast(WebSocket, object()), 4)
    sink.room_id, sink.session_id = room_id, "s1"
    sink.send(State("connected"))
    frame = json.loads(sink._queue.get_nowait() or "")
    assert (frame["type"], frame["roomId"], frame["sessionId"]) == ("state", echoed, "s1")
