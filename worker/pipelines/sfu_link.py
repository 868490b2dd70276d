"""A pipeline's connection to the SFU: which node, its sessions client, noticing it go away.

A pipeline is a WebRTC peer of an SFU node through the sessions API, at the node the
directory in Redis names (`sluice.state.sfu_nodes`): an egress pipeline's session goes
on the node of the session it pulls from, so its media crosses no cascade; an ingest
pipeline's new session goes where placement puts it. Without a registered node, the
pipeline uses `SLUICE_SFU_URL` (one unregistered or hosted SFU).

If the node dies, its sessions are gone and no BYE ever arrives; ICE consent would
notice only after tens of seconds. The node leaving the directory (checked every
second, then confirmed with the node: `sluice.media.node_watch`), or the node no longer
knowing the pipeline's session (asked every few seconds), turns that into a prompt,
clean close. While the directory is watched, asking the node only catches a session it
dropped without a BYE, so it asks less often: each ask is an HTTP request through both
processes, every adapter's load on the node they share.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from structlog.stdlib import BoundLogger

from sluice.media.calls_client import Peer, SessionsApiError, SessionsClient
from sluice.media.ice import rtc_configuration
from sluice.media.node_watch import node_gone
from sluice.state import sfu_nodes, track_registry
from worker.dial import tls_context
from worker.pipelines.base import PipelineContext

NODE_CHECK_EVERY_S = 1.0  # the node's presence in the directory: one cheap Redis call
CHECK_EVERY_S = 3.0  # the session itself, asked of the node
WATCHED_CHECK_EVERY_S = 15.0  # ... when the node's directory entry is watched as well
UNREACHABLE_FOR_S = 6.0  # this long without an answer: the SFU is gone


@dataclass(frozen=True, slots=True)
class SfuTarget:
    url: str  # the node's sessions API base (without /v1/apps/...)
    node_id: str  # "" for `SLUICE_SFU_URL`, which no directory entry vouches for


async def choose_sfu(ctx: PipelineContext, near_session: str | None = None) -> SfuTarget:
    """The node for the pipeline's session: `near_session`'s node if it is alive, else
    placement's choice; `SLUICE_SFU_URL` when no node is registered or Redis fails."""
    fallback = SfuTarget(ctx.settings.sfu_url.rstrip("/"), "")
    redis = ctx.redis
    if redis is None:
        return fallback
    try:
        if near_session:
            found = await track_registry.session_node(redis, near_session)
            if found is not None and found[1]:
                node = await sfu_nodes.get(redis, found[1])
                if node is not None:
                    return SfuTarget(node.url.rstrip("/"), node.node_id)
        chosen = sfu_nodes.choose(await sfu_nodes.live_nodes(redis))
    except (RedisError, OSError) as exc:
        ctx.log.warning("sfu_directory_unreadable", error=str(exc))
        return fallback
    return SfuTarget(chosen.url.rstrip("/"), chosen.node_id) if chosen else fallback


def sessions_client(ctx: PipelineContext, target: SfuTarget | None = None) -> SessionsClient:
    """A sessions API client for the adapter's app, at `target` (`SLUICE_SFU_URL` if None)."""
    record, settings = ctx.record, ctx.settings
    base = target.url if target is not None else settings.sfu_url.rstrip("/")
    return SessionsClient(
        f"{base}/v1/apps/{record.app_id}",
        settings.app_secrets.get(record.app_id, ""),
        configuration=rtc_configuration(settings),
        tls=tls_context(),  # an https:// SFU: the system store, loaded once per host
    )


async def close_sessions_client(client: SessionsClient | None, log: BoundLogger) -> None:
    """Closes the pipeline's peer connections and HTTP client; logs, never raises.

    Best effort: the adapter is ending either way, and the SFU ends a session whose peer
    has gone; a failure here must not keep the adapter's record from being closed.
    """
    if client is None:
        return
    try:
        await client.close()
    except Exception as exc:
        log.warning("sfu_client_close_failed", error=repr(exc), exc_info=exc)


async def session_lost(peer: Peer, redis: Redis | None = None, node_id: str = "") -> str:
    """Returns (why) once the SFU no longer serves `peer`'s session; runs until then.

    Args:
        peer: the pipeline's session.
        redis, node_id: the directory and the session's node, watched if both are given.
    """
    loop = asyncio.get_running_loop()
    failing_since: float | None = None  # when the asks started to fail
    asked_at = -math.inf
    watched = redis is not None and bool(node_id)
    ask_every = WATCHED_CHECK_EVERY_S if watched else CHECK_EVERY_S
    while True:
        await asyncio.sleep(NODE_CHECK_EVERY_S if watched else CHECK_EVERY_S)
        if peer.pc.connectionState in ("failed", "closed"):
            return f"peer connection {peer.pc.connectionState}"
        if redis is not None and node_id and (why := await node_gone(redis, node_id, peer)):
            return why
        if loop.time() - asked_at < ask_every:
            continue
        asked_at = loop.time()
        try:
            await peer.state()
            failing_since = None
        except SessionsApiError as exc:
            if exc.status == 404:
                return "the SFU no longer has this session"
        except (httpx.HTTPError, OSError):
            failing_since = asked_at if failing_since is None else failing_since
            if loop.time() - failing_since >= UNREACHABLE_FOR_S:
                return "the SFU is unreachable"
            asked_at -= ask_every - CHECK_EVERY_S  # until it answers, ask as often as ever
