"""Cascades: a track published on another SFU node, pulled once and forwarded here.

When a session of this node pulls a track whose publishing session lives on node A,
this node pulls the track from A through A's own sessions API, as an ordinary Calls
client (`sluice.media.calls_client`, as an adapter pipeline does), with the receiver
tapped: A's encoded frames go into a local `Fanout`, exactly as a local publisher's
would. So there is one upstream copy per (track, node), shared by every subscriber here.

Across the hop each side does what it does for any peer: this node's receiver sends
NACKs and A's sender retransmits (RTX); a subscriber's PLI here asks the upstream for a
keyframe (`Peer.request_keyframe`), which A's sender turns into a PLI to the publisher.

An upstream ends when its source ends (A sends BYE: the publisher left or closed the
track), when A leaves the node directory (it died: no BYE ever comes), when its
connection fails, or `LINGER_S` after its last subscriber left. Its subscribers' tracks
end with it, as when a local publisher leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import httpx
import structlog
from aiortc import MediaStreamTrack, RTCConfiguration
from aiortc.mediastreams import MediaStreamError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sfu.forward import Fanout
from sfu.tracks import SessionTrack
from sluice.config import Settings
from sluice.errors import SessionNotFound, SluiceError, TrackNotFound
from sluice.http.sessions_models import Location, TrackStatus
from sluice.media.calls_client import Peer, SessionsApiError, SessionsClient
from sluice.media.node_watch import node_gone
from sluice.state import sfu_nodes, track_registry
from sluice.state.track_registry import TrackInfo
from sluice.tasks import cancel_and_wait, log_exception

log = structlog.get_logger("sluice.sfu")

LINGER_S = 2.0  # an upstream without subscribers this long is closed
WATCH_INTERVAL_S = 1.0  # how often the source node's presence is checked
OPEN_TIMEOUT_S = 10.0

Key = tuple[str, str, str]  # app id, publishing session id, track name


class Upstream:
    """One track of another node, pulled by this node and fanned out to its subscribers.

    Args:
        info: the track as the registry records it (kind, codec, publishing session).
        node: the node that holds the publishing session.
        client: a sessions client at that node, for the track's app; closed with this.
    """

    def __init__(self, info: TrackInfo, node: sfu_nodes.NodeInfo, client: SessionsClient) -> None:
        self.info = info
        self.source_node = node
        self.fanout = Fanout(info.kind, self._request_keyframe)
        self.track = SessionTrack(
            Location.LOCAL, "", info.track_name, info.kind, info.session_id,
            TrackStatus.ACTIVE, None, info.codec, fanout=self.fanout,
        )  # fmt: skip
        self.wanted_at = time.monotonic()  # last asked for: a pull is being planned
        self._client = client
        self._peer: Peer | None = None
        self._remote: MediaStreamTrack | None = None
        self.log = log.bind(
            app_id=info.app_id, session_id=info.session_id, track_name=info.track_name,
            source_node=node.node_id,
        )  # fmt: skip

    @property
    def upstream_session_id(self) -> str | None:
        return self._peer.session_id if self._peer is not None else None

    async def open(self) -> None:
        """Pulls the track from its node, receiver tapped before media can flow.

        Raises:
            SessionsApiError: the node refused the pull (or the track in it).
            httpx.HTTPError, OSError: the node did not answer.
        """
        info = self.info
        self._remote = await self._client.pull(
            info.session_id, info.track_name, kind=info.kind, on_frame=self.fanout.deliver
        )
        self._peer = self._client.peers[-1]

    async def run(self, redis: Redis) -> str:
        """Watches the upstream until it should end; returns why."""
        assert self._remote is not None and self._peer is not None
        source_ended = asyncio.create_task(_until_ended(self._remote))
        idle_since: float | None = None
        try:
            while True:
                await asyncio.wait({source_ended}, timeout=WATCH_INTERVAL_S)
                if source_ended.done():
                    return "source_ended"
                if self._peer.pc.connectionState in ("failed", "closed"):
                    return "connection_failed"
                if await node_gone(redis, self.source_node.node_id, self._peer):
                    return "source_node_gone"
                now = time.monotonic()
                if self.fanout.subscribers:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - max(idle_since, self.wanted_at) >= LINGER_S:
                    return "unused"
        finally:
            await cancel_and_wait([source_ended], log=self.log)

    async def close(self, reason: str) -> None:
        """Ends every subscriber's track here, then the pull on the source node."""
        self.fanout.end()
        self.track.status = TrackStatus.INACTIVE
        await self._client.close()
        self.log.info("upstream_closed", reason=reason, frames=self.fanout.frames)

    def _request_keyframe(self) -> None:
        if self._peer is not None and self._remote is not None:
            self._peer.request_keyframe(self._remote)


