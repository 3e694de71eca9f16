"""Instrument a copy of zvonok for timing the legs of a join (docs/benchmarks.md, "Cluster").

Usage: git archive <commit> src | tar -x -C COPY; python trace_patch.py COPY/src/zvonok; then run
the bench with PYTHONPATH=COPY/src ZVONOK_H5_TRACE=/tmp/tr/run1 (every process of the run, the
bench client and both nodes, appends "<CLOCK_MONOTONIC ns> <event> <args>" lines to
/tmp/tr/run1.<pid>) and python legs.py /tmp/tr/run1 [...]. Written for ebde56a; a throwaway
tool, not part of zvonok.
"""
import sys

TRACE_MODULE = r'''import os, time
_f = None
_on = bool(os.environ.get("ZVONOK_H5_TRACE"))
def ev(name, *args):
    global _f
    if not _on:
        return
    if _f is None:
        _f = open(f"{os.environ['ZVONOK_H5_TRACE']}.{os.getpid()}", "a", buffering=1)
    _f.write(f"{time.perf_counter_ns()} {name} {' '.join(map(str, args))}\n")
'''
root = sys.argv[1].rstrip("/") + "/"
def sub(path, old, new, count=1):
    p = root + path
    s = open(p).read()
    assert s.count(old) >= 1, (path, old)
    s = s.replace(old, new, count)
    open(p, "w").write(s)
T = "from zvonok._h5trace import ev as _ev; "
# ws.py
sub("signaling/ws.py", "        self._sink.room_id = msg.raw_room_id\n",
    "        from zvonok._h5trace import ev as _ev; _ev('ws_join', msg.session_id)\n        self._sink.room_id = msg.raw_room_id\n")
sub("signaling/ws.py", "        self.participant = participant\n",
    "        self.participant = participant\n        _ev('ws_join_done', msg.session_id)\n")
sub("signaling/ws.py", "                await self._ws.send_text(frame)\n",
    "                await self._ws.send_text(frame)\n                if '\"joined\"' in frame:\n                    from zvonok._h5trace import ev as _ev; _ev('ws_joined_sent', self.session_id)\n")
# nodes.py
sub("relay/nodes.py", "                target = await self._locate(key)\n",
    "                from zvonok._h5trace import ev as _ev; _ev('locate_start', session_id)\n                target = await self._locate(key)\n                _ev('locate_done', session_id, target)\n")
sub("relay/nodes.py", "        try:\n            value = await link.request(\n",
    "        from zvonok._h5trace import ev as _ev; _ev('remote_req', session_id, node, relay)\n        try:\n            value = await link.request(\n")
sub("relay/nodes.py", "        self.relayed_joins += 1\n",
    "        self.relayed_joins += 1\n        _ev('remote_ans', session_id)\n")
sub("relay/nodes.py", "        key = RoomKey.parse(str(params[\"room\"]))\n",
    "        from zvonok._h5trace import ev as _ev; _ev('serve_start', params['session'])\n        key = RoomKey.parse(str(params[\"room\"]))\n")
sub("relay/nodes.py", "        self.served[(peer, relay)] = (result, sink)\n",
    "        self.served[(peer, relay)] = (result, sink)\n        _ev('serve_done', params['session'])\n")
sub("relay/nodes.py", "        async with self._room_lock(key):\n            claimed = False\n",
    "        async with self._room_lock(key):\n            from zvonok._h5trace import ev as _ev; _ev('room_lock', session_id)\n            claimed = False\n")
# service.py
sub("rooms/service.py", "            binding = SessionBinding(user_id, key)\n",
    "            from zvonok._h5trace import ev as _ev; _ev('svc_lock', session_id)\n            binding = SessionBinding(user_id, key)\n")
sub("rooms/service.py", "            held = await self._session_dir.bind(session_id, binding)\n",
    "            held = await self._session_dir.bind(session_id, binding)\n            _ev('bind_done', session_id)\n")
sub("rooms/service.py", "        participant.send(self._joined(participant, resumed=False))\n",
    "        _ev('joined_send', session_id)\n        participant.send(self._joined(participant, resumed=False))\n")
sub("rooms/service.py", "        participant.start()\n        return participant, False\n",
    "        participant.start()\n        _ev('svc_done', session_id)\n        return participant, False\n")
# link.py
sub("relay/link.py", "        self.frames_out += 1\n        reason = self._transport.write(data)\n",
    "        self.frames_out += 1\n        from zvonok._h5trace import ev as _ev; _ev('link_send', self.name, seq, frame.kind, frame.method, frame.relay, len(data))\n        reason = self._transport.write(data)\n")
sub("relay/link.py", "    def _on_frame(self, frame: Frame) -> None:\n        self.frames_in += 1\n",
    "    def _on_frame(self, frame: Frame) -> None:\n        self.frames_in += 1\n        from zvonok._h5trace import ev as _ev; _ev('link_rx', self.name, frame.seq, frame.kind, frame.method, frame.relay)\n")
# bus.py
sub("cluster/bus.py", "            try:\n                await self._publish(batch)\n                self.published += len(batch)\n",
    "            from zvonok._h5trace import ev as _ev; _ev('pub_start', len(batch))\n            try:\n                await self._publish(batch)\n                self.published += len(batch)\n                _ev('pub_done', len(batch))\n")
sub("cluster/bus.py", "                    if message is not None and message.get(\"type\") == \"message\":\n",
    "                    if message is not None and message.get(\"type\") == \"message\":\n                        from zvonok._h5trace import ev as _ev; _ev('bus_rx', len(message['data']))\n")
# session.py edge note
sub("relay/session.py", "            self.sink.send(message)\n",
    "            if message.type == 'joined':\n                from zvonok._h5trace import ev as _ev; _ev('edge_joined_note', self._session_id)\n            self.sink.send(message)\n")
# bench client
sub("bench/client.py", "        self.ws_open_ns = time.perf_counter_ns()\n",
    "        self.ws_open_ns = time.perf_counter_ns()\n        from zvonok._h5trace import ev as _ev; _ev('client_open', self.session_id, self.node if hasattr(self, 'node') else -1, self.room_id)\n")
sub("bench/client.py", "                self.joined_ns = time.perf_counter_ns()\n",
    "                self.joined_ns = time.perf_counter_ns()\n                from zvonok._h5trace import ev as _ev; _ev('client_joined', self.session_id)\n")

open(root + "_h5trace.py", "w").write(TRACE_MODULE)
