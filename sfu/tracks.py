"""A session's tracks as the SFU keeps them, and what a session needs from its holder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sfu.forward import Fanout, Subscriber
from sluice.http.sessions_models import Location, TrackRequest, TrackResult, TrackStatus

if TYPE_CHECKING:
    from sfu.session import Session


@dataclass(eq=False)
class SessionTrack:
    location: Location
    mid: str  # in the session that holds it
    name: str
    kind: str
    source_session_id: str  # the publishing session (the holder itself for local tracks)
    status: TrackStatus
    transceiver: Any  # aiortc's RTCRtpTransceiver
    codec: str | None = None
    fanout: Fanout | None = None  # local tracks: their subscribers
    subscriber: Subscriber | None = None  # remote tracks: the feed from the publisher

    def result(self) -> TrackResult:
        """This track as an item of a tracks/new or tracks/close answer."""
        return TrackResult(
            trackName=self.name, mid=self.mid, sessionId=self.source_session_id, kind=self.kind
        )


class Hub(Protocol):
    """What a session needs from the process that holds every session."""

    async def prepare_pulls(self, app_id: str, items: list[TrackRequest]) -> None:
        """Readies tracks of other nodes that `items` pull (before the request is planned)."""

    def find_published(self, app_id: str, session_id: str, track_name: str) -> SessionTrack: ...

    async def tracks_changed(self, session: Session) -> None: ...

    def request_close(self, session: Session, reason: str) -> None: ...
