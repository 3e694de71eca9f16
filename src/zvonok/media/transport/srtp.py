"""SRTP/SRTCP protection for one WebRTC session (RFC 3711, RFC 7714), backed by pylibsrtp.

Owns: the table of DTLS-SRTP protection profiles we negotiate (RFC 5764 §4.1.2, RFC 7714 §14.2)
with their key/salt lengths, and ``SrtpSession``, an inbound/outbound pair of libsrtp sessions.
Must not import anything from zvonok outside ``zvonok.media``.

Inbound uses ``ssrc_any_inbound`` (any remote SSRC), outbound ``ssrc_any_outbound`` with
``allow_repeat_tx`` so that retransmissions of an already protected packet (NACK answers resent
with the same sequence number) are accepted. libsrtp's replay window refuses replayed inbound
packets. Every failure surfaces as ``ValueError`` so that the caller counts and drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pylibsrtp
from pylibsrtp._binding import ffi, lib

#: Room libsrtp may append to a protected RTP packet (tag, MKI): pylibsrtp's own bound.
_RTP_TRAILER = 144


def _failure(status: int) -> str:
    """pylibsrtp's own message for a libsrtp status code."""
    try:
        pylibsrtp._srtp_assert(status)  # type: ignore[no-untyped-call]
    except pylibsrtp.Error as exc:
        return str(exc)
    return f"status {status}"


@dataclass(frozen=True, slots=True)
class SrtpProfile:
    """A DTLS-SRTP protection profile: its OpenSSL name and master key/salt lengths."""

    name: bytes
    libsrtp_id: int
    key_length: int
    salt_length: int

    @property
    def master_length(self) -> int:
        """Length of one direction's master key + master salt (libsrtp's key format)."""
        return self.key_length + self.salt_length


AEAD_AES_128_GCM = SrtpProfile(
    b"SRTP_AEAD_AES_128_GCM", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12
)
AES128_CM_SHA1_80 = SrtpProfile(
    b"SRTP_AES128_CM_SHA1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14
)

#: Profiles in order of preference (GCM first), keyed by their OpenSSL/IANA name.
PROFILES: dict[bytes, SrtpProfile] = {p.name: p for p in (AEAD_AES_128_GCM, AES128_CM_SHA1_80)}
#: The ``use_srtp`` extension value we offer to OpenSSL.
USE_SRTP_PROFILES: bytes = b":".join(PROFILES)


def profile_by_name(name: bytes) -> SrtpProfile:
    """The profile OpenSSL selected; raises ``ValueError`` for one we did not offer."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unsupported SRTP protection profile {name!r}") from None


class SrtpSession:
    """Protects outbound and unprotects inbound RTP/RTCP of one session.

    ``tx_master`` / ``rx_master`` are master key + salt (``profile.master_length`` bytes each).
    """

    __slots__ = (
        "profile", "_tx", "_rx", "_tx_ctx", "_tx_cdata", "_tx_buffer", "_tx_len",
        "_rx_ctx", "_rx_cdata", "_rx_buffer", "_rx_len",
    )  # fmt: skip

    def __init__(self, profile: SrtpProfile, *, tx_master: bytes, rx_master: bytes) -> None:
        for label, key in (("tx", tx_master), ("rx", rx_master)):
            if len(key) != profile.master_length:
                raise ValueError(
                    f"SRTP {label} master key+salt must be {profile.master_length} bytes, "
                    f"got {len(key)}"
                )
        self.profile = profile
        rx_policy = pylibsrtp.Policy(
            key=rx_master,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=profile.libsrtp_id,
        )
        tx_policy = pylibsrtp.Policy(
            key=tx_master,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=profile.libsrtp_id,
        )
        tx_policy.allow_repeat_tx = True
        self._rx = pylibsrtp.Session(rx_policy)
        self._tx = pylibsrtp.Session(tx_policy)
        # The hot path calls libsrtp directly on the session's own buffer (what
        # ``Session.protect`` does, minus a bytes copy, a type check and an allocation per call).
        tx: Any = self._tx
        self._tx_ctx = tx._srtp[0]
        self._tx_cdata = tx._cdata
        self._tx_buffer = tx._buffer
        self._tx_len = ffi.new("int *")
        rx: Any = self._rx
        self._rx_ctx = rx._srtp[0]
        self._rx_cdata = rx._cdata
        self._rx_buffer = rx._buffer
        self._rx_len = ffi.new("int *")

    def tx_handle(self) -> tuple[int, int]:
        """Addresses of the outbound libsrtp context and of ``srtp_protect``, for the compiled
        forwarding loop (``zvonok.media._fastpath``); valid while this session lives."""
        ctx = int(ffi.cast("uintptr_t", self._tx_ctx))
        protect = int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect")))
        return ctx, protect

    def tx_rtcp_handle(self) -> int:
        """Address of ``srtp_protect_rtcp`` (on the context of ``tx_handle``), for the compiled
        target's ``send_rtcp``."""
        return int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect_rtcp")))

    def rx_handle(self) -> tuple[int, int]:
        """Addresses of the inbound libsrtp context and of ``srtp_unprotect`` (see tx_handle)."""
        ctx = int(ffi.cast("uintptr_t", self._rx_ctx))
        unprotect = int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect")))
        return ctx, unprotect

    def protect_rtp(self, packet: bytes | bytearray) -> bytes:
        """Encrypt and authenticate one RTP packet; ``ValueError`` if libsrtp refuses it."""
        size = len(packet)
        buffer = self._tx_buffer
        if size > len(buffer) - _RTP_TRAILER:
            raise ValueError(f"SRTP protect failed: packet of {size} bytes is too long")
        length = self._tx_len
        length[0] = size
        buffer[0:size] = packet
        status = lib.srtp_protect(self._tx_ctx, self._tx_cdata, length)
        if status:
            raise ValueError(f"SRTP protect failed: {_failure(status)}")
        out: bytes = buffer[0 : length[0]]
        return out

    def protect_rtcp(self, packet: bytes) -> bytes:
        """Encrypt and authenticate one (compound) RTCP packet."""
        try:
            return bytes(self._tx.protect_rtcp(packet))
        except pylibsrtp.Error as exc:
            raise ValueError(f"SRTCP protect failed: {exc}") from None

    def unprotect_rtp(self, packet: bytes) -> bytes:
        """Authenticate and decrypt one SRTP packet; replayed or tampered → ``ValueError``."""
        size = len(packet)
        buffer = self._rx_buffer
        if size > len(buffer):
            raise ValueError(f"SRTP unprotect failed: packet of {size} bytes is too long")
        length = self._rx_len
        length[0] = size
        buffer[0:size] = packet
        status = lib.srtp_unprotect(self._rx_ctx, self._rx_cdata, length)
        if status:
            raise ValueError(f"SRTP unprotect failed: {_failure(status)}")
        out: bytes = buffer[0 : length[0]]
        return out

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """Authenticate and decrypt one SRTCP packet."""
        try:
            return bytes(self._rx.unprotect_rtcp(packet))
        except pylibsrtp.Error as exc:
            raise ValueError(f"SRTCP unprotect failed: {exc}") from None
