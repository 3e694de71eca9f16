"""What the bench counts as delivered: first copies from subscribed publishers only.

``bench.client.Seen`` (duplicate detection by the publisher's packet number) and
``MediaLeg.datagram_received`` fed real SRTP packets built by a publishing leg's own
``_send_rtp``, so the send mark's layout is exercised end to end without a server.
"""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from zvonok.bench.client import AUDIO, SEEN_WINDOW, VIDEO, MediaLeg, Meter, Seen
from zvonok.bench.clip import Clip
from zvonok.bench.runner import room_sources
from zvonok.bench.sdp import OfferInfo
from zvonok.media.transport.dtls import DtlsCertificate
from zvonok.media.transport.srtp import AES128_CM_SHA1_80, SrtpSession

KEY = bytes(range(30))


def _srtp() -> SrtpSession:
    return SrtpSession(AES128_CM_SHA1_80, tx_master=KEY, rx_master=KEY)


@given(st.lists(st.integers(min_value=1, max_value=3 * SEEN_WINDOW), max_size=200))
def test_seen_reports_each_number_once(numbers: list[int]) -> None:
    seen = Seen()
    firsts = [n for n in numbers if seen.first(7, n)]
    newest = 0
    for n in numbers:
        newest = max(newest, n)
    # inside the window every number is first exactly once
    recent = [n for n in numbers if newest - n < SEEN_WINDOW]
    assert sorted(set(recent)) == sorted(n for n in set(firsts) if newest - n < SEEN_WINDOW)
    assert len([n for n in firsts if n == newest]) == (1 if numbers else 0)


def test_seen_streams_are_independent() -> None:
    seen = Seen()
    assert seen.first(2, 5) and seen.first(3, 5)
    assert not seen.first(2, 5)
    assert seen.first(2, 4) and not seen.first(2, 4)
    assert seen.first(2, 5 + SEEN_WINDOW)  # slides the window
    assert not seen.first(2, 5 + SEEN_WINDOW)


class _Member:
    def __init__(self, index: int, publish: tuple[bool, bool]) -> None:
        self.index, self.publish = index, publish


def test_room_sources_are_the_other_publishers() -> None:
    room = [_Member(4, (True, True)), _Member(5, (True, False)), _Member(6, (False, False))]
    assert room_sources(room) == [{5}, {4}, {4, 5}]


class _Sink:
    """Stands in for the publisher's socket: keeps what it sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, address: object) -> int:
        self.sent.append(data)
        return len(data)


def _leg(index: int, meter: Meter, certificate: DtlsCertificate) -> MediaLeg:
    clip = Clip(video=[[b"\x02" * 100]], audio=[b"\x01" * 20])
    return MediaLeg(
        index=index, name=f"p{index}", meter=meter, clip=clip, certificate=certificate,
        publish=(True, True), speak=True, receivers=1,
    )  # fmt: skip


def test_receiver_counts_subscribed_first_copies_only() -> None:
    async def run() -> None:
        meter, certificate = Meter(), DtlsCertificate.generate()
        meter.open()
        pubs = [_leg(i, meter, certificate) for i in (1, 2)]
        sink = _Sink()
        for pub in pubs:
            pub.srtp = _srtp()
            pub.sock = sink  # type: ignore[assignment]
            pub.offer = OfferInfo("u", "p" * 22, ("127.0.0.1", 9), [])
        receiver = _leg(3, meter, certificate)
        receiver.srtp = _srtp()
        receiver.sources = {1}
        seq = [0, 0]
        for pub in pubs:
            for kind in (AUDIO, VIDEO):
                pub._send_rtp(kind, 96, seq, 0, b"", b"x" * 50, marker=False)
        # the first publisher's audio packet again (its mark's number; a new RTP sequence number,
        # as an SFU forwarding a copy twice would give it)
        pubs[0].numbers[AUDIO] -= 1
        pubs[0]._send_rtp(AUDIO, 96, seq, 0, b"", b"x" * 50, marker=False)
        assert len(sink.sent) == 5
        for data in sink.sent:
            receiver.datagram_received(data, 1)
        assert meter.received == [1, 1]
        assert meter.duplicates == [1, 0]
        assert meter.unexpected == [1, 1]
        assert len(meter.latencies) == len(meter.sfu_latencies) == 2

    asyncio.run(run())
