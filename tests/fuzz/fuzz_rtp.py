"""Atheris harness: RTP parsing and the forwarding rewrite (``zvonok.media.packets``).

Each input is one decrypted RTP packet as a publisher could send it. It is parsed as a value
(``RtpPacket``), read by the raw hot-path accessors, rewritten as a consumer does (new SSRC,
payload type, sequence number, timestamp, header-extension ids remapped/removed, one-byte to
two-byte form), wrapped into and unwrapped from RTX, and given to the keyframe detectors.
Proves that only ``ValueError`` escapes, that a rewrite of a valid packet is a valid packet
carrying the new header fields, and that whatever RTX wraps unwraps to the original packet.
Run: ``python tests/fuzz/fuzz_rtp.py [flags] [corpus dirs]``.
Imports atheris and ``zvonok.media.packets`` only.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["zvonok"]):
    from zvonok.media.packets.codecs import is_keyframe
    from zvonok.media.packets.rtp import (
        RtpPacket,
        ext_id_table,
        rewrite_rtp,
        rtp_marker,
        rtp_payload_bounds,
        rtp_payload_type,
        rtp_seq,
        rtp_ssrc,
        rtp_timestamp,
        unwrap_rtx,
        wrap_rtx,
    )

#: Remap 1→3, 3→14, 5→5, 16→2; 4→20 forces the two-byte form; 2 and the rest are removed.
TABLE = ext_id_table({1: 3, 3: 14, 4: 20, 5: 5, 16: 2})
KEEP_ALL = ext_id_table({i: i for i in range(1, 256)})


def check_rewrite(data: bytes, table: bytes) -> None:
    try:
        out = rewrite_rtp(data, 0x11223344, 96, 4242, 123456, table)
    except ValueError:
        return
    try:
        RtpPacket.parse(data)
    except ValueError:
        return  # garbage in may stay garbage; it must only not crash
    rewritten = RtpPacket.parse(out)
    assert (rewritten.ssrc, rewritten.sequence_number) == (0x11223344, 4242)
    assert (rewritten.timestamp, rewritten.payload_type) == (123456, 96)


def check_rtx(data: bytes) -> None:
    """RFC 4588 §4: the RTX packet is on the RTX stream with the original sequence number first
    in its payload, and unwrapping it gives back the original packet, padding dropped."""
    try:
        wrapped = wrap_rtx(data, 7, 97, 1)
    except ValueError:
        return
    assert (rtp_ssrc(wrapped), rtp_payload_type(wrapped), rtp_seq(wrapped)) == (7, 97, 1)
    assert rtp_marker(wrapped) == rtp_marker(data)
    original = unwrap_rtx(wrapped, rtp_payload_type(data), rtp_ssrc(data))
    start, end = rtp_payload_bounds(data)
    expected = bytearray(data[:start])
    expected[0] &= 0xDF  # the P bit: the original's padding is not carried
    assert original == expected + data[start:end], "RTX did not unwrap to the original packet"


def test_one_input(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except ValueError:
        packet = None
    if packet is not None:
        _ = rtp_ssrc(data), rtp_seq(data), rtp_timestamp(data), rtp_payload_type(data)
        try:
            raw = bytes(packet)  # may refuse (ValueError): e.g. an element with id 0
        except ValueError:
            raw = None
        if raw is not None:
            assert RtpPacket.parse(raw) == packet, "serialised RTP does not parse back equal"
    check_rewrite(data, TABLE)
    check_rewrite(data, KEEP_ALL)
    check_rtx(data)
    try:
        unwrap_rtx(data, 96, 9)
    except ValueError:
        pass
    try:
        start, end = rtp_payload_bounds(data)
    except ValueError:
        return
    payload = memoryview(data)[start:end]
    for mime in ("video/VP8", "video/VP9", "video/H264"):
        is_keyframe(mime, payload)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
