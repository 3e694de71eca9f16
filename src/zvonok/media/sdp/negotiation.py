"""One session's offer/answer state: m-line slots, payload-type and header-extension maps.

Implements the server side of RFC 8829 (JSEP): offers (§5.2) with receive-only m-lines for the
client's media and send-only m-lines for forwarded tracks, answers (§5.3) to client offers,
m-line recycling (§5.2.2), BUNDLE (RFC 8843) on one transport with rtcp-mux (RFC 8858), ICE-lite
(RFC 8445 §2.5), DTLS setup roles (RFC 5763 §5: the server is always the DTLS server), RTX
(RFC 4588) with FID groups (RFC 5576), msid (RFC 8830).

Payload types and header-extension ids are session-wide (one BUNDLE group) and never change once
used: Chrome refuses an extension id renumbering and drops packets after a payload-type change.
What an offer reserves (payload types, extension ids, mids) is reserved only once the offer is
answered: a withdrawn offer (``rollback``, JSEP §5.7) or a refused client offer leaves the session
exactly as it was, so the client's next offer is answered as if ours never existed.

An m-line a client offers to receive on while we have nothing for it is answered as sending a
placeholder (``a=msid:-``, SSRCs reserved): a *vacant* m-line. A track that appears later fills
it at once with those SSRCs (``fill_vacant``), so even a client that never answers our offers
receives it; our next offer then names the track.

Codec steering (docs/media.md, "Codec steering"): ``restrict_receive`` limits the codecs of an
m-line the client sends on to a set of codec keys in our later offers and answers, so the
client sends one of those (what every subscriber of the track decodes); ``None`` lifts it and
the full list it negotiated before (``receive_codecs``) is offered again. Payload types stay the
same throughout. ``sending_codec`` is the codec the client sends with on an m-line, and
``decodable`` which codecs the client accepted for a track we send it.

Simulcast (RFC 8853, ``simulcast``): the layers a client sends on an m-line are received in
our answers and in our later offers (``a=rid:<id> recv``, ``a=simulcast:recv``); the pause marks
we write are the server's wish (``pause_layers``, dynacast) or, without one, the client's own in
an answer and none in an offer. transport-cc and the rid extensions: ``codecs``.

Pure logic on text: no sockets, no tasks. Imports only ``zvonok.media.sdp``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .codecs import (
    RECEIVE_ONLY_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    CodecKey,
    codec_key,
    filter_offer_codecs,
    supported_codecs,
)
from .description import HeaderExtension, MediaDescription, RtpCodec, SessionDescription
from .render import server_description
from .simulcast import RID_URI, send_layers
from .slots import (
    MAX_SLOTS,
    MID_URI,
    NOT_FORWARDED,
    AcceptedSend,
    LocalParameters,
    NegotiationResult,
    PublishedTrack,
    SendTrack,
    SignalingState,
    Slot,
    copy_slot,
    send_ids,
)

__all__ = [
    "MAX_SLOTS",
    "MID_URI",
    "NOT_FORWARDED",
    "AcceptedSend",
    "LocalParameters",
    "NegotiationResult",
    "PublishedTrack",
    "SendTrack",
    "SessionNegotiator",
    "Slot",
]


@dataclass(frozen=True, slots=True)
class _Reservations:
    """What offers reserve in a session: payload types, extension ids, mids (a snapshot)."""

    pt_by_key: dict[tuple[object, ...], int]
    pt_used: dict[int, tuple[object, ...]]
    ext_ids: dict[str, int]
    mids_used: frozenset[str]
    next_mid: int


class SessionNegotiator:
    """Offer/answer for one session; the server is the impolite peer (RFC 8829 + W3C)."""

    def __init__(self) -> None:
        self.slots: list[Slot] = []
        self.state: SignalingState = "stable"
        self._pending: list[Slot] | None = None
        self._pt_by_key: dict[tuple[object, ...], int] = {}
        self._pt_used: dict[int, tuple[object, ...]] = {}
        self._ext_ids: dict[str, int] = {}
        self._mids_used: set[str] = set()
        self._next_mid = 0
        self._session_id = str(secrets.randbelow(2**62))
        self._version = 0
        self._remote_ufrag: str | None = None
        #: The client's last description allowed one- and two-byte header extensions mixed
        #: (RFC 8285 §6, ``a=extmap-allow-mixed``): our next descriptions allow them too, so
        #: a publisher can write extension values over 16 bytes (Chromium's layers allocation
        #: with sizes; without it that value is not sent at all).
        self._allow_mixed = False
        #: What was reserved before our outstanding offer (restored by ``rollback``).
        self._before_offer: _Reservations | None = None
        #: Codec steering: mid -> the codec keys the client may send with on that m-line.
        self._recv_filter: dict[str, frozenset[CodecKey]] = {}
        #: mid -> the codecs (with RTX) negotiated for a client-sent m-line while unrestricted.
        self._recv_caps: dict[str, list[RtpCodec]] = {}
        self._decodable: dict[str, frozenset[CodecKey]] | None = None  # cache of decodable_map
        #: mid -> the simulcast rids the server wants paused there (``pause_layers``).
        self._layer_wish: dict[str, frozenset[str]] = {}

    # ------------------------------------------------------------------ offers by the server
    def create_offer(self, sends: Sequence[SendTrack], local: LocalParameters) -> str:
        """Reconcile the m-lines with ``sends`` and return the offer text."""
        if self.state != "stable":
            raise RuntimeError("create_offer while an offer is outstanding")
        before = self._reservations()
        try:
            slots = self._offer_slots(sends)
        except ValueError:
            self._restore(before)
            raise
        self._before_offer = before
        self._pending = slots
        self.state = "have-local-offer"
        return self._render(slots, local, offer=True)

    def _offer_slots(self, sends: Sequence[SendTrack]) -> list[Slot]:
        slots = [copy_slot(s) for s in self.slots]
        if not slots:
            for kind in ("audio", "video"):
                slots.append(self._new_slot(len(slots), kind, recv=True))
        wanted = {t.track_id: t for t in sends}
        recyclable = [s.index for s in slots if s.stopped]
        placed: set[str] = set()
        for slot in slots:
            if slot.send is None or slot.vacant:
                continue
            if slot.send.track_id in wanted:
                placed.add(slot.send.track_id)
            elif not slot.recv:
                slot.stopped = True
            else:
                slot.send = None
        for track in sends:
            if track.track_id in placed:
                continue
            index = next((i for i in recyclable if slots[i].kind == track.kind), None)
            if index is not None:
                recyclable.remove(index)
                target = self._new_slot(index, track.kind, recv=False)
                slots[index] = target
            else:
                if len(slots) >= MAX_SLOTS:
                    raise ValueError(f"more than {MAX_SLOTS} m-lines")
                target = self._new_slot(len(slots), track.kind, recv=False)
                slots.append(target)
            target.send = track
        for slot in slots:
            slot.steered = False
            if slot.stopped:
                continue
            if slot.send is not None and not slot.vacant:
                slot.codecs = self._send_codecs(slot.send)
                if not slot.codecs:
                    slot.stopped = True
            elif not slot.codecs:
                slot.codecs = self._our_codecs(slot.kind)
            elif slot.mid in self._recv_caps:
                slot.codecs = self._receive_codecs(slot.mid)
                slot.steered = slot.mid in self._recv_filter
            if not slot.extensions:
                slot.extensions = self._our_extensions(slot.kind, receiving=slot.recv)
        return slots

    def apply_answer(self, text: str) -> NegotiationResult:
        """Apply the client's answer to our outstanding offer; raises ``ValueError``."""
        if self.state != "have-local-offer" or self._pending is None:
            raise ValueError("an answer arrived but no offer is outstanding")
        desc = SessionDescription.parse(text)
        slots = self._pending
        self._allow_mixed = desc.extmap_allow_mixed
        if len(desc.media) != len(slots):
            raise ValueError(f"answer has {len(desc.media)} m-lines, the offer had {len(slots)}")
        for slot, media in zip(slots, desc.media, strict=True):
            if media.kind != slot.kind:
                raise ValueError(f"answer m-line {slot.index} is {media.kind}, offered {slot.kind}")
            if slot.stopped or media.port == 0:
                slot.stopped = True
                slot.client_sends = slot.client_receives = False
                continue
            if media.mid is not None and media.mid != slot.mid:
                raise ValueError(
                    f"answer m-line {slot.index} has mid {media.mid!r}, not {slot.mid!r}"
                )
            direction = media.direction or "sendrecv"
            slot.client_sends = slot.recv and direction in ("sendrecv", "sendonly")
            slot.client_receives = slot.send is not None and direction in ("sendrecv", "recvonly")
            if slot.vacant and not slot.client_receives:
                slot.send, slot.vacant = None, False
            answered = {c.payload_type for c in media.codecs}
            slot.codecs = [c for c in slot.codecs if c.payload_type in answered]
            self._learn_order(slot, media)
            ext_ids = {e.uri: e.id for e in media.extensions}
            slot.extensions = [e for e in slot.extensions if ext_ids.get(e.uri) == e.id]
            self._learn_remote_media(slot, media, answer=True)
        return self._commit(desc, slots, restart=False)

    # ------------------------------------------------------------------ offers by the client
    def apply_offer(
        self,
        text: str,
        sends: Sequence[SendTrack],
        local_for: Callable[[bool], LocalParameters],
    ) -> tuple[str, NegotiationResult]:
        """Answer a client offer. ``local_for(ice_restart)`` gives the transport parameters."""
        if self.state != "stable":
            raise ValueError("glare: the server's offer is outstanding")
        before = self._reservations()
        try:
            return self._answer_offer(text, sends, local_for)
        except ValueError:
            self._restore(before)  # a refused offer reserves nothing
            raise

    def _answer_offer(
        self,
        text: str,
        sends: Sequence[SendTrack],
        local_for: Callable[[bool], LocalParameters],
    ) -> tuple[str, NegotiationResult]:
        desc = SessionDescription.parse(text)
        if len(desc.media) < len(self.slots):
            raise ValueError(
                f"offer has {len(desc.media)} m-lines; {len(self.slots)} were negotiated"
            )
        if len(desc.media) > MAX_SLOTS:
            raise ValueError(f"more than {MAX_SLOTS} m-lines")
        media_list = desc.media
        first = next((m for m in media_list if _active(m, desc)), None)
        if first is None:
            raise ValueError("offer has no active m-line")
        ufrag, pwd = _ice_credentials(desc, first)
        setup = first.setup or desc.setup
        if setup == "passive":
            raise ValueError("a=setup:passive is not supported: zvonok is always the DTLS server")
        restart = self._remote_ufrag is not None and ufrag != self._remote_ufrag
        slots = [copy_slot(s) for s in self.slots]
        unplaced = [t for t in sends if t.track_id not in send_ids(slots)]
        for index, media in enumerate(media_list):
            slot = self._slot_for_offer(slots, index, media)
            self._answer_media(slot, media, unplaced, active=_active(media, desc))
        av = [m for m in media_list if m.kind in ("audio", "video") and _active(m, desc)]
        if av and all(s.stopped for s in slots):
            # Every active audio/video m-line was refused for want of a codec we forward.
            names = sorted({c.name for m in media_list for c in m.codecs})
            raise ValueError(f"offer has no codec zvonok supports (offered: {', '.join(names)})")
        self._allow_mixed = desc.extmap_allow_mixed
        answer = self._render(slots, local_for(restart), offer=False)
        result = self._commit(desc, slots, restart=restart)
        return answer, result

    def _slot_for_offer(self, slots: list[Slot], index: int, media: MediaDescription) -> Slot:
        mid = media.mid
        if index < len(slots):
            slot = slots[index]
            if mid is None or mid == slot.mid:
                return slot
            if not slot.stopped:
                raise ValueError(f"offer m-line {index} has mid {mid!r}, negotiated {slot.mid!r}")
            slots[index] = self._adopt_slot(index, media)
            return slots[index]
        slots.append(self._adopt_slot(index, media))
        return slots[-1]

    def _adopt_slot(self, index: int, media: MediaDescription) -> Slot:
        mid = media.mid if media.mid is not None else self._fresh_mid()
        if mid in self._mids_used:
            raise ValueError(f"offer reuses mid {mid!r} of an earlier m-line")
        self._mids_used.add(mid)
        return Slot(index=index, mid=mid, kind=media.kind, protocol=media.protocol)

    def _answer_media(
        self, slot: Slot, media: MediaDescription, unplaced: list[SendTrack], *, active: bool
    ) -> None:
        if media.kind != slot.kind:
            raise ValueError(f"offer m-line {slot.index} changed kind to {media.kind}")
        slot.protocol = media.protocol
        if not active or media.kind not in ("audio", "video"):
            self._reject(slot, media)
            return
        if not media.rtcp_mux:
            raise ValueError(f"m-line {slot.index} has no a=rtcp-mux (required)")
        offered = filter_offer_codecs(media)
        if not offered:
            self._reject(slot, media)
            return
        direction = media.direction or "sendrecv"
        slot.stopped = False
        slot.client_sends = direction in ("sendrecv", "sendonly")
        slot.recv = slot.recv or slot.client_sends
        slot.client_receives = direction in ("sendrecv", "recvonly")
        if slot.client_receives and (slot.send is None or slot.vacant):
            match = next((t for t in unplaced if t.kind == slot.kind), None)
            if match is not None:
                unplaced.remove(match)
                slot.send, slot.vacant = match, False
            elif slot.send is None:
                slot.send, slot.vacant = _placeholder(slot, offered), True
        if not slot.client_receives and slot.send is not None and (slot.vacant or not slot.recv):
            slot.send, slot.vacant = None, False
        for codec in offered:
            self._reserve_pt(codec)
        slot.steered = False
        if slot.send is not None and not slot.vacant:
            keys = {codec_key(c) for c in slot.send.codecs}
            media_pts = {c.payload_type for c in offered if codec_key(c) in keys}
            slot.codecs = [
                c for c in offered if c.payload_type in media_pts or _apt(c) in media_pts
            ] or offered
        else:
            # The client's order (its preference), then what steering allows; it sends the first.
            self._learn_order(slot, media)
            video_sent = slot.client_sends and slot.kind == "video"
            mine = _in_order(offered, slot.client_order) if video_sent else offered
            slot.codecs = _restricted(mine, self._recv_filter.get(slot.mid)) or mine
            slot.steered = slot.mid in self._recv_filter
        supported = {uri for uri, _ in SUPPORTED_EXTENSIONS.get(slot.kind, ())}
        if not slot.client_sends:
            supported -= RECEIVE_ONLY_EXTENSIONS
        slot.extensions = [_answered(e) for e in media.extensions if e.uri in supported]
        for ext in slot.extensions:
            self._ext_ids.setdefault(ext.uri, ext.id)
        self._learn_remote_media(slot, media, answer=False)

    def _learn_order(self, slot: Slot, media: MediaDescription) -> None:
        """The client's codec order, learnt while it may send anything: an answer to a
        steered offer says only how it ranks what was allowed."""
        if not slot.steered or not slot.client_order:
            slot.client_order = _order_of(media)

    def _reject(self, slot: Slot, media: MediaDescription) -> None:
        slot.stopped = True
        slot.recv = False
        slot.send = None
        slot.vacant = False
        slot.client_sends = slot.client_receives = False
        slot.codecs = []
        slot.rejected_formats = list(media.formats) or ["0"]

    # ------------------------------------------------------------------ shared machinery
    def _commit(
        self, desc: SessionDescription, slots: list[Slot], *, restart: bool
    ) -> NegotiationResult:
        first = next((m for m in desc.media if _active(m, desc)), None)
        if first is None:
            raise ValueError("description has no active m-line")
        ufrag, pwd = _ice_credentials(desc, first)
        fingerprints = list(first.fingerprints or desc.fingerprints)
        if not fingerprints:
            raise ValueError("description has no a=fingerprint")
        self.slots = slots
        self._decodable = None
        self._pending = None
        self._before_offer = None
        self.state = "stable"
        self._remote_ufrag = ufrag
        for slot in slots:
            if not slot.remote_rids:
                self._layer_wish.pop(slot.mid, None)
            if slot.stopped or not slot.client_sends:
                self._recv_caps.pop(slot.mid, None)
            elif not slot.steered and (slot.send is None or slot.vacant):
                self._recv_caps[slot.mid] = list(slot.codecs)
        candidates = [c for m in desc.media for c in m.candidates]
        return NegotiationResult(
            published=self._published(),
            sending=self._sending(),
            refused=frozenset(
                s.send.track_id
                for s in slots
                if s.send is not None and not s.vacant and not s.client_receives
            ),
            ice_ufrag=ufrag,
            ice_pwd=pwd,
            fingerprints=fingerprints,
            candidates=candidates,
            ice_restart=restart,
        )

    @property
    def current_slots(self) -> list[Slot]:
        """The m-lines of the outstanding offer if there is one, else the negotiated ones."""
        return self._pending if self._pending is not None else self.slots

    @property
    def sending(self) -> dict[str, AcceptedSend]:
        """The negotiated server tracks the client receives, by track id."""
        return self._sending()

    # ------------------------------------------------------------------ simulcast layers
    def pause_layers(self, mid: str, rids: frozenset[str] | None) -> bool:
        """The simulcast layers of the client-sent m-line ``mid`` the server wants off
        (dynacast), marked paused (``~``) in our later offers and answers so that they never
        turn back on (or off) what the page set with ``setParameters``; ``None``: no wish
        (answers then repeat the client's own marks, offers mark none). No renegotiation is
        needed for it. True if the wish changed."""
        if rids is None:
            return self._layer_wish.pop(mid, None) is not None
        if self._layer_wish.get(mid) == rids:
            return False
        self._layer_wish[mid] = rids
        return True

    def paused_layers(self, mid: str) -> frozenset[str]:
        """The simulcast rids the client marked paused on ``mid`` in its last description."""
        slot = next((s for s in self.slots if s.mid == mid and not s.stopped), None)
        return slot.remote_paused if slot is not None else frozenset()

    # ------------------------------------------------------------------ codec steering
    def restrict_receive(self, mid: str, keys: frozenset[CodecKey] | None) -> bool:
        """Offer (and answer) only codecs with these keys on the client-sent m-line ``mid``
        from now on; ``None`` offers everything it negotiated again. True if that changed.
        Takes effect in the next offer or answer; an m-line that also carries one of our
        tracks is never restricted (the list is shared by both directions)."""
        if keys is None:
            return self._recv_filter.pop(mid, None) is not None
        if self._recv_filter.get(mid) == keys:
            return False
        self._recv_filter[mid] = keys
        return True

    def receive_filter(self, mid: str) -> frozenset[CodecKey] | None:
        return self._recv_filter.get(mid)

    def receive_codecs(self, mid: str) -> list[RtpCodec]:
        """The media codecs negotiated for the client-sent m-line ``mid`` while unrestricted
        (what the client can send there, our order); empty if unknown."""
        return [c for c in self._recv_caps.get(mid, ()) if _apt(c) is None]

    def sending_codec(self, mid: str) -> RtpCodec | None:
        """The codec the client sends with on the negotiated m-line ``mid``: the first of ours
        it accepted (RFC 3264 §6.1, §7; what Chromium and Firefox do). ``None`` if unknown."""
        slot = next((s for s in self.slots if s.mid == mid and not s.stopped), None)
        if slot is None or not slot.client_sends:
            return None
        return next((c for c in slot.codecs if _apt(c) is None), None)

    def preferred_codec(self, mid: str) -> CodecKey | None:
        """The codec the client prefers to send on ``mid`` (its own order's first that it can
        send there), or ``None`` if unknown."""
        slot = next((s for s in self.slots if s.mid == mid and not s.stopped), None)
        caps = {codec_key(c) for c in self.receive_codecs(mid)}
        if slot is None or not caps:
            return None
        return next((k for k in slot.client_order if k in caps), None)

    def decodable(self, track_id: str) -> frozenset[CodecKey] | None:
        """The codec keys the client accepted for our track ``track_id`` (empty: it refused
        every one), or ``None`` while no answered m-line carries it."""
        return self.decodable_map().get(track_id)

    def decodable_map(self) -> dict[str, frozenset[CodecKey]]:
        """``decodable`` for every track in a negotiated m-line (computed once per change)."""
        if self._decodable is None:
            found: dict[str, frozenset[CodecKey]] = {}
            for slot in self.slots:
                if slot.send is None or slot.vacant:
                    continue
                if slot.client_receives and not slot.stopped:
                    keys = frozenset(codec_key(c) for c in slot.codecs if _apt(c) is None)
                    found[slot.send.track_id] = keys
                else:
                    found.setdefault(slot.send.track_id, frozenset())
            self._decodable = found
        return self._decodable

    def _receive_codecs(self, mid: str) -> list[RtpCodec]:
        """Our list for a client-sent m-line: its codecs in the client's order, cut down to
        what steering allows."""
        slot = next((s for s in self.slots if s.mid == mid), None)
        order = slot.client_order if slot is not None and slot.kind == "video" else ()
        caps = _in_order(self._recv_caps[mid], order)
        return _restricted(caps, self._recv_filter.get(mid)) or caps

    def placed_track_ids(self) -> set[str]:
        """Track ids in a negotiated m-line or in our outstanding offer (placeholders excluded)."""
        slots = [*self.slots, *(self._pending or ())]
        return {s.send.track_id for s in slots if s.send is not None and not s.vacant}

    def fill_vacant(self, track: SendTrack) -> SendTrack | None:
        """Put ``track`` into a negotiated vacant m-line of its kind that can carry one of its
        codecs, keeping the SSRCs the client already knows (also in our outstanding offer, if
        it has the same placeholder). Returns the track as placed, or ``None``."""
        keys = {codec_key(c) for c in track.codecs if c.name.lower() != "rtx"}
        for slot in self.slots:
            holder = slot.send
            if not slot.vacant or slot.stopped or slot.kind != track.kind or holder is None:
                continue
            if not any(codec_key(c) in keys for c in slot.codecs):
                continue
            placed = replace(track, ssrc=holder.ssrc, rtx_ssrc=holder.rtx_ssrc)
            slot.send, slot.vacant = placed, False
            self._decodable = None
            for twin in self._pending or ():
                if twin.index == slot.index and twin.vacant and twin.send == holder:
                    twin.send, twin.vacant = placed, False
            return placed
        return None

    def rollback(self) -> None:
        """Withdraw our outstanding offer (JSEP §5.7): everything it reserved is free again."""
        if self._before_offer is not None:
            self._restore(self._before_offer)
        self._before_offer = None
        self._pending = None
        self.state = "stable"

    def _reservations(self) -> _Reservations:
        return _Reservations(
            pt_by_key=dict(self._pt_by_key),
            pt_used=dict(self._pt_used),
            ext_ids=dict(self._ext_ids),
            mids_used=frozenset(self._mids_used),
            next_mid=self._next_mid,
        )

    def _restore(self, saved: _Reservations) -> None:
        self._pt_by_key = dict(saved.pt_by_key)
        self._pt_used = dict(saved.pt_used)
        self._ext_ids = dict(saved.ext_ids)
        self._mids_used = set(saved.mids_used)
        self._next_mid = saved.next_mid

    def _published(self) -> dict[str, PublishedTrack]:
        out: dict[str, PublishedTrack] = {}
        for slot in self.slots:
            if slot.stopped or not slot.client_sends:
                continue
            if slot.remote_ssrc is None and not slot.remote_rids:
                continue
            media_codecs = {c.payload_type: c for c in slot.codecs if c.name.lower() != "rtx"}
            rtx = {c.payload_type: a for c in slot.codecs if (a := _apt(c)) is not None}
            out[slot.mid] = PublishedTrack(
                mid=slot.mid,
                kind=slot.kind,
                ssrc=slot.remote_ssrc,
                rtx_ssrc=slot.remote_rtx_ssrc,
                codecs=media_codecs,
                rtx=rtx,
                extensions={e.uri: e.id for e in slot.extensions},
                msid=slot.remote_msid,
                rids=slot.remote_rids,
            )
        return out

    def _sending(self) -> dict[str, AcceptedSend]:
        out: dict[str, AcceptedSend] = {}
        for slot in self.slots:
            if slot.stopped or slot.send is None or slot.vacant or not slot.client_receives:
                continue
            out[slot.send.track_id] = AcceptedSend(
                track_id=slot.send.track_id,
                mid=slot.mid,
                codecs=[c for c in slot.codecs if c.name.lower() != "rtx"],
                rtx={c.payload_type: a for c in slot.codecs if (a := _apt(c)) is not None},
                # Never the rid ones: a sendrecv m-line negotiates them for what the client
                # sends; what we send there must not carry them.
                extensions={
                    e.uri: e.id for e in slot.extensions if e.uri not in RECEIVE_ONLY_EXTENSIONS
                },
            )
        return out

    def _learn_remote_media(self, slot: Slot, media: MediaDescription, *, answer: bool) -> None:
        """What the client sends on ``slot``: its SSRCs, or its simulcast rids (then no SSRC:
        they are learnt from the rid header extension; Firefox's a=ssrc lines are not tied
        to rids). In an answer, only rids our offer listed count (RFC 8853 §5.3)."""
        if not slot.client_sends:
            slot.remote_ssrc = slot.remote_rtx_ssrc = None
            slot.remote_rids, slot.remote_paused = (), frozenset()
            return
        negotiated = {e.uri for e in slot.extensions}
        offered = slot.remote_rids if answer else None
        layers = send_layers(media, offered) if RID_URI in negotiated else ()
        rids = tuple(rid for rid, _ in layers)
        slot.remote_rids = rids
        slot.remote_paused = frozenset(rid for rid, paused in layers if paused)
        slot.remote_ssrc = None if rids else media.ssrc_of_media()
        slot.remote_rtx_ssrc = None if rids else media.rtx_ssrc()
        slot.remote_msid = media.msid

    def _new_slot(self, index: int, kind: str, *, recv: bool) -> Slot:
        return Slot(index=index, mid=self._fresh_mid(), kind=kind, recv=recv)

    def _fresh_mid(self) -> str:
        while str(self._next_mid) in self._mids_used:
            self._next_mid += 1
        mid = str(self._next_mid)
        self._mids_used.add(mid)
        return mid

    def _reserve_pt(self, codec: RtpCodec) -> None:
        key = _pt_key(codec)
        self._pt_by_key.setdefault(key, codec.payload_type)
        self._pt_used.setdefault(codec.payload_type, key)

    def _pt_for(self, codec: RtpCodec) -> int:
        """The session's payload type for ``codec``: first seen wins, never reassigned."""
        key = _pt_key(codec)
        pt = self._pt_by_key.get(key)
        if pt is not None:
            return pt
        preferred = codec.payload_type
        if preferred in self._pt_used or not (96 <= preferred <= 127 or preferred < 35):
            preferred = next(p for p in range(96, 128) if p not in self._pt_used)
        self._pt_by_key[key] = preferred
        self._pt_used[preferred] = key
        return preferred

    def _our_codecs(self, kind: str) -> list[RtpCodec]:
        out: list[RtpCodec] = []
        for codec in supported_codecs(kind):
            if codec.name.lower() == "rtx":
                continue
            pt = self._pt_for(codec)
            out.append(_with_pt(codec, pt))
            rtx = _rtx_of(codec, supported_codecs(kind))
            if rtx is not None:
                out.append(self._rtx_for(pt, rtx))
        return out

    def _rtx_for(self, apt: int, template: RtpCodec) -> RtpCodec:
        rtx = RtpCodec(
            payload_type=template.payload_type,
            name="rtx",
            clock_rate=template.clock_rate,
            channels=None,
            fmtp={"apt": str(apt)},
            rtcp_fb=[],
        )
        return _with_pt(rtx, self._pt_for(rtx))

    def _send_codecs(self, track: SendTrack) -> list[RtpCodec]:
        out: list[RtpCodec] = []
        table = supported_codecs(track.kind)
        seen: set[tuple[object, ...]] = set()
        for codec in track.codecs:
            if codec.name.lower() == "rtx":
                continue
            key = codec_key(codec)
            if key in seen:
                continue
            ours = next((c for c in table if codec_key(c) == key), None)
            if ours is None:
                continue
            seen.add(key)
            pt = self._pt_for(_with_fmtp(ours, codec))
            out.append(_with_pt(_with_fmtp(ours, codec), pt))
            rtx = _rtx_of(ours, table)
            if rtx is not None and track.kind == "video":
                out.append(self._rtx_for(pt, rtx))
        return out

    def _our_extensions(self, kind: str, *, receiving: bool) -> list[HeaderExtension]:
        """Our extensions for a new m-line of ``kind``; the rid ones only where the client may
        send (``receiving``): we never write them."""
        out = []
        used = set(self._ext_ids.values())
        for uri, preferred in SUPPORTED_EXTENSIONS.get(kind, ()):
            if not receiving and uri in RECEIVE_ONLY_EXTENSIONS:
                continue
            ext_id = self._ext_ids.get(uri)
            if ext_id is None:
                ext_id = preferred if preferred not in used else _free_ext_id(used)
                self._ext_ids[uri] = ext_id
                used.add(ext_id)
            out.append(HeaderExtension(id=ext_id, uri=uri))
        return out

    def _render(self, slots: list[Slot], local: LocalParameters, *, offer: bool) -> str:
        self._version += 1
        paused = {s.mid: self._written_paused(s, offer=offer) for s in slots if s.remote_rids}
        return str(
            server_description(
                slots,
                local,
                session_id=self._session_id,
                version=self._version,
                offer=offer,
                paused=paused,
                allow_mixed=self._allow_mixed,
            )
        )

    def _written_paused(self, slot: Slot, *, offer: bool) -> frozenset[str]:
        """The rids we mark paused on a simulcast m-line: the server's wish (``pause_layers``)
        if it has one, else in an answer the client's own marks and in an offer none. Browsers
        set each encoding's ``active`` from these marks (Chromium, both as offerer and as
        answerer), so stale marks would undo what the page did since."""
        wish = self._layer_wish.get(slot.mid)
        if wish is not None:
            return wish & frozenset(slot.remote_rids)
        return frozenset() if offer else slot.remote_paused


