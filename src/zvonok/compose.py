"""What a process that hosts rooms is made of: its media worker and its room service.

Owns ``build_media`` (the ``MediaWorker`` of worker ``index``: UDP port ``media_port + index``,
ICE-TCP port ``media_tcp_port + index``; port 0 stays ephemeral), ``build_room_service`` (the
``RoomService`` over given cluster directories) and ``state_snapshot`` (the dev-only
``/debug/state`` view of a process's rooms). Used by the one-process app (``app``) and by each
media worker process (``relay.worker``), so both build exactly the same thing. Implements no RFC.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .auth.turn import ice_servers_from
from .cluster.base import RoomDirectory, SessionDirectory
from .config import Settings
from .media.worker import MediaWorker
from .rooms.events import RoomEvents
from .rooms.participant import Participant
from .rooms.service import RoomService


def _offset(port: int | None, index: int) -> int | None:
    return port if not port else port + index


def build_media(settings: Settings, index: int = 0) -> MediaWorker:
    """The (unstarted) media worker of process ``index`` (0 for the one-process node)."""
    return MediaWorker(
        host=settings.media_host,
        port=_offset(settings.media_port, index) or 0,
        announce_ips=settings.announce_ips,
        consent_timeout=settings.consent_timeout,
        dtls_timeout=settings.dtls_timeout,
        ice_tcp=settings.ice_tcp,
        tcp_port=_offset(settings.media_tcp_port, index),
        tcp_max_connections=settings.ice_tcp_max_connections,
        tcp_auth_timeout=settings.ice_tcp_auth_timeout,
    )


def build_room_service(
    settings: Settings,
    worker: MediaWorker,
    *,
    sessions: SessionDirectory,
    rooms: RoomDirectory,
    events: RoomEvents,
) -> RoomService:
    return RoomService(
        worker=worker,
        sessions=sessions,
        rooms=rooms,
        ice_servers=ice_servers_from(
            settings.ice_servers, settings.turn_urls, settings.turn_secret, settings.turn_ttl
        ),
        max_participants=settings.max_participants,
        resume_grace=settings.resume_grace,
        max_pending_ice=settings.max_pending_ice,
        max_tracks=settings.max_tracks_per_session,
        max_sessions_per_user=settings.max_sessions_per_user,
        glare_yield=settings.glare_yield_ms / 1000,
        events=events,
    )


def state_snapshot(rooms: RoomService, worker: MediaWorker) -> dict[str, Any]:
    """Rooms, sessions and media of this process (``/debug/state``, dev mode only)."""
    return {
        "rooms": {
            str(key): {
                "participants": [_participant_snapshot(p) for p in room.participants.values()],
                "tracks": len(room.published),
            }
            for key, room in rooms.rooms.items()
        },
        "sessions": len(rooms.sessions),
        "tasks": len(asyncio.all_tasks()),
        "transports": worker.transport_count(),
        "forwarding": worker.forwarding,
        "iceTcp": None if worker.tcp is None else worker.tcp.stats(),
    }


def _participant_snapshot(participant: Participant) -> dict[str, Any]:
    endpoint = participant.endpoint
    room = participant.room
    return {
        "sessionId": participant.session_id,
        "userId": participant.user_id,
        "state": participant.state.value,
        "selectedAddress": participant.transport.selected_address,
        "selectedProtocol": participant.transport.selected_protocol,
        "endpoint": {
            "packetsIn": endpoint.packets_in,
            "rtcpIn": endpoint.rtcp_in,
            "unknownSsrc": endpoint.unknown_ssrc,
            "dropped": endpoint.dropped,
            "plis": endpoint.plis,
            "nacks": endpoint.nacks,
        },
        "published": {
            track_id: {
                "kind": entry.producer.kind,
                "packets": entry.producer.packets_received,
                "keyframes": entry.producer.keyframes,
                "keyframeRequests": entry.producer.keyframe_requests_sent,
                "nacksSent": entry.producer.nacks_sent,
            }
            for track_id in participant.published.values()
            if (entry := room.published.get(track_id)) is not None
        },
        "receiving": {
            track_id: {
                "packets": consumer.packets_sent,
                "dropped": consumer.dropped,
                "rtx": consumer.rtx_sent,
                "nacks": consumer.nacks_received,
                "keyframeRequests": consumer.keyframe_requests_received,
            }
            for track_id, consumer in participant.consumers.items()
        },
    }
