"""What the API shows of adapters, usage and readiness: read-side bodies, as on the wire."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.models import Framing


class Counters(BaseModel):
    packets: int = Field(
        0, description="Binary messages written (egress) or taken as audio (ingest)."
    )
    bytes: int = Field(
        0,
        description="Bytes of those messages as they were on the wire: whole Packets, or "
        "the media alone with `framing: raw`; text messages not.",
    )
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

    framing: Framing | None = Field(
        None, description='Both (E3): "packet" (protobuf `Packet`s) or "raw" (the media alone).'
    )
    # Ingest (E1): the format the endpoint sends.
    inputCodec: Literal["pcm", "mulaw"] | None = None
    sampleRate: int | None = Field(
        None, description="Egress pcm, mulaw: samples per second sent; ingest: received."
    )
    channels: int | None = Field(None, description="Egress pcm, mulaw, and ingest: 1 or 2.")
    frameMs: int | None = Field(None, description="Egress pcm, mulaw: audio per Packet, ms.")
    events: bool | None = Field(None, description="Egress: text JSON stream events (E4).")
    fps: float | None = Field(None, description="Egress jpeg: pictures per second.")
    maxWidth: int | None = Field(None, description="Egress jpeg: widest picture, pixels.")
    maxHeight: int | None = Field(None, description="Egress jpeg: tallest picture, pixels.")
    quality: int | None = Field(None, description="Egress jpeg: JPEG quality, 1-100.")
    reconnectWindowS: float | None = Field(
        None, description="Egress: seconds a lost endpoint is re-dialled (0: never)."
    )
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
        "binary messages as written, i.e. the serialized Packets, Protobuf framing included, "
        "or the media alone for `framing: raw` adapters; text events and WebSocket frame "
        "headers not."
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
