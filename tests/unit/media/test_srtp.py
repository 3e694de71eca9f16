"""SRTP: round trips for both DTLS-SRTP profiles, replay and tampering refused."""

from __future__ import annotations

import os
import struct

import pytest

from zvonok.media.transport.srtp import (
    AEAD_AES_128_GCM,
    AES128_CM_SHA1_80,
    USE_SRTP_PROFILES,
    SrtpProfile,
    SrtpSession,
    profile_by_name,
)

PROFILES = [AEAD_AES_128_GCM, AES128_CM_SHA1_80]


def rtp(seq: int, payload: bytes = b"\x01" * 160, ssrc: int = 0x11223344) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc) + payload


def rtcp_rr(ssrc: int = 0x11223344) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)  # empty receiver report


def pair(profile: SrtpProfile) -> tuple[SrtpSession, SrtpSession]:
    a = os.urandom(profile.master_length)
    b = os.urandom(profile.master_length)
    return (
        SrtpSession(profile, tx_master=a, rx_master=b),
        SrtpSession(profile, tx_master=b, rx_master=a),
    )


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.decode())
def test_rtp_round_trip(profile: SrtpProfile) -> None:
    left, right = pair(profile)
    for seq in range(1, 5):
        packet = rtp(seq)
        protected = left.protect_rtp(packet)
        assert protected != packet and len(protected) > len(packet)
        assert right.unprotect_rtp(protected) == packet
    back = right.protect_rtp(rtp(7, ssrc=5))
    assert left.unprotect_rtp(back) == rtp(7, ssrc=5)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.decode())
def test_rtcp_round_trip(profile: SrtpProfile) -> None:
    left, right = pair(profile)
    protected = left.protect_rtcp(rtcp_rr())
    assert right.unprotect_rtcp(protected) == rtcp_rr()


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.decode())
def test_replay_refused(profile: SrtpProfile) -> None:
    left, right = pair(profile)
    protected = left.protect_rtp(rtp(10))
    right.unprotect_rtp(protected)
    with pytest.raises(ValueError, match="SRTP unprotect failed: replay check failed"):
        right.unprotect_rtp(protected)
    rtcp = left.protect_rtcp(rtcp_rr())
    right.unprotect_rtcp(rtcp)
    with pytest.raises(ValueError, match="SRTCP unprotect failed: replay check failed"):
        right.unprotect_rtcp(rtcp)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name.decode())
def test_tampered_refused(profile: SrtpProfile) -> None:
    left, right = pair(profile)
    protected = bytearray(left.protect_rtp(rtp(3)))
    protected[20] ^= 0x01
    with pytest.raises(ValueError, match="SRTP unprotect failed: authentication failure"):
        right.unprotect_rtp(bytes(protected))
    rtcp = bytearray(left.protect_rtcp(rtcp_rr()))
    rtcp[9] ^= 0x01
    with pytest.raises(ValueError, match="SRTCP unprotect failed: authentication failure"):
        right.unprotect_rtcp(bytes(rtcp))


def test_wrong_key_refused() -> None:
    left, _ = pair(AEAD_AES_128_GCM)
    _, stranger = pair(AEAD_AES_128_GCM)
    with pytest.raises(ValueError, match="authentication failure"):
        stranger.unprotect_rtp(left.protect_rtp(rtp(1)))


def test_retransmission_allowed_on_send() -> None:
    left, right = pair(AES128_CM_SHA1_80)
    first = left.protect_rtp(rtp(42))
    again = left.protect_rtp(rtp(42))  # an RTX-less resend of the same sequence number
    assert first == again
    assert right.unprotect_rtp(first) == rtp(42)


def test_key_length_checked() -> None:
    with pytest.raises(ValueError, match="SRTP tx master key\\+salt must be 28 bytes, got 3"):
        SrtpSession(AEAD_AES_128_GCM, tx_master=b"abc", rx_master=bytes(28))


def test_profiles() -> None:
    assert USE_SRTP_PROFILES == b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80"
    assert profile_by_name(b"SRTP_AES128_CM_SHA1_80") is AES128_CM_SHA1_80
    assert AEAD_AES_128_GCM.master_length == 28 and AES128_CM_SHA1_80.master_length == 30
    with pytest.raises(ValueError, match="unsupported SRTP protection profile b'SRTP_NULL'"):
        profile_by_name(b"SRTP_NULL")


def test_garbage_refused() -> None:
    _, right = pair(AEAD_AES_128_GCM)
    with pytest.raises(ValueError, match="SRTP unprotect failed"):
        right.unprotect_rtp(b"\x80" + bytes(30))
    with pytest.raises(ValueError):
        right.unprotect_rtp(bytes(3000))  # longer than libsrtp's buffer
