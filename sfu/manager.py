"""Holds every session of the SFU node: lookup, cascades, idle collection, the track registry."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sfu.cascade import Cascades
from sfu.metrics import Totals
from sfu.session import Session
from sfu.tracks import SessionTrack
from sluice.config import Settings
from sluice.errors import SessionNotFound, TrackNotFound
from sluice.http.sessions_models import Location, TrackRequest, TrackStatus
from sluice.media.ice import rtc_configuration
from sluice.state import track_registry
from sluice.state.records import MediaKind
from sluice.state.sfu_nodes import NodeLoad

log = structlog.get_logger("sluice.sfu")


class SessionManager:
    """All sessions of this node, and the tracks it pulls from other nodes.

    Args:
        settings: ICE setup, the announced address, app secrets and
            `sfu_session_idle_timeout_s`.
        redis: where the track registry and the node directory live.
        node_id: this node's id in the directory, recorded with each session.
    """

    def __init__(self, settings: Settings, redis: Redis, node_id: str = "") -> None:
        self._settings = settings
        self._redis = redis
        self.node_id = node_id
        self._configuration = rtc_configuration(settings)
        self.cascades = Cascades(settings, redis, node_id, self._configuration)
        self._idle_timeout_s = settings.sfu_session_idle_timeout_s
        self._sessions: dict[str, Session] = {}
        self._closing: set[Session] = set()  # their counters are not in `totals` yet
        self.totals = Totals()  # metrics of the closed sessions (`sfu.metrics`)
        self._tasks: set[asyncio.Task[None]] = set()
        self._registry_lost = asyncio.Event()

    async def start(self) -> None:
        settings = self._settings
        # What decides whether browsers can reach the media: docs/deploying.md.
        log.info(
            "ice_setup",
            udp_ports=settings.ice_udp_ports or "any",
            announced_ip=settings.sfu_announced_ip or None,
            ice_servers=settings.ice_server_urls,
            loopback=settings.ice_loopback,
        )
        self._spawn(self._collect_idle())
        self._spawn(self._refresh_registry())

    async def stop(self) -> None:
        """Closes every session and upstream, then stops the background tasks."""
        await asyncio.gather(
            *(self.close(s, "shutdown") for s in list(self._sessions.values())),
            return_exceptions=True,
        )
        await self.cascades.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- sessions -------------------------------------------------------------------

    async def create(self, app_id: str) -> Session:
        session = Session(
            app_id, self._configuration, self, announced_ip=self._settings.sfu_announced_ip
        )
        self._sessions[session.id] = session
        session.log.info("session_created")
        await self.tracks_changed(session)
        return session

    def get(self, app_id: str, session_id: str) -> Session:
        """Raises SessionNotFound for unknown ids and for another app's sessions alike."""
        session = self._sessions.get(session_id)
        if session is None or session.app_id != app_id or session.closed:
            raise SessionNotFound(f"session {session_id!r} does not exist")
        return session

    async def prepare_pulls(self, app_id: str, items: list[TrackRequest]) -> None:
        """Pulls here, once per track, what `items` pull from other nodes' sessions."""
        remote = {
            (item.sessionId, item.trackName)
            for item in items
            if item.location is Location.REMOTE
            and item.sessionId
            and item.trackName
            and item.sessionId not in self._sessions
        }
        await asyncio.gather(
            *(self.cascades.ensure(app_id, sid, name) for sid, name in remote if sid and name)
        )

    def find_published(self, app_id: str, session_id: str, track_name: str) -> SessionTrack:
        """A published track to subscribe to: a local session's, or an upstream's.

        Raises:
            SessionNotFound: no live session of the app has that id.
            TrackNotFound: the session publishes no such track.
        """
        if session_id not in self._sessions:
            return self.cascades.find(app_id, session_id, track_name)
        session = self.get(app_id, session_id)
        for track in session.tracks.values():
            if (
                track.location is Location.LOCAL
                and track.name == track_name
                and track.status is not TrackStatus.INACTIVE
            ):
                return track
        raise TrackNotFound(f"session {session_id!r} publishes no track {track_name!r}")

    def request_close(self, session: Session, reason: str) -> None:
        self._spawn(self.close(session, reason))

    async def close(self, session: Session, reason: str) -> None:
        # Only the first caller counts the close and keeps the session's final figures.
        first = self._sessions.pop(session.id, None) is not None
        if first:
            self.totals.session_closed(reason)
            self._closing.add(session)
        try:
            await session.close(reason)
        finally:
            if first:
                self._closing.discard(session)
                self.totals.retire(session)
        with contextlib.suppress(RedisError, OSError):
            await track_registry.delete_session(self._redis, session.id)

    def __len__(self) -> int:
        return len(self._sessions)

    def open_sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def load(self) -> NodeLoad:
        """What this node carries now, for its heartbeat (a walk over the sessions)."""
        published = forwarded = 0
        for session in self._sessions.values():
            for track in session.tracks.values():
                if track.status is TrackStatus.INACTIVE:
                    continue
                if track.location is Location.LOCAL:
                    published += 1
                else:
                    forwarded += 1
        return NodeLoad(len(self._sessions), published, forwarded, len(self.cascades))

    def closing_sessions(self) -> list[Session]:
        """Sessions being closed: no longer open, their figures not yet in `totals`."""
        return list(self._closing)

    # --- registry -------------------------------------------------------------------

    async def tracks_changed(self, session: Session) -> None:
        """Records the session's published tracks before the API answers."""
        if session.closed:
            return
        try:
            await track_registry.write_session(self._redis, _record(session, self.node_id))
        except (RedisError, OSError) as exc:
            # Media must not depend on Redis; the periodic refresh rewrites the record.
            session.log.warning("registry_write_failed", error=str(exc))

    def rewrite_registry(self) -> None:
        """Redis lost the registry (restarted empty): write it back now, not at the next
        refresh, or the API routes none of this node's sessions and refuses egress
        adapters on them (`not_found_session_error`) for up to that long."""
        self._registry_lost.set()

    async def _refresh_registry(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._registry_lost.wait(), track_registry.REFRESH_INTERVAL_S
                )
            self._registry_lost.clear()
            for session in list(self._sessions.values()):
                await self.tracks_changed(session)

    # --- idle collection -----------------------------------------------------------

    async def _collect_idle(self) -> None:
        interval = min(1.0, self._idle_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                session.refresh_liveness(now)
                if now - session.last_media_at >= self._idle_timeout_s:
                    await self.close(session, "idle")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _record(session: Session, node_id: str) -> track_registry.SessionRecord:
    return track_registry.SessionRecord(
        app_id=session.app_id,
        session_id=session.id,
        created_at_ms=session.created_at_ms,
        node_id=node_id,
        tracks=tuple(
            track_registry.TrackInfo(
                app_id=session.app_id,
                session_id=session.id,
                track_name=t.name,
                kind=MediaKind(t.kind),
                codec=t.codec,
                status=str(t.status),
                mid=t.mid,
            )
            for t in session.tracks.values()
            if t.location is Location.LOCAL
        ),
    )
