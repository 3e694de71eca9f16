"""The Janus comparison target: our own Janus VideoRoom driven by the same generator.

Owns ``spawn_janus`` (the installed ``janus`` binary started with a configuration written here
into a temp dir: only the WebSocket transport on 127.0.0.1 and the VideoRoom plugin, ICE-lite,
no ICE-TCP, no STUN/TURN, half trickle, a log file, warnings only; stopped by PID). Janus never
gathers candidates on a loopback interface, so its ICE is enforced onto this machine's one local
IPv4 address (``media_address``) and our sockets for it bind there too: packets between two
addresses of this machine still go through the kernel's loopback path and never leave it.
Also ``JanusServer``, the Janus API message builders and parsers (sessions, handles,
keepalives, VideoRoom requests), ``JanusConnection`` (one WebSocket with the
``janus-protocol`` subprotocol and one Janus session), ``JanusParticipant`` (one generated
participant: a publisher handle whose peer connection carries our sendonly offer, Opus + VP8,
where Janus answers ``a=setup:active`` so our side is the DTLS server, and one multistream
subscriber handle on which Janus offers every other publisher's streams and we answer recvonly as
the DTLS client) and ``run_janus`` (the scenario: rooms created over the API, senders publish
first, everyone subscribes to every other publisher of the room, then ``measure.measure``; join
time is from a participant's first signaling message to the first media packet it receives).

The media plane is ``client.MediaLeg``: ICE checks with USE-CANDIDATE against Janus's ICE-lite
agent (whose own check to us the leg answers), consent every 4-6 s, DTLS-SRTP, the clip and the
pacer, the RTP padding send mark (Janus relays padding untouched while rewriting SSRC, sequence
numbers and timestamps), PLI/FIR answered with a keyframe, SO_TIMESTAMPNS on receive. CPU and
RSS are those of the Janus process (one process, all its threads). Never imported by the server;
copies nothing from Janus.
"""

from __future__ import annotations

import asyncio
import fcntl
import glob
import itertools
import json
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

from ..media.transport.dtls import DtlsCertificate
from .client import AUDIO, VIDEO, MediaLeg, Meter
from .clip import Clip, load_clip
from .measure import LagMonitor, Scenario, Window, each, measure, room_sources
from .sdp import LocalMedia, build_answer, build_offer, parse_offer
from .target import ProcStat, free_port, start_process, stop_process

PROTOCOL = Subprotocol("janus-protocol")
PLUGIN = "janus.plugin.videoroom"
VIDEOROOM_SO = "libjanus_videoroom.so"
WEBSOCKETS_SO = "libjanus_websockets.so"
JANUS_BINARY = "/usr/bin/janus"
LIB_DIRS = ("/usr/lib/*/janus", "/usr/lib/janus", "/usr/local/lib/janus", "/opt/janus/lib/janus")
DEBUG_LEVEL = 3  # warnings and errors only
START_TIMEOUT = 20.0
REQUEST_TIMEOUT = 20.0
CONNECT_TIMEOUT = 20.0
KEEPALIVE_INTERVAL = 25.0  # Janus drops a session after 60 s without a request
MAX_KEEPALIVES = 100_000
MAX_MESSAGES = 1_000_000
KIND_INDEX = {"audio": AUDIO, "video": VIDEO}
_SIOCGIFFLAGS, _SIOCGIFADDR = 0x8913, 0x8915  # <linux/sockios.h>
_IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x1, 0x8, 0x40  # <net/if.h>


class JanusError(RuntimeError):
    """Janus refused a request (a Janus API or VideoRoom error), or did not answer in time."""


# -- configuration and process --------------------------------------------------------------------


