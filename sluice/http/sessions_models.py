"""Request and response bodies of the sessions API, with Cloudflare's camelCase names.

Shared: the SFU validates with them, the API describes its sessions routes with them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sluice.state.records import MediaKind

MAX_TRACKS_PER_REQUEST = 64

Name = Annotated[str, Field(min_length=1, max_length=256)]


class TrackStatus(StrEnum):
    INITIALIZING = "initializing"
    ACTIVE = "active"
    INACTIVE = "inactive"


class Location(StrEnum):
    LOCAL = "local"  # pushed by this session's client
    REMOTE = "remote"  # pulled from another session


class _Body(BaseModel):
    # Unknown fields are ignored, as Cloudflare does, so richer clients keep working.
    model_config = ConfigDict(extra="ignore")


class SessionDescription(_Body):
    type: Literal["offer", "answer"]
    sdp: Annotated[str, Field(min_length=1, max_length=60_000)]


class NewSessionRequest(_Body):
    sessionDescription: SessionDescription | None = None


class NewSessionResponse(BaseModel):
    sessionId: str
    sessionDescription: SessionDescription | None = None


class TrackRequest(_Body):
    location: Location
    mid: Name | None = None
    trackName: Name | None = None
    sessionId: Name | None = None
    kind: MediaKind | None = None


class NewTracksRequest(_Body):
    sessionDescription: SessionDescription | None = None
    tracks: Annotated[list[TrackRequest], Field(max_length=MAX_TRACKS_PER_REQUEST)] | None = None
    autoDiscover: bool = False


class TrackResult(BaseModel):
    trackName: str | None = None
    mid: str | None = None
    sessionId: str | None = None
    kind: str | None = None
    errorCode: str | None = None
    errorDescription: str | None = None


class TracksResponse(BaseModel):
    requiresImmediateRenegotiation: bool
    sessionDescription: SessionDescription | None = None
    tracks: list[TrackResult]


class RenegotiateRequest(_Body):
    sessionDescription: SessionDescription


class CloseTrackRequest(_Body):
    mid: Name


class CloseTracksRequest(_Body):
    tracks: Annotated[list[CloseTrackRequest], Field(min_length=1, max_length=64)]
    sessionDescription: SessionDescription | None = None
    force: bool = False


class TrackView(BaseModel):
    location: Location
    mid: str
    trackName: str
    status: TrackStatus
    sessionId: str
    kind: str


class SessionView(BaseModel):
    tracks: list[TrackView]
