"""Which app and session publishes which track, in Redis, for processes other than the SFU.

The API and the workers validate egress requests with `lookup_track` instead of asking
the SFU. The SFU writes a session's record when its tracks change and rewrites every live
session's record periodically with a TTL, so a crashed SFU's sessions vanish on their own
and a write lost while Redis was down heals itself. The record also names the SFU node
that holds the session (`sluice.state.sfu_nodes`): a session whose node has left the
directory is gone at once, long before its record expires.

Keys:
    sluice:sfu:session:{sessionId}          hash  app_id, created_at (ms), node (node id)
    sluice:sfu:session:{sessionId}:tracks   hash  trackName → JSON {kind, codec, status, mid}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from sluice.errors import SessionNotFound, TrackNotFound
from sluice.state import sfu_nodes
from sluice.state.keys import PREFIX
from sluice.state.records import MediaKind

RECORD_TTL_S = 60  # a session's record outlives a dead SFU by at most this
REFRESH_INTERVAL_S = 15.0


def session_key(session_id: str) -> str:
    return f"{PREFIX}:sfu:session:{session_id}"


def tracks_key(session_id: str) -> str:
    return f"{PREFIX}:sfu:session:{session_id}:tracks"


@dataclass(frozen=True, slots=True)
class TrackInfo:
    app_id: str
    session_id: str
    track_name: str
    kind: MediaKind
    codec: str | None  # as in SDP: "opus", "VP8", "H264"
    status: str  # "initializing" | "active" | "inactive"
    mid: str
    node_id: str = ""  # the SFU node of the publishing session, when `lookup_track` read it


@dataclass(frozen=True, slots=True)
class SessionRecord:
    app_id: str
    session_id: str
    created_at_ms: int
    tracks: tuple[TrackInfo, ...]
    node_id: str = ""  # the SFU node holding the session ("" for a single, unnamed SFU)


async def write_session(redis: Redis, record: SessionRecord) -> None:
    """Replaces a session's record (its published tracks) and renews its TTL."""
    fields: dict[Any, str] = {
        t.track_name: json.dumps(
            {"kind": t.kind, "codec": t.codec, "status": t.status, "mid": t.mid}
        )
        for t in record.tracks
    }
    skey, tkey = session_key(record.session_id), tracks_key(record.session_id)
    session_fields: dict[Any, str | int] = {
        "app_id": record.app_id,
        "created_at": record.created_at_ms,
    }
    if record.node_id:
        session_fields["node"] = record.node_id
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(skey, mapping=session_fields)
        pipe.expire(skey, RECORD_TTL_S)
        pipe.delete(tkey)
        if fields:
            pipe.hset(tkey, mapping=fields)
            pipe.expire(tkey, RECORD_TTL_S)
        await pipe.execute()


async def delete_session(redis: Redis, session_id: str) -> None:
    await redis.delete(session_key(session_id), tracks_key(session_id))


async def session_node(redis: Redis, session_id: str) -> tuple[str, str] | None:
    """(app id, node id) of a recorded session; node id "" when no node is named."""
    owner, node_id = await redis.hmget(session_key(session_id), ["app_id", "node"])
    if owner is None:
        return None
    return _text(owner), _text(node_id) if node_id is not None else ""


async def lookup_track(redis: Redis, app_id: str, session_id: str, track_name: str) -> TrackInfo:
    """The published track `track_name` of `session_id`, as the SFU last recorded it.

    Raises:
        SessionNotFound: no such session, it belongs to another app, or its SFU node is
            gone.
        TrackNotFound: the session publishes no such track, or it was closed.
    """
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(session_key(session_id), ["app_id", "node"])
        pipe.hget(tracks_key(session_id), track_name)
        (owner, node_id), raw = await pipe.execute()
    if owner is None or _text(owner) != app_id:
        raise SessionNotFound(f"session {session_id!r} does not exist")
    if node_id and not await sfu_nodes.is_alive(redis, _text(node_id)):
        raise SessionNotFound(f"session {session_id!r} was on an SFU node that is gone")
    if raw is None:
        raise TrackNotFound(f"session {session_id!r} has no track {track_name!r}")
    data = json.loads(raw)
    info = TrackInfo(
        app_id=app_id,
        session_id=session_id,
        track_name=track_name,
        kind=MediaKind(data["kind"]),
        codec=data.get("codec"),
        status=data["status"],
        mid=data["mid"],
        node_id=_text(node_id) if node_id else "",
    )
    if info.status == "inactive":
        raise TrackNotFound(f"track {track_name!r} of session {session_id!r} was closed")
    return info


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