def find_janus() -> tuple[Path, Path]:
    """The ``janus`` binary and its library dir (with ``plugins/`` and ``transports/``)."""
    binary = shutil.which("janus") or JANUS_BINARY
    if not Path(binary).is_file():
        raise RuntimeError(
            f"Janus is not installed: no janus on PATH nor {JANUS_BINARY} (Debian package janus)"
        )
    for pattern in LIB_DIRS:
        for lib in sorted(glob.glob(pattern)):
            base = Path(lib)
            if (base / "plugins" / VIDEOROOM_SO).exists() and (
                base / "transports" / WEBSOCKETS_SO
            ).exists():
                return Path(binary), base
    raise RuntimeError(f"Janus's {VIDEOROOM_SO} and {WEBSOCKETS_SO} not found in {LIB_DIRS}")


def media_address() -> str:
    """The IPv4 address Janus gathers its host candidate on: the first interface that is up,
    running and not loopback (Janus never gathers on loopback interfaces, whatever its
    configuration says). Packets to an address of this machine never leave it: the kernel
    delivers them through its loopback path, as for 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            request = struct.pack("16s24x", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(sock, _SIOCGIFFLAGS, request), 16)[0]
                if flags & _IFF_LOOPBACK or flags & (_IFF_UP | _IFF_RUNNING) != (
                    _IFF_UP | _IFF_RUNNING
                ):
                    continue
                address = fcntl.ioctl(sock, _SIOCGIFADDR, request)[20:24]
            except OSError:  # no IPv4 address on it
                continue
            return socket.inet_ntoa(address)
    raise RuntimeError(
        "Janus gathers no candidates on loopback and this machine has no other IPv4 interface"
    )


def janus_config(root: Path, address: str, *, debug_level: int = DEBUG_LEVEL) -> str:
    """``janus.jcfg``: folders under ``root``, a log file, ICE-lite on ``address`` only."""
    return f"""general: {{
	configs_folder = "{root}/conf"
	plugins_folder = "{root}/plugins"
	transports_folder = "{root}/transports"
	events_folder = "{root}/events"
	loggers_folder = "{root}/loggers"
	log_to_stdout = false
	log_to_file = "{root}/janus.log"
	debug_level = {debug_level}
	debug_colors = false
	server_name = "zvonok-bench"
	session_timeout = 60
}}
certificates: {{
}}
media: {{
	ipv6 = false
	dtls_mtu = 1200
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_lite = true
	ice_tcp = false
	ignore_mdns = true
	ice_enforce_list = "{address}"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
}}
"""


def websockets_config(port: int) -> str:
    """``janus.transport.websockets.jcfg``: plain WebSocket on 127.0.0.1:``port`` only."""
    return f"""general: {{
	json = "compact"
	ws = true
	ws_port = {port}
	ws_ip = "127.0.0.1"
	wss = false
}}
admin: {{
	admin_ws = false
	admin_wss = false
}}
"""


VIDEOROOM_CONFIG = """general: {
}
"""


def write_config(root: Path, lib: Path, port: int, address: str) -> Path:
    """Write the configuration tree under ``root``; returns the path of ``janus.jcfg``.

    The plugin and transport folders hold one symlink each (the VideoRoom plugin, the WebSocket
    transport), so Janus loads nothing else.
    """
    for sub, name in (("plugins", VIDEOROOM_SO), ("transports", WEBSOCKETS_SO)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        link = root / sub / name
        if not link.exists():
            link.symlink_to(lib / sub / name)
    for sub in ("events", "loggers", "conf"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "conf" / "janus.transport.websockets.jcfg").write_text(websockets_config(port))
    (root / "conf" / "janus.plugin.videoroom.jcfg").write_text(VIDEOROOM_CONFIG)
    main = root / "conf" / "janus.jcfg"
    main.write_text(janus_config(root, address))
    return main


@dataclass
class JanusServer:
    """Our own Janus process."""

    ws_url: str
    root: Path
    process: subprocess.Popen[bytes]
    address: str  # where its media sockets are (and ours for it)
    version: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def name(self) -> str:
        return f"janus {self.version}".strip()

    def log_tail(self, lines: int = 15) -> str:
        """The end of Janus's log (and of its stdout), for error messages."""
        out: list[str] = []
        for name in ("janus.log", "janus.out"):
            try:
                out += (self.root / name).read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
        return "\n".join(out)

    def stop(self) -> None:
        """SIGTERM our own Janus by PID, SIGKILL after ``target.STOP_TIMEOUT``."""
        stop_process(self.process)

    async def create_rooms(self, rooms: Sequence[tuple[int, int]]) -> None:
        """Create (room id, publishers) VideoRooms through an admin session of its own."""
        conn = JanusConnection(self.ws_url, "admin", [])
        try:
            await conn.open()
            await conn.create_session(keepalive=False)
            handle = await conn.attach(PLUGIN)
            for room, publishers in rooms:
                data = plugin_data(await conn.message(handle, create_room_body(room, publishers)))
                if data.get("videoroom") != "created":
                    raise JanusError(f"room {room} not created: {data}")
        finally:
            await conn.close()


