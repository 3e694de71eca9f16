"""A participant: one session of one user in one room (the spec's ``PeerState``).

Owns the session's signaling state: its ``SessionNegotiator``, the SSRCs it announced for the
tracks it sends, the buffered ICE candidates (``pendingICE``), glare and ICE-stall timers, and
its ``media.session.MediaSession`` (transport, endpoint, producers, consumers). It turns client
``offer``/``answer``/``ice`` messages into ``MediaSession.produce``/``consume``/``close_*`` calls
and room changes into server offers, one negotiation at a time; what an SDP means for the
forwarding layer (``producer_params``/``consumer_params``) is the media session's business.
``published`` (mid → track id) and ``consumers`` (track id → consumer) are read-only views of the
media session. Imports ``media``; from ``signaling`` only the wire vocabulary
(``signaling.messages``: the typed server messages it sends).

Glare follows W3C perfect negotiation with the server as the impolite peer (docs/protocol.md,
"Negotiation"): a client offer that collides with the server's unanswered offer is never applied
while that offer is outstanding; it gets ``error`` ``glare`` once and is kept as the pending
client offer (a later one replaces it). The client's answer wins and drops it (a polite client
offers again when stable). If no answer comes within ``glare_yield`` seconds, the server withdraws
its offer, answers the pending one, and offers again after that round. A refused offer or answer
never leaves the session with nothing in flight: the server offers again. A session whose client
has sent no ICE check ``ice_stall`` seconds after a completed negotiation gets an ICE-restart
offer (at most ``MAX_STALL_RESTARTS`` times), a fresh round for a client whose ICE never
started; still no check ``ice_stall`` seconds after the last one, and its connection state
becomes ``failed`` (the room service ends it with ``media-failed``: the client needs a new
peer connection, see docs/protocol.md).

Codec steering (docs/media.md): after every completed negotiation the room's video tracks are
looked at again (``schedule_steering``, once per loop turn): a publisher whose codec some
subscriber cannot decode is renegotiated so that it sends one they all can (``rooms.steering``),
and a subscriber left without decodable video of a track is told (``track-unavailable``).
When no single codec fits, the publisher is asked for a backup stream (``publish-backup``): the
m-line our SDK then publishes is tied to the camera it backs (``Backup``: same msid stream, only
the codec asked for) instead of being announced as a track, and the ``codec-conflict``
subscribers' consumers of the camera are fed from the backup's producer instead (``feed_from``:
the same m-line and SSRCs, so no renegotiation of them).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import SignalError
from ..ids import SessionId, UserId
from ..media.forwarding.consumer import Consumer, Timeline
from ..media.forwarding.endpoint import MediaEndpoint
from ..media.forwarding.producer import Producer
from ..media.sdp.candidate import Candidate
from ..media.sdp.codecs import CodecKey, codec_key
from ..media.sdp.negotiation import (
    AcceptedSend,
    LocalParameters,
    NegotiationResult,
    PublishedTrack,
    SendTrack,
    SessionNegotiator,
)
from ..media.session import MediaSession, TransportFactory, consumer_params, producer_params
from ..media.transport.transport import ConnectionState, IceParameters, WebRtcTransport
from ..signaling.messages import (
    Error,
    PublishBackup,
    ServerAnswer,
    ServerIce,
    ServerMessage,
    ServerOffer,
    State,
    TrackInfo,
    Tracks,
    TrackSetting,
    TrackUnavailable,
)
from .allocation import PauseReason
from .room import PublishedEntry, Room
from .sink import NullSink, SignalSink
from .steering import Unavailable, backup_served, steer

log = logging.getLogger("zvonok.rooms.participant")
#: ICE-restart offers sent to a session whose client never sends an ICE check.
MAX_STALL_RESTARTS = 1
#: Seconds a backup stream asked for may take to arrive before the subscribers it would serve are
#: told ``codec-conflict`` (a publisher without our SDK never sends one).
BACKUP_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class Backup:
    """A backup stream (codec steering): a second encoding of the publisher's video track
    ``track_id``, published on the m-line ``mid`` in another codec; never a track of the room."""

    track_id: str
    mid: str
    producer: Producer
    track: PublishedTrack


class Participant:
    """One session: its signaling state, and its ``MediaSession``."""

    def __init__(
        self,
        *,
        room: Room[Participant],
        session_id: SessionId,
        user_id: UserId,
        raw_room_id: int | str,
        sink: SignalSink,
        worker: TransportFactory,
        max_pending_ice: int,
        max_tracks: int,
        on_failed: Callable[[Participant, str], None],
        glare_yield: float = 1.0,
        ice_stall: float = 5.0,
    ) -> None:
        self.room = room
        self.session_id = session_id
        self.user_id = user_id
        self.raw_room_id = raw_room_id
        self.sink: SignalSink = sink
        self.state = ConnectionState.NEW
        self.closed = False
        self.pending_ice: list[Candidate | None] = []
        self._send_ssrcs: dict[str, tuple[int, int]] = {}
        self._max_pending_ice = max_pending_ice
        self._max_tracks = max_tracks
        self._on_failed = on_failed
        self._needs_offer = False
        self._described = False
        self._trickled = False
        self._glare_yield = glare_yield
        #: The latest client offer that collided with our outstanding offer, not yet applied.
        self._pending_offer: str | None = None
        self._glare_told = False
        self._yield_timer: asyncio.TimerHandle | None = None
        self._ice_stall = ice_stall
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stall_restarts = 0
        self._last_offer: str | None = None
        #: Codec steering: published mid -> the codec the client sends there; track id -> why we
        #: told it that track is undecodable.
        self._sent_codecs: dict[str, CodecKey] = {}
        self._unavailable: dict[str, Unavailable] = {}
        #: What this client accepted of each track it receives, as of its last negotiation.
        self._decodable: dict[str, frozenset[CodecKey]] = {}
        #: Backup streams, as a publisher: track id -> the codec (mime type) we ask it to send
        #: a backup in now; track id -> every codec name (lower case) we ever asked for (a
        #: backup m-line that arrives after we stopped asking is still recognised as one);
        #: track id -> its backup stream, once published.
        self._backup_wanted: dict[str, str] = {}
        self._backup_asked: dict[str, set[str]] = {}
        self.backups: dict[str, Backup] = {}
        #: track id -> the timer that looks at it again when its backup's grace ends.
        self._backup_timers: dict[str, asyncio.TimerHandle] = {}
        #: As a subscriber: received track id -> the backup stream its consumer is fed from.
        self._fed_by: dict[str, Backup] = {}
        #: Adaptive stream: this client's wishes per received track (``track-settings``), and
        #: whether they changed since the room's allocator last looked (``rooms.adaptive``).
        self.wishes: dict[str, TrackSetting] = {}
        self.wishes_changed = False
        #: Received video tracks the room's allocator holds back now -> why (``track-paused``).
        self.held: dict[str, PauseReason] = {}
        #: Times a received video was held back for bandwidth (``zvonok_video_pauses_total``).
        self.bandwidth_pauses = 0
        self.negotiator = SessionNegotiator()
        self.media = MediaSession(worker=worker, router=room.router, on_state=self._on_state)
        self.log = logging.LoggerAdapter(
            log, {"room": str(room.key), "session": session_id, "user": user_id}
        )
        self.log.info("media transport %s created", self.transport.id)

    # ------------------------------------------------------------------ media views
    @property
    def transport(self) -> WebRtcTransport:
        return self.media.transport

    @property
    def endpoint(self) -> MediaEndpoint:
        return self.media.endpoint

    @property
    def published(self) -> dict[str, str]:
        """mid -> track id of the tracks this session publishes (a snapshot, publish order);
        backup streams are not tracks (``backups``)."""
        backups = {b.producer.id for b in self.backups.values()}
        return {
            p.mid: p.id
            for p in self.media.producers.values()
            if p.mid is not None and p.id not in backups
        }

    @property
    def consumers(self) -> Mapping[str, Consumer]:
        """track id -> this session's consumer of it (a live read-only view)."""
        return self.media.consumers

    # ------------------------------------------------------------------ signaling out
    def send(self, message: ServerMessage) -> None:
        self.sink.send(message)

    def attach(self, sink: SignalSink) -> None:
        """Swap the signaling sink (resume on a new socket)."""
        self.sink = sink

    def detach(self) -> None:
        self.sink = NullSink()

    # ------------------------------------------------------------------ adaptive stream
    def set_track_settings(self, tracks: tuple[TrackSetting, ...]) -> None:
        """The client's ``track-settings``: keep its wishes for tracks it receives (unknown track
        ids are ignored; an entry with no limit clears that track's wish). The room's allocator
        applies them at its next tick (docs/media.md, "Layer allocation")."""
        receivable = {entry.track_id for entry in self.room.tracks_for(self)}
        for setting in tracks:
            if setting.track_id not in receivable:
                continue
            if setting == TrackSetting(setting.track_id):
                self.wishes.pop(setting.track_id, None)
            else:
                self.wishes[setting.track_id] = setting
        self.wishes_changed = True

    # ------------------------------------------------------------------ negotiation
    def start(self) -> None:
        """Send the first server offer (receive-only audio+video plus the room's tracks)."""
        self._send_offer()

    def request_sync(self) -> None:
        """The room's tracks changed: offer now if stable, else once the current round ends
        (a new track fills a vacant m-line at once either way, and the ``tracks`` map says so)."""
        if self.closed:
            return
        if self.negotiator.state == "stable":
            self._send_offer()
        else:
            if self._fill_vacant():
                self._send_track_map()
            self._needs_offer = True

    def _fill_vacant(self) -> bool:
        """Put the room's new tracks into vacant m-lines (docs/protocol.md): the client already
        knows their SSRCs, so they flow at once, answered offer or not."""
        placed = self.negotiator.placed_track_ids()
        filled: set[str] = set()
        for track in self._wanted():
            if track.track_id in placed:
                continue
            got = self.negotiator.fill_vacant(track)
            if got is not None:
                self._send_ssrcs[track.track_id] = (got.ssrc, got.rtx_ssrc)
                self.log.info("%s track %s fills a vacant m-line", track.kind, track.track_id)
                filled.add(track.track_id)
        if filled:
            self._sync_consumers(self.negotiator.sending)
            schedule_steering(self.room, filled)  # it accepted codecs for them: steer
        return bool(filled)

    def _wanted(self) -> list[SendTrack]:
        wanted = []
        for entry in self.room.tracks_for(self):
            ssrcs = self._send_ssrcs.get(entry.track_id)
            if ssrcs is None:
                ssrcs = (_random_ssrc(), _random_ssrc())
                self._send_ssrcs[entry.track_id] = ssrcs
            wanted.append(
                SendTrack(
                    track_id=entry.track_id,
                    stream_id=entry.publisher.session_id,
                    kind=entry.track.kind,
                    codecs=list(entry.track.codecs.values()),
                    ssrc=ssrcs[0],
                    rtx_ssrc=ssrcs[1],
                    cname=entry.publisher.session_id,
                )
            )
        return wanted

    def _local(self, restart: bool = False) -> LocalParameters:
        ice = self.transport.restart_ice() if restart else self.transport.local_ice
        return LocalParameters(
            ice_ufrag=ice.ufrag,
            ice_pwd=ice.pwd,
            fingerprint=self.transport.fingerprint,
            candidates=self.transport.local_candidates(),
        )

    def _send_offer(self, *, ice_restart: bool = False) -> None:
        self._needs_offer = False
        self._glare_told = False
        self._fill_vacant()
        sdp = self.negotiator.create_offer(self._wanted(), self._local(ice_restart))
        self._last_offer = sdp
        self._send_track_map()
        self.send(ServerOffer(sdp))
        self.log.info("server offer sent (%d m-lines)", len(self.negotiator.current_slots))

    def resend_pending(self) -> None:
        """After a resume: messages sent while detached were lost; repeat an unanswered offer."""
        if self.negotiator.state == "have-local-offer" and self._last_offer is not None:
            self._send_track_map()
            self.send(ServerOffer(self._last_offer))
            self.log.info("unanswered server offer sent again after resume")
        for track_id, codec in self._backup_wanted.items():
            entry = self.room.published.get(track_id)
            if entry is not None:
                self.send(PublishBackup(track_id, entry.track.mid, codec, True))

    def handle_offer(self, sdp: str) -> None:
        if self.negotiator.state != "stable":
            # Impolite: never applied while our offer is outstanding; kept in case the client
            # cannot roll back (then we yield after ``glare_yield``).
            self._pending_offer = sdp
            if self._yield_timer is None:
                loop = asyncio.get_running_loop()
                self._yield_timer = loop.call_later(self._glare_yield, self._yield_to_client)
            if not self._glare_told:
                self._glare_told = True
                self.send(
                    Error("glare", "the server's offer is outstanding; answer it first", "offer")
                )
            return
        self._answer(sdp)

    def _answer(self, sdp: str) -> None:
        """Answer a client offer while stable; a refused one is followed by our own offer."""
        self._drop_pending_offer()
        try:
            answer, result = self.negotiator.apply_offer(sdp, self._wanted(), self._local)
            self._apply(result)
        except (ValueError, SignalError) as exc:
            self._refused("offer", exc)
            return
        self._send_track_map()
        self.send(ServerAnswer(answer))
        self.log.info("client offer answered (ice restart: %s)", result.ice_restart)
        self._after_round()

    def _yield_to_client(self) -> None:
        """No answer came within ``glare_yield``: withdraw our offer, answer the client's."""
        self._yield_timer = None
        sdp = self._pending_offer
        if self.closed or sdp is None or self.negotiator.state == "stable":
            return
        self.log.info("glare: no answer in %.1f s; answering the client's offer", self._glare_yield)
        self.negotiator.rollback()
        self._needs_offer = True
        self._answer(sdp)

    def _drop_pending_offer(self) -> None:
        self._pending_offer = None
        if self._yield_timer is not None:
            self._yield_timer.cancel()
            self._yield_timer = None

    def handle_answer(self, sdp: str) -> None:
        if self.negotiator.state != "have-local-offer":
            raise SignalError("bad-message", "no server offer is outstanding")
        try:
            result = self.negotiator.apply_answer(sdp)
            self._apply(result)
        except (ValueError, SignalError) as exc:
            self.negotiator.rollback()
            self._refused("answer", exc)
            return
        # A polite client rolled its colliding offer back; it offers again when stable.
        self._drop_pending_offer()
        self.log.info("client answer applied")
        self._after_round()

    def _refused(self, what: str, exc: ValueError | SignalError) -> None:
        """A refused offer/answer: say why, then keep something in flight (JSEP stays alive)."""
        message = exc.message if isinstance(exc, SignalError) else f"{what} refused: {exc}"
        self.log.info("%s refused (bad-sdp)", what)
        self.log.debug("%s refused: %s", what, message)
        self.send(Error("bad-sdp", message, what))
        pending = self._pending_offer
        if pending is not None:
            self._answer(pending)  # a colliding client offer is still waiting: answer it
        elif not self.closed:
            self._send_offer()

    def _after_round(self) -> None:
        if not self._trickled:
            self._trickled = True
            self._trickle_local()
        self._watch_ice_stall()
        if self._needs_offer and not self.closed:
            self._send_offer()

    def _watch_ice_stall(self) -> None:
        if (
            self._stall_timer is None
            and self._ice_stall > 0
            and self._stall_restarts <= MAX_STALL_RESTARTS
            and self.transport.state is ConnectionState.NEW
        ):
            loop = asyncio.get_running_loop()
            self._stall_timer = loop.call_later(self._ice_stall, self._ice_stalled)

    def _ice_stalled(self) -> None:
        """No ICE check since the negotiation completed: offer an ICE restart (when stable)."""
        self._stall_timer = None
        if self.closed or self.transport.state is not ConnectionState.NEW:
            return
        if self.negotiator.state != "stable":
            return  # a round is in flight: its end (``_after_round``) looks again
        if self._stall_restarts >= MAX_STALL_RESTARTS:
            # Restarts did not help: the client's ICE agent is stuck for good (Chromium can lose
            # its first gathering in a rollback). Only a new peer connection cures that.
            self.log.info("no ICE check after %d ICE restart(s): media failed", MAX_STALL_RESTARTS)
            self._on_state(ConnectionState.FAILED)
            return
        self._stall_restarts += 1
        self.log.info(
            "no ICE check %.0f s after negotiating: offering an ICE restart", self._ice_stall
        )
        self._send_offer(ice_restart=True)

    def _trickle_local(self) -> None:
        first = next((s for s in self.negotiator.slots if not s.stopped), None)
        if first is None:
            return
        for candidate in self.transport.local_candidates():
            self.send(ServerIce(candidate, first.mid, first.index))
        self.send(ServerIce("", first.mid, first.index))

    def handle_ice(self, candidate: Candidate | None) -> None:
        """A remote candidate (``None`` = end of candidates); buffered until described."""
        if not self._described:
            if len(self.pending_ice) >= self._max_pending_ice:
                raise SignalError("rate-limited", "too many ICE candidates buffered")
            self.pending_ice.append(candidate)
            return
        self._add_candidate(candidate)

    def _add_candidate(self, candidate: Candidate | None) -> None:
        # ICE-lite: the server learns the client's address from its connectivity checks, so a
        # remote candidate is recorded for logs and diagnostics only.
        if candidate is not None:
            self.log.debug("remote candidate %s", candidate)

    # ------------------------------------------------------------------ applying results
    def _apply(self, result: NegotiationResult) -> None:
        try:
            remote_ice = IceParameters(result.ice_ufrag, result.ice_pwd)
        except ValueError as exc:
            raise SignalError("bad-sdp", f"bad ICE credentials: {exc}") from None
        self.transport.set_remote(remote_ice, result.fingerprints)
        if not self._described:
            self._described = True
            for candidate in self.pending_ice:
                self._add_candidate(candidate)
            self.pending_ice.clear()
        before = self._decodable
        self._sync_published(result.published)
        self._sync_consumers(result.sending)
        self._learn_sent_codecs()
        self._decodable = self.negotiator.decodable_map()
        # Only the tracks whose codecs changed for this client, and its own tracks, need a look.
        changed = {t for t in before.keys() | self._decodable.keys()
                   if before.get(t) != self._decodable.get(t)}  # fmt: skip
        schedule_steering(self.room, changed | set(self.published.values()))

    # ------------------------------------------------------------------ codec steering
    def _learn_sent_codecs(self) -> None:
        """Note the codec the client sends on each published video m-line; a change (steering
        took effect) asks for a keyframe, so subscribers start the new codec at once."""
        for mid, track_id in self.published.items():
            codec = self.negotiator.sending_codec(mid)
            if codec is None:
                continue
            key = codec_key(codec)
            before = self._sent_codecs.get(mid)
            self._sent_codecs[mid] = key
            if before == key:
                continue
            self.log.info("%s track %s sent in %s", self.published_kind(mid), track_id, codec.name)
            producer = self.media.producers.get(track_id)
            if before is not None and producer is not None:
                producer.request_keyframe()

    def published_kind(self, mid: str) -> str:
        slot = next((s for s in self.negotiator.slots if s.mid == mid), None)
        return slot.kind if slot is not None else "?"

    def steer_sending(self, mid: str, allowed: frozenset[CodecKey] | None) -> None:
        """Limit the codecs this client may send on ``mid`` (``None``: any, its own preference
        first); renegotiates when that changes what it should send."""
        if self.closed:
            return
        changed = self.negotiator.restrict_receive(mid, allowed)
        sending = self.negotiator.sending_codec(mid)
        preferred = self.negotiator.preferred_codec(mid)
        follow = (
            allowed is None
            and not self.shares_mline(mid)  # its codec list follows our track there
            and sending is not None
            and preferred is not None
            and codec_key(sending) != preferred
        )
        if not changed and not follow:
            return
        if allowed is not None:
            names = ", ".join(sorted({str(k[0]) for k in allowed}))
            self.log.info("codec steering: mid %s may send %s", mid, names)
        else:
            self.log.info("codec steering: mid %s may send its own choice (%s)", mid, preferred)
        self.request_sync()

    def tell_unavailable(
        self, entry: PublishedEntry[Participant], reason: Unavailable | None, codecs: list[str]
    ) -> None:
        """Say ``track-unavailable`` when whether this session can decode ``entry`` changed."""
        told = self._unavailable.get(entry.track_id)
        if told == reason or self.closed:
            return
        if reason is None:
            del self._unavailable[entry.track_id]
        else:
            self._unavailable[entry.track_id] = reason
        publisher = entry.publisher
        self.send(
            TrackUnavailable(
                track_id=entry.track_id,
                kind=entry.track.kind,
                session_id=publisher.session_id,
                user_id=publisher.user_id,
                unavailable=reason is not None,
                reason=reason,
                codecs=tuple(codecs),
            )
        )
        self.log.info("track %s %s", entry.track_id, reason or "decodable again")

    def forget_unavailable(self, live: Mapping[str, object]) -> None:
        for track_id in [t for t in self._unavailable if t not in live]:
            del self._unavailable[track_id]

    # ------------------------------------------------------------------ backup streams
    def want_backup(self, entry: PublishedEntry[Participant], codec: str | None) -> None:
        """Ask this client (``publish-backup``) to send a backup stream of its track ``entry``
        in ``codec`` (a mime type), or to stop (``None``); said only when that changes."""
        track_id = entry.track_id
        before = self._backup_wanted.get(track_id)
        if before == codec or self.closed:
            return
        timer = self._backup_timers.pop(track_id, None)
        if timer is not None:
            timer.cancel()
        if codec is None:
            assert before is not None
            del self._backup_wanted[track_id]
            self.send(PublishBackup(track_id, entry.track.mid, before, False))
            self.log.info("backup stream of %s no longer needed", track_id)
            return
        self._backup_wanted[track_id] = codec
        self._backup_asked.setdefault(track_id, set()).add(codec.rpartition("/")[2].lower())
        self.send(PublishBackup(track_id, entry.track.mid, codec, True))
        self.log.info("asks for a backup stream of %s in %s", track_id, codec)
        loop = asyncio.get_running_loop()
        self._backup_timers[track_id] = loop.call_later(
            BACKUP_GRACE, self._backup_grace_over, track_id
        )

    def _backup_grace_over(self, track_id: str) -> None:
        self._backup_timers.pop(track_id, None)
        schedule_steering(self.room, {track_id})  # still no backup: say codec-conflict now

    def backup_pending(self, track_id: str) -> bool:
        """A backup stream of ``track_id`` was asked for within ``BACKUP_GRACE`` seconds."""
        return track_id in self._backup_timers

    def shares_mline(self, mid: str) -> bool:
        """Whether our client-sent m-line ``mid`` also carries one of our tracks to it (then its
        codec list serves both directions and codec steering cannot restrict it)."""
        slot = next((s for s in self.negotiator.slots if s.mid == mid and not s.stopped), None)
        return slot is not None and slot.send is not None and not slot.vacant

    def live_backup(self, track_id: str) -> tuple[Backup, CodecKey] | None:
        """The backup stream of ``track_id`` while it is wanted and published, with the codec it
        is sent in."""
        backup = self.backups.get(track_id)
        if backup is None or backup.producer.closed or track_id not in self._backup_wanted:
            return None
        codec = self.negotiator.sending_codec(backup.mid)
        return None if codec is None else (backup, codec_key(codec))

    def _backs(self, track: PublishedTrack) -> str | None:
        """The track of ours that a newly published m-line is the backup stream of: one we
        asked a backup of, in the same stream (msid), sending only codecs we asked for."""
        if track.kind != "video" or track.msid is None or track.rids:
            return None
        names = {c.name.lower() for c in track.codecs.values()}
        for track_id, asked in self._backup_asked.items():
            entry = self.room.published.get(track_id)
            if track_id in self.backups or entry is None or entry.publisher is not self:
                continue
            msid = entry.track.msid
            if msid is not None and msid[0] == track.msid[0] and names and names <= asked:
                return track_id
        return None

    def _drop_backup(self, track_id: str) -> None:
        backup = self.backups.pop(track_id, None)
        if backup is not None:
            self.media.close_producer(backup.producer.id)
            self.negotiator.restrict_receive(backup.mid, None)
            self.log.info("backup stream of %s (mid %s) ended", track_id, backup.mid)

    def feed_from(self, entry: PublishedEntry[Participant], backup: Backup | None) -> None:
        """Receive ``entry`` from its publisher's ``backup`` stream (``None``: from the track
        itself), on the same m-line and SSRCs: the consumer is replaced, nothing renegotiated."""
        if self._fed_by.get(entry.track_id) is backup or self.closed:
            return
        if backup is None:
            del self._fed_by[entry.track_id]
        else:
            self._fed_by[entry.track_id] = backup
        self.log.info(
            "receives %s from %s", entry.track_id, "its backup stream" if backup else "itself"
        )
        self._sync_consumers(self.negotiator.sending)

    def _sync_published(self, published: dict[str, PublishedTrack]) -> None:
        mine = self.published
        for mid, track_id in mine.items():
            entry = self.room.published.get(track_id)
            now = published.get(mid)
            if (
                entry is None
                or now is None
                or now.ssrc != entry.track.ssrc
                or now.rids != entry.track.rids
            ):
                self._drop_backup(track_id)
                self._backup_asked.pop(track_id, None)
                codec = self._backup_wanted.pop(track_id, None)
                if codec is not None:  # its backup m-line must go too
                    self.send(PublishBackup(track_id, mid, codec, False))
                self.media.close_producer(track_id)
                self.room.unpublish(track_id)
        for track_id, backup in list(self.backups.items()):
            now = published.get(backup.mid)
            if now is None or now.ssrc != backup.track.ssrc or track_id not in self.room.published:
                self._drop_backup(track_id)
        mids = set(self.published) | {b.mid for b in self.backups.values()}
        for mid, track in published.items():
            if mid in mids:
                continue
            backs = self._backs(track)
            if backs is not None:
                producer = self.media.produce(producer_params("b" + secrets.token_hex(6), track))
                self.backups[backs] = Backup(backs, mid, producer, track)
                mids.add(mid)
                self.log.info("publishes a backup stream of %s (mid %s)", backs, mid)
                continue
            if len(mids) >= self._max_tracks:
                self.send(Error("too-many-tracks", "track limit reached"))
                continue
            track_id = "t" + secrets.token_hex(6)
            producer = self.media.produce(producer_params(track_id, track))
            mids.add(mid)
            self.log.info("publishes %s track %s (mid %s)", track.kind, track_id, mid)
            self.room.publish(PublishedEntry(track_id, producer, self, track))

    def _sync_consumers(self, sending: dict[str, AcceptedSend]) -> None:
        """One consumer per received track, keyed by the producer it reads: the track's own,
        or its backup stream's (``feed_from``)."""
        for track_id, fed in list(self._fed_by.items()):
            if track_id not in sending or fed.producer.closed:
                del self._fed_by[track_id]
        keys = {b.producer.id if (b := self._fed_by.get(t)) else t for t in sending}
        #: Tracks whose consumer moves to another producer (a backup stream, or back): the new
        #: one continues the old one's output on that SSRC.
        handed: dict[str, Timeline] = {}
        for key, consumer in list(self.media.consumers.items()):
            if key not in keys or consumer.closed:
                track_id = consumer.id.rpartition("/")[2]  # its id is "<session>/<track id>"
                timeline = consumer.timeline()
                if track_id in sending and timeline is not None:
                    handed[track_id] = timeline
                self.media.close_consumer(key)
        for track_id, accepted in sending.items():
            entry = self.room.published.get(track_id)
            if entry is None or entry.producer.closed:
                continue
            backup = self._fed_by.get(track_id)
            source, track = (
                (backup.producer, backup.track) if backup else (entry.producer, entry.track)
            )
            ssrc, rtx_ssrc = self._send_ssrcs[track_id]
            params = consumer_params(
                f"{self.session_id}/{track_id}",
                track,
                accepted,
                ssrc=ssrc,
                rtx_ssrc=rtx_ssrc,
                cname=entry.publisher.session_id,
            )
            current = self.media.consumers.get(source.id)
            if current is not None:
                # A renegotiation may renumber this m-line's payload types and extension ids.
                if params is not None:
                    self.media.update_consumer(entry.producer, params)
                continue
            if params is None:
                self.log.warning("no common codec for track %s", track_id)
                continue
            created = self.media.consume(source, params)
            timeline = handed.get(track_id)
            if timeline is not None:
                created.continue_timeline(timeline)  # asks for a keyframe
                self.log.info("track %s continues its output from another producer", track_id)
            elif backup is not None:
                source.request_keyframe()  # the subscriber starts the backup at once
            if track_id in self.room.muted:
                created.pause()  # muted by an operator (admin API)

    def _send_track_map(self) -> None:
        slots = self.negotiator.current_slots
        tracks = []
        for slot in slots:
            if slot.stopped or slot.send is None:
                continue
            entry = self.room.published.get(slot.send.track_id)
            if entry is None:
                continue
            tracks.append(
                TrackInfo(
                    track_id=slot.send.track_id,
                    stream_id=slot.send.stream_id,
                    mid=slot.mid,
                    kind=slot.kind,
                    session_id=entry.publisher.session_id,
                    user_id=entry.publisher.user_id,
                )
            )
        self.send(Tracks(tuple(tracks)))

    # ------------------------------------------------------------------ state and teardown
    def _on_state(self, state: ConnectionState) -> None:
        if self.closed or state == self.state:
            return
        previous, self.state = self.state, state
        self.room.events.connection_state(self, previous.value, state.value)
        self.log.info(
            "connection state %s (was %s; ICE path %s, DTLS %s)",
            state.value,
            previous.value,
            self.transport.selected_address,
            self.transport.dtls_state.value,
        )
        self.send(State(state.value))
        if state == ConnectionState.FAILED:
            self._on_failed(self, "failed")
        elif state == ConnectionState.CLOSED:
            # The client closed its RTCPeerConnection (DTLS close_notify): it is leaving; its
            # `leave` message usually follows within a moment and wins if it does.
            self._on_failed(self, "leave")

    def close(self) -> None:
        """Free every media object of the session; idempotent."""
        if self.closed:
            return
        self.closed = True
        for track_id in list(self.media.producers):
            self.media.close_producer(track_id)
            self.room.unpublish(track_id)
        self.pending_ice.clear()
        self._drop_pending_offer()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        for timer in self._backup_timers.values():
            timer.cancel()
        self._backup_timers.clear()
        self.media.close()  # its consumers, then the transport
        self.state = ConnectionState.CLOSED
        # What it could not decode may now be sent in the publisher's own codec again.
        schedule_steering(self.room, set(self._decodable))


