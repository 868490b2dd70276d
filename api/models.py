"""Request and response bodies of the adapters API, as they appear on the wire."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

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

    _endpoint = field_validator("endpoint")(check_endpoint)

    def settings_in_effect(self) -> dict[str, Any]:
        """The extension settings this item asks for, defaults filled in, as the record
        keeps them (`AdapterRecord.options`) and `AdapterView.settings` shows them."""
        return {}


def _exactly_one_of(literal: Any) -> Callable[[Any], Any]:
    """Checks a value against a `Literal` of ints before pydantic would coerce `true`
    (to 1), `16000.0` or `"16000"` into one of them."""
    allowed = get_args(literal)
    choices = ", ".join(str(value) for value in allowed)

    def check(value: Any) -> Any:
        if value is None or (type(value) is int and value in allowed):
            return value
        raise ValueError(f"must be one of {choices}")

    return check


# codec → (sampleRate, channels) when the item leaves them out (extensions.md E1).
INGEST_DEFAULTS = {"pcm": (48_000, 2), "mulaw": (8_000, 1)}
IngestSampleRate = Literal[8000, 16000, 22050, 24000, 44100, 48000]
IngestChannels = Literal[1, 2]
_IngestSampleRateField = Annotated[
    IngestSampleRate | None, BeforeValidator(_exactly_one_of(IngestSampleRate))
]
_IngestChannelsField = Annotated[
    IngestChannels | None, BeforeValidator(_exactly_one_of(IngestChannels))
]


class IngestTrack(_Item):
    """WebSocket → WebRTC: Sluice dials `endpoint` and publishes its audio as Opus `trackName`.

    The track is 48 kHz stereo Opus whatever the endpoint sends; other formats are
    resampled (band-limited) as they arrive.
    """

    location: Literal["local"]
    inputCodec: Literal["pcm", "mulaw"] = Field(
        description='What the endpoint sends: "pcm" (s16le) or, a Sluice extension, '
        '"mulaw" (G.711 μ-law, one byte per sample).'
    )
    mode: Literal["buffer"] = "buffer"
    sampleRate: _IngestSampleRateField = Field(
        None,
        description="Sluice extension: the rate the endpoint sends at, in Hz. "
        "Default: 48000 for pcm, 8000 for mulaw.",
    )
    channels: _IngestChannelsField = Field(
        None,
        description="Sluice extension: 1 (mono: heard on both channels of the stereo "
        "track) or 2 (interleaved L, R). Default: 2 for pcm, 1 for mulaw.",
    )

    def settings_in_effect(self) -> dict[str, Any]:
        rate, channels = INGEST_DEFAULTS[self.inputCodec]
        return {
            "inputCodec": self.inputCodec,
            "sampleRate": self.sampleRate or rate,
            "channels": self.channels or channels,
        }


class EgressTrack(_Item):
    """WebRTC → WebSocket: Sluice pulls `sessionId`/`trackName` and streams it to `endpoint`."""

    location: Literal["remote"]
    sessionId: NonEmpty
    outputCodec: Literal["pcm", "jpeg"]
    mode: str | None = Field(None, description="Ignored for egress.")


TrackRequest = Annotated[IngestTrack | EgressTrack, Field(discriminator="location")]


class CreateRequest(BaseModel):
    tracks: Annotated[list[TrackRequest], Field(min_length=1, max_length=MAX_TRACKS_PER_CREATE)]


class ErrorBody(BaseModel):
    errorCode: str
    errorDescription: str


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


class Counters(BaseModel):
    packets: int = 0
    bytes: int = 0
    dropped: int = 0
    reconnects: int = 0
    skipped: int = 0
    underruns: int = 0
    clearedMs: int = Field(
        0, description="Ingest: audio dropped by the endpoint's `clear` messages, in total."
    )
    maxBufferMs: int = Field(0, description="Ingest: the deepest the playout buffer got.")
    maxLoopLagMs: int = Field(
        0, description="The pipeline's worst event-loop lag: how late its timers ran."
    )


class AdapterSettings(BaseModel):
    """The extension settings in effect for an adapter (extensions.md), defaults included.

    Header values are never shown (only their names).
    """

    model_config = ConfigDict(extra="allow")

    # Ingest (E1): the format the endpoint sends.
    inputCodec: Literal["pcm", "mulaw"] | None = None
    sampleRate: int | None = Field(None, description="Hz, of the endpoint's audio.")
    channels: int | None = Field(None, description="Of the endpoint's audio.")


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