async def spawn_janus(root: Path) -> JanusServer:
    """Start Janus with a configuration under ``root``; returns once its API answers ``info``."""
    binary, lib = find_janus()
    port, address = free_port(socket.SOCK_STREAM), media_address()
    config = write_config(root, lib, port, address)
    argv = [str(binary), "-C", str(config), "-F", str(root / "conf")]
    process = start_process(argv, root / "janus.out", cwd=root)
    server = JanusServer(f"ws://127.0.0.1:{port}", root, process, address)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"janus exited with {process.returncode}:\n{server.log_tail()}")
            version = await _server_version(server.ws_url)
            if version:
                server.version = version
                return server
            await asyncio.sleep(0.2)
        raise RuntimeError(f"janus did not answer within {START_TIMEOUT} s:\n{server.log_tail()}")
    except BaseException:
        server.stop()
        raise


async def _server_version(url: str) -> str:
    """Janus's ``version_string`` from an ``info`` request ('' while it does not answer)."""
    conn = JanusConnection(url, "probe", [])
    try:
        await conn.open(limit=1.0)
        return version_of(await conn.call(janus_request("info"), limit=2.0))
    except (OSError, TimeoutError, JanusError, WebSocketException):
        return ""
    finally:
        await conn.close()


# -- Janus API messages (pure) --------------------------------------------------------------------


def janus_request(
    kind: str, *, session: int | None = None, handle: int | None = None, **fields: Any
) -> dict[str, Any]:
    """A Janus API request (the transaction is added when it is sent)."""
    message: dict[str, Any] = {"janus": kind}
    if session is not None:
        message["session_id"] = session
    if handle is not None:
        message["handle_id"] = handle
    message.update(fields)
    return message


def create_room_body(room: int, publishers: int) -> dict[str, Any]:
    """VideoRoom ``create``: Opus + VP8, no joining notifications, no periodic FIR, no cap."""
    return {
        "request": "create",
        "room": room,
        "description": f"zvonok bench {room}",
        "publishers": publishers,
        "audiocodec": "opus",
        "videocodec": "vp8",
        "notify_joining": False,
        "fir_freq": 0,
        "bitrate": 0,
        "permanent": False,
    }


def publisher_join_body(room: int, display: str) -> dict[str, Any]:
    return {"request": "join", "ptype": "publisher", "room": room, "display": display}


def publish_body() -> dict[str, Any]:
    return {"request": "publish"}


def subscriber_join_body(room: int, feeds: Sequence[int]) -> dict[str, Any]:
    """A multistream subscription (Janus 1.x): every stream of every feed in ``feeds``."""
    return {
        "request": "join",
        "ptype": "subscriber",
        "room": room,
        "streams": [{"feed": feed} for feed in feeds],
    }


def update_body(feeds: Sequence[int]) -> dict[str, Any]:
    """Add ``feeds`` to an existing subscription (Janus renegotiates with a new offer)."""
    return {"request": "update", "subscribe": [{"feed": feed} for feed in feeds]}


def start_body() -> dict[str, Any]:
    return {"request": "start"}


def jsep(kind: str, sdp: str) -> dict[str, Any]:
    """A JSEP description; ``trickle: false``: our one candidate is in the SDP."""
    return {"type": kind, "sdp": sdp, "trickle": False}


