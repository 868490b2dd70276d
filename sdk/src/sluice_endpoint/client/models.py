"""The adapters and sessions API's bodies as dataclasses (websocket-adapter.md §3-4,
sessions-api.md, extensions.md).

Requests: `EgressItem` and `IngestItem` with Cloudflare's fields and Sluice's extensions
(left out of the JSON while None, so a request for Cloudflare stays Cloudflare's).
Answers: parsed leniently, unknown fields ignored, so a newer server does not break this
client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


def _drop_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class EgressItem:
    """WebRTC → WebSocket: Sluice sends `session_id`/`track_name` to `endpoint`.

    The fields after `output_codec` are Sluice's extensions (extensions.md E1-E8).
    """

    session_id: str
    track_name: str
    endpoint: str
    output_codec: Literal["pcm", "mulaw", "opus", "jpeg"] = "pcm"
    sample_rate: int | None = None
    channels: int | None = None
    frame_ms: int | None = None
    framing: Literal["packet", "raw"] | None = None
    events: bool | None = None
    fps: float | None = None
    max_width: int | None = None
    max_height: int | None = None
    quality: int | None = None
    headers: dict[str, str] | None = None
    reconnect_window_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "location": "remote",
                "sessionId": self.session_id,
                "trackName": self.track_name,
                "endpoint": self.endpoint,
                "outputCodec": self.output_codec,
                "sampleRate": self.sample_rate,
                "channels": self.channels,
                "frameMs": self.frame_ms,
                "framing": self.framing,
                "events": self.events,
                "fps": self.fps,
                "maxWidth": self.max_width,
                "maxHeight": self.max_height,
                "quality": self.quality,
                "headers": self.headers,
                "reconnectWindowS": self.reconnect_window_s,
            }
        )


@dataclass(frozen=True)
class IngestItem:
    """WebSocket → WebRTC: Sluice dials `endpoint` and publishes what it sends as a track.

    The fields after `input_codec` are Sluice's extensions (extensions.md E1, E3, E6).
    """

    track_name: str
    endpoint: str
    input_codec: Literal["pcm", "mulaw"] = "pcm"
    sample_rate: int | None = None
    channels: int | None = None
    framing: Literal["packet", "raw"] | None = None
    headers: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "location": "local",
                "trackName": self.track_name,
                "endpoint": self.endpoint,
                "inputCodec": self.input_codec,
                "mode": "buffer",
                "sampleRate": self.sample_rate,
                "channels": self.channels,
                "framing": self.framing,
                "headers": self.headers,
            }
        )


def _str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


@dataclass(frozen=True)
class CreatedAdapter:
    """One item of a create answer: the adapter, or why it was not made."""

    track_name: str
    adapter_id: str | None = None
    session_id: str | None = None
    endpoint: str | None = None
    error_code: str | None = None
    error_description: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None and self.adapter_id is not None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CreatedAdapter:
        return cls(
            track_name=str(data.get("trackName", "")),
            adapter_id=_str(data, "adapterId"),
            session_id=_str(data, "sessionId"),
            endpoint=_str(data, "endpoint"),
            error_code=_str(data, "errorCode"),
            error_description=_str(data, "errorDescription"),
        )


@dataclass(frozen=True)
class ClosedAdapter:
    """One item of a close answer."""

    adapter_id: str
    status: str | None = None
    bytes_processed: int | None = None
    error_code: str | None = None
    error_description: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClosedAdapter:
        processed = data.get("bytesProcessed")
        return cls(
            adapter_id=str(data.get("adapterId", "")),
            status=_str(data, "status"),
            bytes_processed=int(processed) if processed is not None else None,
            error_code=_str(data, "errorCode"),
            error_description=_str(data, "errorDescription"),
        )


@dataclass(frozen=True)
class Adapter:
    """An adapter as `GET .../adapters/websocket/{id}` shows it (Sluice only).

    `counters` holds every counter the server reports (`packets`, `bytes`, `dropped`,
    `reconnects`, `skipped`, `underruns`, ...); `settings` the extension settings in
    effect.
    """

    adapter_id: str
    state: str
    direction: str
    session_id: str
    track_name: str
    endpoint: str
    codec: str
    created_at: str
    closed_at: str | None = None
    close_reason: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Adapter:
        counters = data.get("counters") or {}
        return cls(
            adapter_id=str(data["adapterId"]),
            state=str(data["state"]),
            direction=str(data.get("direction", "")),
            session_id=str(data.get("sessionId", "")),
            track_name=str(data.get("trackName", "")),
            endpoint=str(data.get("endpoint", "")),
            codec=str(data.get("codec", "")),
            created_at=str(data.get("createdAt", "")),
            closed_at=_str(data, "closedAt"),
            close_reason=_str(data, "closeReason"),
            counters={str(k): int(v) for k, v in counters.items() if isinstance(v, int)},
            settings=dict(data.get("settings") or {}),
        )


@dataclass(frozen=True)
class SessionDescription:
    """An SDP offer or answer."""

    type: Literal["offer", "answer"]
    sdp: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "sdp": self.sdp}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionDescription:
        kind = data.get("type")
        if kind not in ("offer", "answer"):
            raise ValueError(f"a session description of type {kind!r}")
        return cls(kind, str(data.get("sdp", "")))


@dataclass(frozen=True)
class TrackRequest:
    """One track of `tracks/new`: pushed (`local`, with `mid`) or pulled (`remote`)."""

    location: Literal["local", "remote"]
    track_name: str
    mid: str | None = None
    session_id: str | None = None
    kind: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "location": self.location,
                "trackName": self.track_name,
                "mid": self.mid,
                "sessionId": self.session_id,
                "kind": self.kind,
            }
        )


@dataclass(frozen=True)
class TrackResult:
    """One track of a `tracks/new` or `tracks/close` answer, or of `GET` a session."""

    track_name: str | None = None
    mid: str | None = None
    session_id: str | None = None
    location: str | None = None
    status: str | None = None
    kind: str | None = None
    error_code: str | None = None
    error_description: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackResult:
        return cls(
            **{
                name: _str(data, key)
                for name, key in (
                    ("track_name", "trackName"),
                    ("mid", "mid"),
                    ("session_id", "sessionId"),
                    ("location", "location"),
                    ("status", "status"),
                    ("kind", "kind"),
                    ("error_code", "errorCode"),
                    ("error_description", "errorDescription"),
                )
            }
        )


@dataclass(frozen=True)
class Session:
    """A `sessions/new` answer."""

    session_id: str
    session_description: SessionDescription | None = None


@dataclass(frozen=True)
class TracksAnswer:
    """A `tracks/new` or `tracks/close` answer."""

    requires_immediate_renegotiation: bool
    tracks: list[TrackResult]
    session_description: SessionDescription | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TracksAnswer:
        description = data.get("sessionDescription")
        return cls(
            requires_immediate_renegotiation=bool(data.get("requiresImmediateRenegotiation")),
            tracks=[TrackResult.from_json(t) for t in data.get("tracks") or []],
            session_description=(
                SessionDescription.from_json(description) if description else None
            ),
        )
