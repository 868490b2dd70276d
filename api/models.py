"""Request and response bodies of the adapters API, as they appear on the wire."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from api.headers import MAX_HEADER_BYTES, MAX_HEADERS, check_headers
from sluice.http.errors import ErrorBody

MAX_TRACKS_PER_CREATE = 4
MAX_TRACKS_PER_CLOSE = 64

NonEmpty = Annotated[str, Field(min_length=1, max_length=1024)]
_WS_SCHEME = re.compile(r"^wss?://", re.IGNORECASE)


def check_endpoint(value: str) -> str:
    """Accepts `ws://` and `wss://` URLs that name a host (IPv6 literals included).

    Raises:
        ValueError: anything else.
    """
    if not _WS_SCHEME.match(value) or any(ch.isspace() for ch in value):
        raise ValueError("endpoint must be a ws:// or wss:// URL")
    try:
        uri = parse_uri(value)
    except InvalidURI as exc:
        raise ValueError(f"endpoint is not a valid WebSocket URL: {exc}") from None
    if not uri.host:
        raise ValueError("endpoint must name a host")
    return value


class _Item(BaseModel):
    # Unknown fields are ignored, as Cloudflare does, so richer clients keep working.
    model_config = ConfigDict(extra="ignore")

    trackName: NonEmpty
    endpoint: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2048,
            pattern=r"^[wW][sS][sS]?://[^\s/?#]+([/?#]\S*)?$",
            description="ws:// or wss:// URL naming a host; Sluice dials it.",
        ),
    ]

    headers: dict[str, str] | None = Field(
        None,
        description=f"Extension E6: up to {MAX_HEADERS} HTTP headers ({MAX_HEADER_BYTES} "
        "bytes in all) sent on every dial of this adapter, reconnects and resumes included, "
        "e.g. an endpoint's `Authorization`. Values are secrets: they are stored encrypted "
        "and never shown (the record lists `headerNames`). Given (`{}` will do), every dial "
        "also carries `Sluice-Adapter-Id`. Not: the handshake's own headers (`Host`, "
        "`Connection`, `Upgrade`, `Sec-WebSocket-*`, `Content-Length`, "
        "`Transfer-Encoding`), `Sluice-*`, values with CR, LF or NUL.",
    )

    _endpoint = field_validator("endpoint")(check_endpoint)
    _headers = field_validator("headers")(check_headers)

    def settings_in_effect(self) -> dict[str, Any]:
        """The extension settings this item asks for, defaults filled in, as the record
        keeps them (`AdapterRecord.options`) and `AdapterView.settings` shows them."""
        return {}


class IngestTrack(_Item):
    """WebSocket → WebRTC: Sluice dials `endpoint` and publishes PCM as Opus `trackName`."""

    location: Literal["local"]
    inputCodec: Literal["pcm"]
    mode: Literal["buffer"] = "buffer"


class EgressTrack(_Item):
    """WebRTC → WebSocket: Sluice pulls `sessionId`/`trackName` and streams it to `endpoint`."""

    location: Literal["remote"]
    sessionId: NonEmpty
    outputCodec: Literal["pcm", "jpeg"]
    mode: str | None = Field(None, description="Ignored for egress.")


TrackRequest = Annotated[IngestTrack | EgressTrack, Field(discriminator="location")]


class CreateRequest(BaseModel):
    tracks: Annotated[list[TrackRequest], Field(min_length=1, max_length=MAX_TRACKS_PER_CREATE)]


class CreateTrackResult(BaseModel):
    """One item of a create answer: the adapter, or why it could not be made."""

    trackName: str
    adapterId: str | None = None
    sessionId: str | None = None
    endpoint: str | None = None
    errorCode: str | None = None
    errorDescription: str | None = None


class CreateResponse(BaseModel):
    tracks: list[CreateTrackResult]
    errorCode: str | None = Field(None, description="Set when every item failed.")
    errorDescription: str | None = None


class CloseTrack(BaseModel):
    model_config = ConfigDict(extra="ignore")

    adapterId: NonEmpty


class CloseRequest(BaseModel):
    tracks: Annotated[list[CloseTrack], Field(min_length=1, max_length=MAX_TRACKS_PER_CLOSE)]


class CloseTrackResult(BaseModel):
    adapterId: str
    status: Literal["closed"] | None = None
    bytesProcessed: int | None = None
    errorCode: str | None = None
    errorDescription: str | None = None


class CloseResponse(BaseModel):
    tracks: list[CloseTrackResult]
    errorCode: str | None = None
    errorDescription: str | None = None


class CreateFailed(ErrorBody):
    """A create answer in which every item failed: the first failure, and every item's."""

    tracks: list[CreateTrackResult]


class CloseFailed(ErrorBody):
    """A close answer in which every item failed: the first failure, and every item's."""

    tracks: list[CloseTrackResult]


class Counters(BaseModel):
    packets: int = 0
    bytes: int = 0
    dropped: int = 0
    reconnects: int = 0
    skipped: int = 0
    underruns: int = 0
    maxBufferMs: int = Field(0, description="Ingest: the deepest the playout buffer got.")
    maxLoopLagMs: int = Field(
        0, description="The pipeline's worst event-loop lag: how late its timers ran."
    )
    concealed: int = Field(
        0, description="Egress audio: 20 ms frames the network lost, made up (FEC or PLC)."
    )
    lost: int = Field(
        0, description="Egress audio: frames lost in holes over 100 ms (the timestamp jumps)."
    )


class AdapterSettings(BaseModel):
    """The extension settings in effect for an adapter (extensions.md), defaults included.

    Header values are never shown (only their names).
    """

    model_config = ConfigDict(extra="allow")

    headerNames: list[str] | None = Field(
        None,
        description="E6: the names of the headers sent on every dial (their values are "
        "never shown); absent when the create item had no `headers`.",
    )


class AdapterView(BaseModel):
    adapterId: str
    state: Literal["connecting", "active", "reconnecting", "closed"]
    direction: Literal["ingest", "egress"]
    sessionId: str
    trackName: str
    endpoint: str = Field(description="Without query string: tokens live there.")
    codec: str
    createdAt: str
    closedAt: str | None = None
    closeReason: str | None = None
    counters: Counters
    settings: AdapterSettings = Field(default_factory=AdapterSettings)


class UsageHour(BaseModel):
    hour: str = Field(description="Start of the UTC hour, ISO 8601.")
    egressBytes: int
    ingestBytes: int


class UsageResponse(BaseModel):
    appId: str
    start: str = Field(alias="from", description="Start of the first hour counted (UTC).")
    end: str = Field(alias="to", description="End of the last hour counted (UTC).")
    egressBytes: int = Field(
        description="Bytes sent to WebSocket endpoints (egress; the billable figure): the "
        "serialized Packets, Protobuf framing included, WebSocket frame headers not."
    )
    ingestBytes: int = Field(description="Bytes received from WebSocket endpoints (ingest).")
    hours: list[UsageHour] = Field(description="The hours with any traffic, oldest first.")

    model_config = ConfigDict(populate_by_name=True)


class Readiness(BaseModel):
    status: Literal["ready", "unready"]
    checks: dict[str, str | int] = Field(
        description="Per dependency (`redis`, `workers`, `sfu`): `ok` or the count of "
        "workers, else why it is not ready."
    )