def reply_error(message: dict[str, Any]) -> str | None:
    """The error a reply carries: a Janus API error or a plugin error; ``None`` when none."""
    if message.get("janus") == "error":
        error = message.get("error") or {}
        return f"janus error {error.get('code')}: {error.get('reason')}"
    data = plugin_data(message, check=False)
    if "error" in data or "error_code" in data:
        return f"videoroom error {data.get('error_code')}: {data.get('error')}"
    return None


def reply_id(message: dict[str, Any]) -> int:
    """The new session's or handle's id in a ``success`` reply."""
    try:
        return int(message["data"]["id"])
    except (KeyError, TypeError, ValueError):
        raise JanusError(f"no id in {message}") from None


def plugin_data(message: dict[str, Any], *, check: bool = True) -> dict[str, Any]:
    """``plugindata.data`` of a plugin reply or event ({} when absent)."""
    plugindata = message.get("plugindata")
    data = plugindata.get("data") if isinstance(plugindata, dict) else None
    if not isinstance(data, dict):
        if check:
            raise JanusError(f"no plugin data in {message}")
        return {}
    return data


def reply_sdp(message: dict[str, Any], kind: str) -> str | None:
    """The SDP of the JSEP ``kind`` (offer/answer) a reply carries, if any."""
    description = message.get("jsep")
    if isinstance(description, dict) and description.get("type") == kind:
        sdp = description.get("sdp")
        return sdp if isinstance(sdp, str) else None
    return None


def version_of(info: dict[str, Any]) -> str:
    """The ``version_string`` of a ``server_info`` reply ('' when it is not one)."""
    if info.get("janus") != "server_info":
        return ""
    return str(info.get("version_string") or info.get("version") or "")


# -- signaling ------------------------------------------------------------------------------------


