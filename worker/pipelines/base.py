"""What a media pipeline is to the adapter runner.

The runner owns the adapter's lifecycle (claim, heartbeat, close requests, the final
record); a pipeline owns the media and the endpoint connection it is handed. Direction
modules implement `Pipeline` and nothing else.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from structlog.stdlib import BoundLogger
from websockets.asyncio.client import ClientConnection

from sluice.config import Settings
from sluice.errors import CodedError
from sluice.state.records import COUNTER_NAMES, AdapterRecord, AdapterState, CloseReason
from worker.protocol.resume import ResumePoint


class SetupError(CodedError):
    """`prepare()` failed; `code` becomes the create's per-track error code."""


@dataclass(slots=True)
class PipelineContext:
    record: AdapterRecord
    settings: Settings
    log: BoundLogger
    # Dials the endpoint again (egress reconnects); raises `worker.dial.DialError`.
    redial: Callable[[], Awaitable[ClientConnection]]
    # Announces `active` / `reconnecting`; never blocks media on Redis for long.
    set_state: Callable[[AdapterState], Awaitable[None]]
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    # Set when this pipeline takes over an egress adapter whose process was lost.
    resume: ResumePoint | None = None
    # The SFU node directory (`worker.pipelines.sfu_link`); None: use `SLUICE_SFU_URL`.
    redis: Redis | None = None
    # Why the runner stops the pipeline (API close, shutdown), once it does; a pipeline
    # cancelled by the runner reads it to tell the endpoint.
    stop_reason: Callable[[], CloseReason | None] = lambda: None


class Pipeline(ABC):
    """One adapter's media work. `prepare`, then `run` once; `aclose` always."""

    max_message_bytes: int | None = 1 << 20  # what the endpoint may send us
    # Received messages websockets queues before it stops reading the socket (its default).
    max_queue_messages = 16
    # The SFU session the pipeline made in `prepare` (ingest), recorded before `active`.
    session_id: str | None = None

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Media set-up before the endpoint is dialled (e.g. publish or pull a track).

        Raises:
            SetupError: the create fails with that code.
        """

    def on_connected(self) -> None:  # noqa: B027 - optional hook
        """The endpoint's WebSocket is open (`prepare` may still be running)."""

    @abstractmethod
    async def run(self, ws: ClientConnection) -> CloseReason:
        """Moves media until it ends, returning why. The pipeline owns `ws` from here
        on (and any connection it re-dials) and leaves it closed when it returns or is
        cancelled."""

    def position(self) -> dict[str, int]:
        """What to save with each heartbeat for another worker to resume from (`p_*`)."""
        return {}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Releases media resources; called once, after `run` ended or was cancelled."""


async def close_ws(ws: ClientConnection, code: int = 1000, reason: str = "") -> None:
    """Closes `ws` without ever raising or hanging.

    The closing handshake is bounded by the connection's close timeout; past twice that
    (a peer that never lets go of TCP) the transport is aborted.
    """
    try:
        await asyncio.wait_for(ws.close(code, reason), 2 * (ws.close_timeout or 1.0))
    except (OSError, TimeoutError):
        ws.transport.abort()
