"""Telling an SFU node's death from Redis forgetting it.

A peer of a node (a pipeline's session, another node's cascade) watches the node's entry
in the directory: a SIGKILLed node's entry expires within seconds, and no BYE ever comes.
But an entry can be missing while the node is fine: Redis restarted empty forgets every
node until its next heartbeat, up to a second later. Taking that for a death ended every
adapter and cascade of the deployment on a Redis restart. So a missing entry is only
the reason to ask the node itself, and only a node that does not answer, or no longer
knows the session, is gone.
"""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sluice.media.calls_client import Peer, SessionsApiError
from sluice.state import sfu_nodes

ANSWER_WITHIN_S = 2.0  # a node that does not answer its own session in this long is gone


async def node_gone(redis: Redis, node_id: str, peer: Peer) -> str | None:
    """Why the node holding `peer`'s session is gone, or None while it serves it."""
    try:
        if await sfu_nodes.is_alive(redis, node_id):
            return None
    except (RedisError, OSError):
        return None  # Redis trouble is not the node's death: media goes on
    try:
        await asyncio.wait_for(peer.state(), ANSWER_WITHIN_S)
    except SessionsApiError as exc:
        if exc.status == 404:
            return f"the SFU node {node_id} left the directory and no longer has this session"
        return None  # it answers: alive, whatever it thinks of the request
    except (httpx.HTTPError, OSError, TimeoutError):
        return f"the SFU node {node_id} left the directory and does not answer"
    return None  # Redis forgot it; its next heartbeat puts it back
