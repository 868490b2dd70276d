"""Which SFU node serves a sessions API call: placement of new sessions, routing of the rest.

Clients keep one base URL (the API's) and opaque session ids; this module picks the
node behind each call from Redis:

- `sessions/new` goes to a live node of the directory (`sluice.state.sfu_nodes.choose`);
- every later call for a session goes to the node its record names
  (`sluice.state.track_registry.session_node`). A session whose node has left the
  directory (it died) is `404 not_found_session_error` here, at once;
- with no node registered at all, everything goes to `SLUICE_SFU_URL`: a single SFU
  of an older version, or a hosted Calls-compatible SFU, whose sessions Redis never sees.

The caller's Bearer secret is checked first, as the node would: an unauthenticated call
learns nothing about sessions and costs no Redis lookup.
"""

from __future__ import annotations

from fastapi import Request
from redis.asyncio import Redis

from sluice.config import Settings
from sluice.errors import SessionNotFound
from sluice.http.auth import bearer, check_app
from sluice.state import sfu_nodes, track_registry
from sluice.state.connection import async_client


class SfuRouter:
    """Resolves sessions API calls to node URLs; one per API process.

    It remembers how many sessions it placed on each node since that node's last
    heartbeat, so a burst of creates between two heartbeats spreads out.

    Args:
        settings: `sfu_url`, the fallback, and the Redis holding the node directory and
            the sessions' records (its client is made on first use: the app may serve
            requests without running its lifespan, as in-process test clients do).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Redis | None = None
        self._fallback = settings.sfu_url.rstrip("/")
        self._placed: dict[str, tuple[int, int]] = {}  # node id → (its beat, placed since)

    @property
    def _redis(self) -> Redis:
        if self._client is None:
            self._client = async_client(self._settings)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def place(self) -> str:
        """The base URL of the node a new session goes to."""
        nodes = await sfu_nodes.live_nodes(self._redis)
        since = {
            node.node_id: count
            for node in nodes
            if (seen := self._placed.get(node.node_id)) and (count := _since(seen, node))
        }
        chosen = sfu_nodes.choose(nodes, since)
        if chosen is None:
            return self._fallback
        self._placed = {
            node.node_id: (node.beat_at_ms, since.get(node.node_id, 0)) for node in nodes
        }
        self._placed[chosen.node_id] = (chosen.beat_at_ms, since.get(chosen.node_id, 0) + 1)
        return chosen.url.rstrip("/")

    async def locate(self, app_id: str, session_id: str) -> str:
        """The base URL of the node holding `session_id`.

        Raises:
            SessionNotFound: nodes are registered but none holds it (any more).
        """
        found = await track_registry.session_node(self._redis, session_id)
        if found is None:
            if await sfu_nodes.live_nodes(self._redis):
                raise SessionNotFound(f"session {session_id!r} does not exist")
            return self._fallback
        owner, node_id = found
        if owner != app_id:
            raise SessionNotFound(f"session {session_id!r} does not exist")
        if not node_id:
            return self._fallback
        node = await sfu_nodes.get(self._redis, node_id)
        if node is None:
            raise SessionNotFound(f"session {session_id!r} was on an SFU node that is gone")
        return node.url.rstrip("/")


async def node_url(request: Request, app_id: str, path: str, settings: Settings) -> str:
    """The base URL of the SFU node that serves `.../sessions/{path}` for `app_id`.

    Raises:
        AppNotFound, Unauthorized: as the node itself would answer.
        SessionNotFound: the session is on no live node.
    """
    check_app(settings, app_id, await bearer(request))
    router: SfuRouter = request.app.state.sfu_router
    session_id = path.split("/", 1)[0]
    if session_id in ("new", ""):
        return await router.place()
    return await router.locate(app_id, session_id)


def _since(seen: tuple[int, int], node: sfu_nodes.NodeInfo) -> int:
    beat_at_ms, count = seen
    return count if beat_at_ms == node.beat_at_ms else 0