# ---------------------------------------------------------------------- helpers
def _placeholder(slot: Slot, codecs: Sequence[RtpCodec]) -> SendTrack:
    """What a vacant m-line sends until a track fills it: no stream, fresh SSRCs (RFC 8830 §2:
    ``-`` is no stream)."""
    return SendTrack(
        track_id=f"vacant-{slot.mid}",
        stream_id="-",
        kind=slot.kind,
        codecs=list(codecs),
        ssrc=secrets.randbits(32) or 1,
        rtx_ssrc=secrets.randbits(32) or 1,
        cname="zvonok",
    )


def _order_of(media: MediaDescription) -> tuple[CodecKey, ...]:
    """The media codecs of an m-line as codec keys, in the m-line's order."""
    return tuple(dict.fromkeys(codec_key(c) for c in media.codecs if c.name.lower() != "rtx"))


def _in_order(codecs: Sequence[RtpCodec], order: Sequence[CodecKey]) -> list[RtpCodec]:
    """``codecs`` with the media codecs sorted by ``order`` (unknown ones after, as they were),
    each followed by its RTX."""
    rank = {key: i for i, key in enumerate(order)}
    media = [c for c in codecs if _apt(c) is None]
    media.sort(key=lambda c: rank.get(codec_key(c), len(rank)))
    out: list[RtpCodec] = []
    for codec in media:
        out.append(codec)
        out.extend(c for c in codecs if _apt(c) == codec.payload_type)
    return out


