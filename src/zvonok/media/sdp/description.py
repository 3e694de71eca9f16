"""SDP values for the WebRTC subset: ``SessionDescription.parse`` and ``str()`` (build).

The public face of the SDP package: the values and the one writer live in the private ``_model``
module, the parser's line grammar in the private ``_text`` module; this module adds the parse
entry point (with its size limits) and re-exports the values. Imports run one way:
``description`` -> ``_text`` -> ``_model``. The RFCs implemented are listed in ``_model``.
Imports only ``zvonok.media.sdp``. Malformed text raises ``ValueError("line N: ...")``.
"""

from __future__ import annotations

from ._model import (
    DIRECTIONS,
    MEDIA_LINE_ORDER,
    SESSION_LINE_ORDER,
    HeaderExtension,
    MediaDescription,
    Origin,
    Rid,
    RtpCodec,
    SessionModel,
    SsrcGroup,
    parse_fmtp,
)
from ._text import SdpParser

__all__ = [
    "DIRECTIONS",
    "MAX_MEDIA_SECTIONS",
    "MAX_SDP_LENGTH",
    "MEDIA_LINE_ORDER",
    "SESSION_LINE_ORDER",
    "HeaderExtension",
    "MediaDescription",
    "Origin",
    "Rid",
    "RtpCodec",
    "SessionDescription",
    "SsrcGroup",
    "parse_fmtp",
]

MAX_SDP_LENGTH = 128 * 1024
MAX_MEDIA_SECTIONS = 256


class SessionDescription(SessionModel):
    """A whole offer or answer (fields and ``str()`` in ``_model.SessionModel``)."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> SessionDescription:
        """Parse SDP text (``\\r\\n`` or ``\\n``); ``ValueError("line N: ...")`` on bad input."""
        if len(text) > MAX_SDP_LENGTH:
            raise ValueError(f"SDP longer than {MAX_SDP_LENGTH} characters")
        desc = cls()
        SdpParser(desc, MAX_MEDIA_SECTIONS).feed(text)
        return desc