class JanusConnection:
    """One WebSocket to Janus and (after ``create_session``) one session on it."""

    def __init__(self, url: str, name: str, errors: list[str]) -> None:
        self.url, self.name, self.errors = url, name, errors
        self.ws: ClientConnection | None = None
        self.session: int | None = None
        self.closing = False
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.descriptions: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # unsolicited JSEP
        self._up: dict[int, asyncio.Event] = {}  # handle -> Janus reported webrtcup
        self._transactions = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, *, limit: float = CONNECT_TIMEOUT) -> None:
        self.ws = await connect(
            self.url, subprotocols=[PROTOCOL], open_timeout=limit, max_size=2**22
        )
        self._tasks.append(asyncio.get_running_loop().create_task(self._read()))

    async def send(self, message: dict[str, Any]) -> str:
        """Send ``message`` with a new transaction; returns the transaction."""
        assert self.ws is not None
        transaction = f"{self.name}-{next(self._transactions)}"
        await self.ws.send(json.dumps({**message, "transaction": transaction}))
        return transaction

    async def call(
        self, message: dict[str, Any], *, limit: float = REQUEST_TIMEOUT
    ) -> dict[str, Any]:
        """Send a request and wait for its final reply (``ack`` skipped); raises on an error."""
        assert self.ws is not None
        transaction = f"{self.name}-{next(self._transactions)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        try:
            await self.ws.send(json.dumps({**message, "transaction": transaction}))
            reply = await asyncio.wait_for(future, limit)
        except TimeoutError:
            raise JanusError(f"{self.name}: no reply to {message.get('janus')} in time") from None
        finally:
            self._pending.pop(transaction, None)
        error = reply_error(reply)
        if error is not None:
            raise JanusError(f"{self.name}: {error}")
        return reply

    async def create_session(self, *, keepalive: bool = True) -> int:
        self.session = reply_id(await self.call(janus_request("create")))
        if keepalive:
            self._tasks.append(asyncio.get_running_loop().create_task(self._keepalive()))
        return self.session

    async def attach(self, plugin: str) -> int:
        return reply_id(
            await self.call(janus_request("attach", session=self.session, plugin=plugin))
        )

    async def message(
        self, handle: int, body: dict[str, Any], description: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A plugin request on ``handle``; its reply (sync) or its event (async)."""
        fields: dict[str, Any] = {"body": body}
        if description is not None:
            fields["jsep"] = description
        return await self.call(
            janus_request("message", session=self.session, handle=handle, **fields)
        )

    def webrtc_up(self, handle: int) -> asyncio.Event:
        """Set once Janus reports ``webrtcup`` on ``handle`` (its side of DTLS is done)."""
        return self._up.setdefault(handle, asyncio.Event())

    async def _keepalive(self) -> None:
        for _ in range(MAX_KEEPALIVES):
            await asyncio.sleep(KEEPALIVE_INTERVAL)
            await self.send(janus_request("keepalive", session=self.session))

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            for _ in range(MAX_MESSAGES):
                message = json.loads(await self.ws.recv())
                if not isinstance(message, dict):
                    continue
                kind = message.get("janus")
                future = self._pending.get(str(message.get("transaction")))
                if future is not None and kind != "ack":
                    if not future.done():
                        future.set_result(message)
                elif kind == "webrtcup" and isinstance(message.get("sender"), int):
                    self.webrtc_up(message["sender"]).set()
                elif isinstance(message.get("jsep"), dict):
                    self.descriptions.put_nowait(message)
                elif kind in ("hangup", "timeout") and not self.closing:
                    reason = message.get("reason", "")
                    self.errors.append(f"{self.name}: janus {kind} {reason}".rstrip())
        except ConnectionClosed as exc:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(JanusError(f"{self.name}: WebSocket closed: {exc}"))

    async def close(self) -> None:
        """Destroy the session (best effort), close the WebSocket, stop the tasks."""
        self.closing = True
        for task in self._tasks[1:]:  # keepalive; the reader still reads the last replies
            task.cancel()
        if self.ws is not None:
            try:
                if self.session is not None:
                    await self.call(janus_request("destroy", session=self.session), limit=2.0)
            except (JanusError, ConnectionClosed):
                pass
            try:
                await self.ws.close()
            except Exception:  # noqa: BLE001 - already closed by Janus
                pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class JanusParticipant:
    """One generated participant: a publisher handle (if it publishes) and a subscriber handle.

    Each has its own ``MediaLeg`` (peer connection), both in one Janus session on one WebSocket.
    ``ws_open_ns`` is when its first signaling message (the session's ``create``) left.
    """

    def __init__(
        self, *, index: int, url: str, address: str, room: int, name: str, meter: Meter,
        clip: Clip, certificate: DtlsCertificate, publish: tuple[bool, bool], receivers: int,
        pacing: bool = True,
    ) -> None:  # fmt: skip
        self.index, self.address, self.room, self.name = index, address, room, name
        self.meter, self.clip, self.certificate, self.pacing = meter, clip, certificate, pacing
        self.publish = publish
        self.conn = JanusConnection(url, name, meter.errors)
        self.pub: MediaLeg | None = None
        if publish[AUDIO] or publish[VIDEO]:
            self.pub = MediaLeg(
                index=index, name=f"{name}/pub", meter=meter, clip=clip, certificate=certificate,
                publish=publish, speak=True, receivers=receivers, pacing=pacing,
            )  # fmt: skip
        self.sub: MediaLeg | None = None
        self.sources: set[int] = set()  # indices of the publishers our subscriber counts
        self.feed: int | None = None
        self.subscribed: list[int] = []
        self.ws_open_ns = 0
        self._sub_handle: int | None = None

    @property
    def first_rx_ns(self) -> int:
        return self.sub.first_rx_ns if self.sub is not None else 0

    @property
    def plis(self) -> int:
        return sum(leg.plis for leg in self._legs())

    @property
    def nacks(self) -> int:
        return sum(leg.nacks for leg in self._legs())

    def _legs(self) -> list[MediaLeg]:
        return [leg for leg in (self.pub, self.sub) if leg is not None]

    def _local(self, leg: MediaLeg) -> LocalMedia:
        return LocalMedia(
            leg.ufrag, leg.pwd, leg.fingerprint, leg.port, f"c{self.index}", self.name,
            self.address,
        )  # fmt: skip

    async def start(self) -> None:
        """Open the session; a publisher also joins, publishes and waits for its media leg."""
        await self.conn.open()
        self.ws_open_ns = time.perf_counter_ns()
        await self.conn.create_session()
        if self.pub is not None:
            await self._publish_feed(self.pub)

    async def _publish_feed(self, leg: MediaLeg) -> None:
        handle = await self.conn.attach(PLUGIN)
        joined = plugin_data(
            await self.conn.message(handle, publisher_join_body(self.room, self.name))
        )
        if joined.get("videoroom") != "joined":
            raise JanusError(f"{self.name}: join as publisher gave {joined}")
        self.feed = int(joined["id"])
        leg.open(self.address)
        kinds = [k for k, on in zip(("audio", "video"), self.publish, strict=True) if on]
        leg.sending = {str(i): (k, leg.ssrcs[KIND_INDEX[k]]) for i, k in enumerate(kinds)}
        offer = build_offer(self._local(leg), leg.sending)
        reply = await self.conn.message(handle, publish_body(), jsep("offer", offer))
        sdp = reply_sdp(reply, "answer")
        if sdp is None:
            raise JanusError(
                f"{self.name}: publish gave no answer: {plugin_data(reply, check=False)}"
            )
        answer = parse_offer(sdp, hosts=(self.address,))
        leg.learn_extensions(answer)
        leg.dtls_server = answer.setup != "passive"  # Janus answers active: it is the client
        leg.set_remote(answer)
        await self._wait(leg)
        # As the DTLS server we finish before Janus has read our Finished; its feed can be
        # subscribed to only once it reports webrtcup.
        try:
            await asyncio.wait_for(self.conn.webrtc_up(handle).wait(), CONNECT_TIMEOUT)
        except TimeoutError:
            raise JanusError(f"{self.name}: Janus never reported webrtcup") from None

    async def subscribe(self, feeds: Sequence[int]) -> None:
        """Receive every stream of ``feeds`` (not yet subscribed, not our own) on one handle."""
        new = [f for f in feeds if f != self.feed and f not in self.subscribed]
        if not new:
            return
        if self.sub is None:
            self.sub = MediaLeg(
                index=self.index, name=f"{self.name}/sub", meter=self.meter, clip=self.clip,
                certificate=self.certificate, publish=(False, False), speak=False, receivers=0,
                pacing=self.pacing,
            )  # fmt: skip
            self.sub.sources = self.sources
            self.sub.open(self.address)
        leg = self.sub
        if self._sub_handle is None:
            self._sub_handle = await self.conn.attach(PLUGIN)
            reply = await self.conn.message(self._sub_handle, subscriber_join_body(self.room, new))
        else:
            reply = await self.conn.message(self._sub_handle, update_body(new))
        self.subscribed += new
        sdp = reply_sdp(reply, "offer") or await self._next_offer(self._sub_handle)
        previous = leg.offer.address if leg.offer is not None else None
        offer = parse_offer(sdp, hosts=(self.address,), fallback_address=previous)
        answer = build_answer(offer, self._local(leg), {})
        await self.conn.message(self._sub_handle, start_body(), jsep("answer", answer))
        leg.set_remote(offer)  # Janus offers actpass, we answer active: the DTLS client
        await self._wait(leg)

    async def _next_offer(self, handle: int) -> str:
        """An offer Janus sends later on ``handle`` (an update queued behind another one)."""
        deadline = time.monotonic() + REQUEST_TIMEOUT
        for _ in range(100):
            try:
                message = await asyncio.wait_for(
                    self.conn.descriptions.get(), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                break
            sdp = reply_sdp(message, "offer")
            if sdp is not None and message.get("sender") == handle:
                return sdp
        raise JanusError(f"{self.name}: no offer from Janus for the subscription")

    async def _wait(self, leg: MediaLeg) -> None:
        try:
            await asyncio.wait_for(leg.connected.wait(), CONNECT_TIMEOUT)
        except TimeoutError:
            raise JanusError(f"{leg.name}: ICE/DTLS with Janus did not complete") from None

    def start_publishing(self, phase: float) -> None:
        if self.pub is not None:
            self.pub.start_publishing(phase)

    async def close(self) -> None:
        for leg in self._legs():
            await leg.cancel()
        await self.conn.close()
        for leg in self._legs():
            leg.close_socket()


# -- the run --------------------------------------------------------------------------------------


async def run_janus(s: Scenario, room_count: int, window: Window) -> dict[str, Any]:
    """Run scenario ``s`` against our own Janus; the result dict of ``measure.measure``."""
    if s.idle:
        raise ValueError(f"{s.name} is not available with --janus (nothing would be negotiated)")
    tmp = tempfile.TemporaryDirectory(prefix="zvonok-bench-janus-")
    try:
        server = await spawn_janus(Path(tmp.name))
        try:
            return await _run(s, room_count, replace(window, server=server.name), server)
        except BaseException as exc:
            if server.process.poll() is not None:
                window.progress(f"janus exited with {server.process.returncode}")
            if isinstance(exc, JanusError):
                raise JanusError(f"{exc}\njanus log:\n{server.log_tail()}") from exc
            raise
        finally:
            server.stop()
    finally:
        tmp.cleanup()


async def _run(s: Scenario, room_count: int, window: Window, server: JanusServer) -> dict[str, Any]:
    clip, meter = load_clip(), Meter()
    certificate = DtlsCertificate.generate()
    base = random.randrange(1_000_000, 1_000_000_000)
    room_ids = [base + r for r in range(room_count)]
    await server.create_rooms([(room, s.size) for room in room_ids])
    proc = ProcStat(server.pid)
    rss_before = proc.rss_bytes()
    rooms: list[list[JanusParticipant]] = []
    senders: list[JanusParticipant] = []
    late: list[JanusParticipant] = []
    for r, room in enumerate(room_ids):
        members: list[JanusParticipant] = []
        for i in range(s.size):
            sender = i < s.senders
            publish = sender or s.receivers_publish
            member = JanusParticipant(
                index=len(senders) + len(late), url=server.ws_url, address=server.address,
                room=room, name=f"u{r}-{i}",
                meter=meter, clip=clip, certificate=certificate,
                publish=(publish, publish and s.video), receivers=s.size - 1,
                pacing=window.pacing,
            )  # fmt: skip
            members.append(member)
            (senders if sender else late).append(member)
        for member, sources in zip(members, room_sources(members), strict=True):
            member.sources = sources
        rooms.append(members)
    room_of = {id(m): members for members in rooms for m in members}

    def feeds(member: JanusParticipant) -> list[int]:
        return [m.feed for m in room_of[id(member)] if m.feed is not None]

    async def join_late(member: JanusParticipant) -> None:
        await member.start()
        await member.subscribe(feeds(member))

    lag = LagMonitor()
    lag_task = asyncio.create_task(lag.run())
    clients = senders + late
    try:
        t_setup = time.monotonic()
        await each(senders, lambda m: m.start())
        for member in senders:
            member.start_publishing(random.uniform(0, 0.033))
        await each(senders, lambda m: m.subscribe(feeds(m)))
        window.progress(f"{len(senders)} connected")
        await each(late, join_late)
        for member in late:
            member.start_publishing(random.uniform(0, 0.033))
        # those who joined before a later publisher now subscribe to it too
        await each(clients, lambda m: m.subscribe(feeds(m)))
        window.progress(f"{len(late)} connected")
        setup_s = time.monotonic() - t_setup
        return await measure(
            s, room_count, clients, late, meter, lag, proc, rss_before, setup_s, window
        )
    finally:
        lag_task.cancel()
        await asyncio.gather(lag_task, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
