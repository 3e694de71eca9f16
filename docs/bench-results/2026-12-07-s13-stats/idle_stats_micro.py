"""CPU per idle session's `stats` in-process: 200 real sessions (RoomService + MediaWorker, no
media: idle-200's shape, 4 to a group room), each message encoded as WebSocketSink encodes it
(encode_server_message); QualityMonitor.run over all of them, best and median of 30 passes."""

import asyncio
import statistics
import time

from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.quality import QualityMonitor
from zvonok.rooms.service import RoomService
from zvonok.signaling.messages import encode_server_message


class Sink:
    def send(self, message):  # type: ignore[no-untyped-def]
        encode_server_message(message, 1, "s")

    def close(self, code, reason):  # type: ignore[no-untyped-def]
        pass


async def main() -> None:
    worker = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await worker.start()
    rooms = RoomService(
        worker=worker, sessions=LocalSessionDirectory(), rooms=LocalRoomDirectory(), ice_servers=[]
    )
    for i in range(200):
        key = RoomKey(RoomKind.GROUP, str(i // 4))
        await rooms.join(key, UserId(f"u{i}"), SessionId(f"s-{i}"), i // 4, Sink())
    monitor = QualityMonitor(rooms, interval=5.0)
    monitor.run(5.0)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        monitor.run(5.0)
        times.append(time.perf_counter() - t0)
    per = [t / 200 * 1e6 for t in times]
    print(f"us per idle session's stats: best {min(per):.1f}, median {statistics.median(per):.1f}")
    await rooms.close()
    await worker.close()


asyncio.run(main())
