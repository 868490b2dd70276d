"""A pipeline's connection to the SFU: its sessions client, and noticing the SFU go away.

A pipeline is a WebRTC peer of the SFU through the sessions API. If the SFU restarts, its
sessions are gone and no BYE ever arrives; ICE consent would notice only after tens of
seconds. Asking the SFU about the pipeline's own session every few seconds turns that
into a prompt, clean close.
"""

from __future__ import annotations

import asyncio

import httpx
from structlog.stdlib import BoundLogger

from sluice.media.calls_client import Peer, SessionsApiError, SessionsClient
from sluice.media.ice import rtc_configuration
from worker.dial import tls_context
from worker.pipelines.base import PipelineContext

CHECK_EVERY_S = 3.0
UNREACHABLE_FOR_S = 6.0  # this long without an answer: the SFU is gone


def sessions_client(ctx: PipelineContext) -> SessionsClient:
    """A sessions API client for the adapter's app, at `SLUICE_SFU_URL`."""
    record, settings = ctx.record, ctx.settings
    return SessionsClient(
        f"{settings.sfu_url.rstrip('/')}/v1/apps/{record.app_id}",
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


async def session_lost(peer: Peer) -> str:
    """Returns (why) once the SFU no longer serves `peer`'s session; runs until then."""
    loop = asyncio.get_running_loop()
    answered_at = loop.time()
    while True:
        await asyncio.sleep(CHECK_EVERY_S)
        if peer.pc.connectionState in ("failed", "closed"):
            return f"peer connection {peer.pc.connectionState}"
        try:
            await peer.state()
            answered_at = loop.time()
        except SessionsApiError as exc:
            if exc.status == 404:
                return "the SFU no longer has this session"
        except (httpx.HTTPError, OSError):
            if loop.time() - answered_at > UNREACHABLE_FOR_S:
                return "the SFU is unreachable"