class Cascades:
    """This node's upstreams, one per (app, publishing session, track).

    Args:
        settings: the app secrets (a cascade is a client of the source node's API).
        redis: the track registry and the node directory.
        node_id: this node, which never pulls from itself.
        configuration: ICE setup for the upstream peer connections.
    """

    def __init__(
        self, settings: Settings, redis: Redis, node_id: str, configuration: RTCConfiguration
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._node_id = node_id
        self._configuration = configuration
        self._upstreams: dict[Key, Upstream] = {}
        self._opening: dict[Key, asyncio.Task[None]] = {}
        self._failures: dict[Key, SluiceError] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._upstreams)

    def upstreams(self) -> list[Upstream]:
        return list(self._upstreams.values())

    async def ensure(self, app_id: str, session_id: str, track_name: str) -> None:
        """Makes sure the track is pulled here, if another node publishes it.

        Never raises for a track that cannot be pulled: `find` then says why.
        """
        key = (app_id, session_id, track_name)
        current = self._upstreams.get(key)
        if current is not None and not current.fanout.ended:
            current.wanted_at = time.monotonic()  # not closed while the pull is planned
            return
        opening = self._opening.get(key)
        if opening is None:
            opening = asyncio.create_task(self._open(key))
            self._opening[key] = opening
            opening.add_done_callback(lambda _: self._opening.pop(key, None))
        await asyncio.shield(opening)

    def find(self, app_id: str, session_id: str, track_name: str) -> SessionTrack:
        """The upstream's stand-in for the published track, to subscribe to.

        Raises:
            SessionNotFound: no node holds that session (or it cannot be reached).
            TrackNotFound: its node has no such track.
        """
        key = (app_id, session_id, track_name)
        upstream = self._upstreams.get(key)
        if upstream is not None and not upstream.fanout.ended:
            return upstream.track
        failure = self._failures.pop(key, None)
        raise failure or SessionNotFound(f"session {session_id!r} does not exist")

    async def stop(self) -> None:
        await cancel_and_wait(list(self._tasks))
        for upstream in list(self._upstreams.values()):
            with contextlib.suppress(Exception):
                await upstream.close("shutdown")
        self._upstreams.clear()

    async def _open(self, key: Key) -> None:
        app_id, session_id, track_name = key
        self._failures.pop(key, None)
        try:
            info = await track_registry.lookup_track(self._redis, app_id, session_id, track_name)
            node = await sfu_nodes.get(self._redis, info.node_id) if info.node_id else None
        except (SessionNotFound, TrackNotFound) as exc:
            self._failures[key] = exc
            return
        except (RedisError, OSError) as exc:
            self._failures[key] = SessionNotFound(f"session {session_id!r}: {exc}")
            return
        if node is None or node.node_id == self._node_id:
            # Not published on a live node (a local session would have been found first).
            self._failures[key] = SessionNotFound(f"session {session_id!r} does not exist")
            return
        client = SessionsClient(
            f"{node.url}/v1/apps/{app_id}",
            self._settings.app_secrets.get(app_id, ""),
            configuration=self._configuration,
            timeout_s=OPEN_TIMEOUT_S,
        )
        upstream = Upstream(info, node, client)
        try:
            await upstream.open()
        except (SessionsApiError, httpx.HTTPError, OSError) as exc:
            await client.close()
            self._failures[key] = _as_track_error(exc, session_id, track_name)
            upstream.log.warning("upstream_failed", error=str(exc))
            return
        self._upstreams[key] = upstream
        upstream.log.info("upstream_opened", upstream_session_id=upstream.upstream_session_id)
        self._spawn(self._run(key, upstream))

    async def _run(self, key: Key, upstream: Upstream) -> None:
        reason = "error"
        try:
            reason = await upstream.run(self._redis)
        finally:
            if self._upstreams.get(key) is upstream:
                del self._upstreams[key]
            await upstream.close(reason)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: log_exception(t, log, "upstream_task_failed"))


async def _until_ended(track: MediaStreamTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


def _as_track_error(exc: Exception, session_id: str, track_name: str) -> SluiceError:
    if isinstance(exc, SessionsApiError) and exc.error_code == TrackNotFound.error_code:
        return TrackNotFound(f"session {session_id!r} has no track {track_name!r}")
    if isinstance(exc, SessionsApiError) and exc.error_code == SessionNotFound.error_code:
        return SessionNotFound(f"session {session_id!r} does not exist")
    return SessionNotFound(f"session {session_id!r} is on a node that cannot be reached: {exc}")
