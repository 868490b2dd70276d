"""Request bodies of the adapters API and its create/close answers, as on the wire.

What GET and the operations routes answer lives in `api.views`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from api.headers import MAX_HEADER_BYTES, MAX_HEADERS, check_headers
from sluice.config import Settings
from sluice.http.errors import ErrorBody

MAX_TRACKS_PER_CREATE = 4
MAX_TRACKS_PER_CLOSE = 64
# Defaults an item takes from the configuration, unless it sets its own (E5, E8).
CONFIGURED_RECONNECT_WINDOW_S = Settings.model_fields["reconnect_window_s"].default
CONFIGURED_JPEG_QUALITY = Settings.model_fields["jpeg_quality"].default
_PCM_DEFAULTS = {"pcm": (48_000, 2), "mulaw": (8000, 1)}  # sampleRate, channels
_AUDIO_FORMAT_FIELDS = ("sampleRate", "channels", "frameMs")
_SNAPSHOT_FIELDS = ("fps", "maxWidth", "maxHeight", "quality")

NonEmpty = Annotated[str, Field(min_length=1, max_length=1024)]
Framing = Literal["packet", "raw"]  # E3
PictureSide = Annotated[int, Field(strict=True, ge=16, le=4096)]  # pixels (E5)
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

    # E3: framing.
    framing: Framing = Field(
        "packet",
        description='Sluice extension: what each binary WebSocket message holds. "packet" '
        '(default): one protobuf `Packet`. "raw": the media alone, no protobuf: egress '
        "sends one frame of s16le or μ-law samples, one Opus packet or one JPEG per "
        "message; ingest takes each message as audio bytes of the input format (a "
        "zero-length message still ends a segment). Text messages stay JSON control "
        "either way. For sockets that take raw audio, e.g. a speech-to-text service's.",
    )
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
        return {"framing": self.framing}


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
            **super().settings_in_effect(),
        }


class EgressTrack(_Item):
    """WebRTC → WebSocket: Sluice pulls `sessionId`/`trackName` and streams it to `endpoint`."""

    location: Literal["remote"]
    sessionId: NonEmpty
    outputCodec: Literal["pcm", "mulaw", "opus", "jpeg"] = Field(
        description="`pcm` (s16le), `mulaw` (G.711 μ-law) or `opus` (the publisher's "
        "packets, not decoded) for an audio track; `jpeg` (snapshots) for a video track."
    )
    mode: str | None = Field(None, description="Ignored for egress.")
    # E1: audio formats (pcm, mulaw).
    sampleRate: Literal[8000, 16000, 24000, 48000] | None = Field(
        None,
        description="pcm, mulaw: samples per second, 8000, 16000, 24000 or 48000 "
        "(resampled band-limited); `timestamp` counts samples at this rate. "
        "Default: pcm 48000, mulaw 8000.",
    )
    channels: Literal[1, 2] | None = Field(
        None,
        description="pcm, mulaw: 1 (the mean of left and right) or 2 (interleaved). "
        "Default: pcm 2, mulaw 1.",
    )
    frameMs: Literal[20, 40, 60, 100] | None = Field(
        None, description="pcm, mulaw: audio per Packet in ms, 20, 40, 60 or 100. Default 20."
    )
    # E4: stream events.
    events: StrictBool = Field(
        False,
        description="Interleave text JSON events with the media: `start` first on every "
        "connection, `gap` before media that follows a loss, `stop` before Sluice closes.",
    )
    # E5: snapshots (jpeg).
    fps: Annotated[float, Field(strict=True, ge=0.1, le=5)] | None = Field(
        None, description="jpeg: pictures per second, 0.1 to 5 (one every 1/fps s). Default 1."
    )
    maxWidth: PictureSide | None = Field(
        None,
        description="jpeg: widest picture in pixels, 16 to 4096; larger ones are scaled "
        "down to fit, aspect kept, never up. Default: the source's width.",
    )
    maxHeight: PictureSide | None = Field(
        None,
        description="jpeg: tallest picture in pixels, 16 to 4096 (as maxWidth). "
        "Default: the source's height.",
    )
    quality: Annotated[int, Field(strict=True, ge=1, le=100)] | None = Field(
        None,
        description="jpeg: JPEG quality, 1 to 100 (higher: larger, sharper). "
        "Default: the server's (SLUICE_JPEG_QUALITY, 75 unless configured).",
    )
    # E8: reconnect window.
    reconnectWindowS: Annotated[float, Field(strict=True, ge=0, le=60)] | None = Field(
        None,
        description="Seconds to re-dial a lost endpoint, 0 to 60 (0: the adapter closes at "
        "the first loss); audio waiting meanwhile is kept for as long. "
        "Default: the server's (SLUICE_RECONNECT_WINDOW_S, 5 unless configured).",
    )

    @field_validator(*_AUDIO_FORMAT_FIELDS, mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # JSON true would pass as 1
            raise ValueError("must be a number")
        return value

    @model_validator(mode="after")
    def _fields_fit_the_codec(self) -> EgressTrack:
        codec = self.outputCodec
        for name in _AUDIO_FORMAT_FIELDS:
            if getattr(self, name) is not None and codec not in _PCM_DEFAULTS:
                raise ValueError(f"{name} applies to outputCodec pcm and mulaw only")
        for name in _SNAPSHOT_FIELDS:
            if getattr(self, name) is not None and codec != "jpeg":
                raise ValueError(f"{name} applies to outputCodec jpeg only")
        return self

    def settings_in_effect(
        self,
        *,
        reconnect_window_s: float = CONFIGURED_RECONNECT_WINDOW_S,
        jpeg_quality: int = CONFIGURED_JPEG_QUALITY,
    ) -> dict[str, Any]:
        """As `_Item.settings_in_effect`, with the server's configured defaults.

        Args:
            reconnect_window_s: the configured reconnect window (SLUICE_RECONNECT_WINDOW_S).
            jpeg_quality: the configured JPEG quality (SLUICE_JPEG_QUALITY).
        """
        settings: dict[str, Any] = {}
        codec = self.outputCodec
        if codec in _PCM_DEFAULTS:
            rate, channels = _PCM_DEFAULTS[codec]
            settings["sampleRate"] = self.sampleRate or rate
            settings["channels"] = self.channels or channels
            settings["frameMs"] = self.frameMs or 20
        elif codec == "jpeg":
            settings["fps"] = self.fps if self.fps is not None else 1.0
            if self.maxWidth is not None:
                settings["maxWidth"] = self.maxWidth
            if self.maxHeight is not None:
                settings["maxHeight"] = self.maxHeight
            settings["quality"] = self.quality if self.quality is not None else jpeg_quality
        settings["events"] = self.events
        settings["reconnectWindowS"] = (
            self.reconnectWindowS if self.reconnectWindowS is not None else reconnect_window_s
        )
        return {**settings, **super().settings_in_effect()}


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
