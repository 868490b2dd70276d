"""The adapters and sessions API, typed, blocking and asyncio."""

from sluice_endpoint.client.http import AsyncSluiceClient, SluiceClient
from sluice_endpoint.client.models import (
    Adapter,
    ClosedAdapter,
    CreatedAdapter,
    EgressItem,
    IngestItem,
    Session,
    SessionDescription,
    TrackRequest,
    TrackResult,
    TracksAnswer,
)

__all__ = [
    "Adapter",
    "AsyncSluiceClient",
    "ClosedAdapter",
    "CreatedAdapter",
    "EgressItem",
    "IngestItem",
    "Session",
    "SessionDescription",
    "SluiceClient",
    "TrackRequest",
    "TrackResult",
    "TracksAnswer",
]