def _restricted(codecs: Sequence[RtpCodec], keys: frozenset[CodecKey] | None) -> list[RtpCodec]:
    """``codecs`` cut down to the media codecs with these keys and their RTX (no filter: all)."""
    if keys is None:
        return list(codecs)
    kept = {c.payload_type for c in codecs if _apt(c) is None and codec_key(c) in keys}
    return [c for c in codecs if c.payload_type in kept or _apt(c) in kept]


def _active(media: MediaDescription, desc: SessionDescription) -> bool:
    """Not rejected: a real port, or port 0 with ``a=bundle-only`` inside the BUNDLE group
    (RFC 8843 §6: Firefox offers its bundled m-lines that way)."""
    if media.port != 0:
        return True
    bundled = any(media.mid in group for group in desc.bundle)
    return bundled and any(name == "bundle-only" for name, _ in media.other)


def _ice_credentials(desc: SessionDescription, media: MediaDescription) -> tuple[str, str]:
    ufrag = media.ice_ufrag or desc.ice_ufrag
    pwd = media.ice_pwd or desc.ice_pwd
    if not ufrag or not pwd:
        raise ValueError("description has no a=ice-ufrag/a=ice-pwd")
    return ufrag, pwd


def _apt(codec: RtpCodec) -> int | None:
    if codec.name.lower() != "rtx":
        return None
    try:
        return int(codec.fmtp.get("apt", ""))
    except ValueError:
        return None


