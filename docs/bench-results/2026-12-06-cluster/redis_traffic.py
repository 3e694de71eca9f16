"""Redis traffic of two zvonok nodes (timing 1.0): at rest, per direct join, per relayed join.
INFO commandstats deltas against the bench's own redis-server (loopback)."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from websockets.asyncio.client import connect

from zvonok.bench.cluster import NodePair, command, spawn_pair

REST = float(next((a for a in sys.argv[2:] if a[0].isdigit()), "60"))
JOINS = 10


class Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def stats(pair: NodePair) -> dict[str, dict[str, int]]:
    text = command(pair.redis.port, "INFO", "commandstats").decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            f = dict(i.split("=", 1) for i in rest.split(","))
            out[name[8:]] = {"calls": int(f["calls"]), "usec": int(f["usec"])}
    return out


def net(pair: NodePair) -> tuple[int, int]:
    text = command(pair.redis.port, "INFO", "stats").decode()
    f = dict(l.split(":", 1) for l in text.splitlines() if ":" in l)
    return int(f["total_net_input_bytes"]), int(f["total_net_output_bytes"])


def delta(a: dict, b: dict, seconds: float) -> dict:
    d = {}
    for k, v in b.items():
        calls = v["calls"] - a.get(k, {}).get("calls", 0)
        usec = v["usec"] - a.get(k, {}).get("usec", 0)
        if calls and k not in ("info",):
            d[k] = {"calls": calls, "usec": usec}
    return d


async def window(pair: NodePair, seconds: float, label: str, results: dict) -> None:
    s0, n0 = stats(pair), net(pair)
    await asyncio.sleep(seconds)
    s1, n1 = stats(pair), net(pair)
    results[label] = {"seconds": seconds, "commands": delta(s0, s1, seconds),
                      "bytes_in": n1[0] - n0[0], "bytes_out": n1[1] - n0[1]}


async def main(webhooks: bool) -> None:
    results: dict = {"webhooks": webhooks}
    env = {"ZVONOK_RESUME_GRACE": "30"}
    httpd = None
    if webhooks:
        httpd = HTTPServer(("127.0.0.1", 0), Ok)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        env["ZVONOK_WEBHOOK_URLS"] = json.dumps([f"http://127.0.0.1:{httpd.server_port}/hook"])
    with tempfile.TemporaryDirectory(prefix="zvonok-rt-") as tmp:
        pair = await spawn_pair(Path(tmp), env)
        try:
            n0, n1 = pair.nodes
            rooms = [("group", f"rt{i}", ["alice", "bob"]) for i in range(JOINS)]
            await n0.create_rooms(rooms)
            await asyncio.sleep(5)
            await window(pair, REST, "rest_no_link", results)
            sockets = []

            async def join(node, user: str, room: str) -> None:
                ws = await connect(node.ws_url("group", room),
                                   additional_headers={"Authorization": f"Bearer {node.token(user)}"})
                sockets.append((ws, room, f"{user}-{room}"))
                await ws.send(json.dumps({"type": "join", "roomId": room, "sessionId": f"{user}-{room}"}))
                while json.loads(await ws.recv())["type"] != "joined":
                    pass

            for label, node, user in (("direct_joins", n0, "alice"), ("relayed_joins", n1, "bob")):
                s0, b0, t0 = stats(pair), net(pair), time.monotonic()
                for _, room, _ in rooms:
                    await join(node, user, room)
                await asyncio.sleep(0.5)
                s1, b1 = stats(pair), net(pair)
                results[label] = {"seconds": time.monotonic() - t0, "joins": JOINS,
                                  "commands": delta(s0, s1, 0), "bytes_in": b1[0] - b0[0], "bytes_out": b1[1] - b0[1]}
            await window(pair, REST / 2, "rest_with_calls", results)
            s0, t0 = stats(pair), time.monotonic()
            for ws, room, sid in sockets:
                await ws.send(json.dumps({"type": "leave", "roomId": room, "sessionId": sid}))
                await ws.close()
            await asyncio.sleep(1.0)
            results["leaves"] = {"seconds": time.monotonic() - t0, "commands": delta(s0, stats(pair), 0)}
            await window(pair, REST / 2, "rest_after_calls_link_open", results)
            results["owners"] = {r: pair.owner("group", r) for _, r, _ in rooms}
        finally:
            pair.stop()
            if httpd is not None:
                httpd.shutdown()
    Path(sys.argv[1]).write_text(json.dumps(results, indent=1))


asyncio.run(main("--webhooks" in sys.argv))