def schedule_steering(room: Room[Participant], track_ids: set[str]) -> None:
    """Look at ``track_ids`` in one ``steer_room`` at the next loop turn (many negotiations
    may end in one)."""
    if room.closed or not track_ids:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop (a synchronous tool): nothing is forwarded either
    if not room.steering_due:
        loop.call_soon(steer_room, room)
    room.steering_due |= track_ids


def steer_room(room: Room[Participant]) -> None:
    """Codec steering for the published video tracks of ``room`` that changed (docs/media.md).
    Costs one look-up per participant for each of them."""
    due, room.steering_due = room.steering_due, set()
    if room.closed:
        return
    for track_id in due:
        entry = room.published.get(track_id)
        if entry is None:
            continue
        publisher = entry.publisher
        if entry.track.kind != "video" or entry.producer.closed or publisher.closed:
            continue
        mid = entry.track.mid
        sendable = publisher.negotiator.receive_codecs(mid) or list(entry.track.codecs.values())
        subscribers: dict[str, frozenset[CodecKey]] = {}
        for other in room.others(publisher):
            decodable = other.negotiator.decodable(entry.track_id)
            if decodable is not None and not other.closed:
                subscribers[other.session_id] = decodable
        preferred = publisher.negotiator.preferred_codec(mid)
        shared = publisher.shares_mline(mid)
        if shared:  # our codec list there is shared with one of our tracks: it cannot be steered
            sent = publisher.negotiator.sending_codec(mid)
            preferred = codec_key(sent) if sent is not None else preferred
        decision = steer([codec_key(c) for c in sendable], preferred, subscribers, fixed=shared)
        publisher.steer_sending(mid, decision.allowed)
        names = list(dict.fromkeys(f"video/{c.name}" for c in sendable))
        backup_codec = next((c for c in sendable if codec_key(c) == decision.backup), None)
        publisher.want_backup(entry, f"video/{backup_codec.name}" if backup_codec else None)
        live = publisher.live_backup(track_id)
        served = backup_served(decision, subscribers, live[1] if live else None)
        if live is not None and decision.backup is not None and live[1] != decision.backup:
            # It sends another variant (an H.264 profile) than the one they decode most, and
            # some of them decode only that one: restrict its m-line like a camera's.
            if backup_served(decision, subscribers, decision.backup) - served:
                publisher.steer_sending(live[0].mid, frozenset({decision.backup}))
        # Those a backup on its way will serve are not told codec-conflict in the meantime.
        coming = (
            backup_served(decision, subscribers, decision.backup) - served
            if publisher.backup_pending(track_id)
            else frozenset()
        )
        for other in room.others(publisher):
            fed = live[0] if live is not None and other.session_id in served else None
            other.feed_from(entry, fed)
            reason = None if fed else decision.unavailable.get(other.session_id)
            if other.session_id not in coming:
                other.tell_unavailable(entry, reason, names)
    for participant in list(room.participants.values()):
        participant.forget_unavailable(room.published)


def _random_ssrc() -> int:
    return secrets.randbelow(0xFFFFFFF0) + 1