def _pt_key(codec: RtpCodec) -> tuple[object, ...]:
    if codec.name.lower() == "rtx":
        return ("rtx", codec.fmtp.get("apt"))
    return codec_key(codec)


def _rtx_of(codec: RtpCodec, table: Sequence[RtpCodec]) -> RtpCodec | None:
    return next((c for c in table if _apt(c) == codec.payload_type), None)


def _with_pt(codec: RtpCodec, pt: int) -> RtpCodec:
    return RtpCodec(
        payload_type=pt,
        name=codec.name,
        clock_rate=codec.clock_rate,
        channels=codec.channels,
        fmtp=dict(codec.fmtp),
        rtcp_fb=list(codec.rtcp_fb),
    )


def _with_fmtp(ours: RtpCodec, theirs: RtpCodec) -> RtpCodec:
    """Our codec entry carrying the publisher's fmtp (e.g. its H.264 profile-level-id)."""
    merged = _with_pt(ours, ours.payload_type)
    merged.fmtp.update(theirs.fmtp)
    return merged


def _answered(ext: HeaderExtension) -> HeaderExtension:
    """A client's extmap as we write it back: its direction seen from our side (RFC 8285 §8:
    Firefox offers the rid extensions ``/sendonly``; an echoed ``/sendonly`` would say we send
    them, and Firefox then leaves them out of its answers to our later offers)."""
    flipped = {"sendonly": "recvonly", "recvonly": "sendonly"}.get(ext.direction or "")
    return HeaderExtension(ext.id, ext.uri, flipped or ext.direction)


def _free_ext_id(used: set[int]) -> int:
    return next(i for i in range(1, 15) if i not in used)
