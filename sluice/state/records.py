"""The adapter state model shared by the API, the workers and the reaper."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class AdapterState(StrEnum):
    CONNECTING = "connecting"
    ACTIVE = "active"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class Direction(StrEnum):
    INGEST = "ingest"  # WebSocket → WebRTC (`location: "local"`)
    EGRESS = "egress"  # WebRTC → WebSocket (`location: "remote"`)


class MediaKind(StrEnum):
    """A track's kind, as SDP's media sections and `MediaStreamTrack.kind` name it."""

    AUDIO = "audio"
    VIDEO = "video"


class CloseReason(StrEnum):
    API_CLOSE = "api_close"
    SHUTDOWN = "shutdown"
    WORKER_LOST = "worker_lost"
    API_LOST = "api_lost"  # the API replica creating it died before it answered
    ENDPOINT_CLOSED = "endpoint_closed"
    ENDPOINT_UNAVAILABLE = "endpoint_unavailable"
    MESSAGE_TOO_BIG = "message_too_big"
    TRACK_ENDED = "track_ended"
    INTERNAL_ERROR = "internal_error"


COUNTER_NAMES = (
    "packets",
    "bytes",
    "dropped",
    "reconnects",
    "skipped",
    "underruns",
    "cleared_ms",
    "max_buffer_ms",
    "max_loop_lag_ms",
    "concealed",
    "lost",
)


def redact_endpoint(endpoint: str) -> str:
    """The endpoint without query string, fragment or credentials: tokens live there."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class AdapterRecord:
    """One adapter as stored in Redis (`sluice:adapter:{id}`, a hash of strings)."""

    adapter_id: str
    app_id: str
    direction: Direction
    session_id: str
    track_name: str
    endpoint: str
    codec: str
    state: AdapterState = AdapterState.CONNECTING
    created_at: str = field(default_factory=utc_now_iso)
    closed_at: str | None = None
    close_reason: str | None = None
    worker: str | None = None
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    resumes: int = 0  # times another worker took over after this one's process was lost
    # What a pipeline saves besides counters: loop-lag histogram buckets (`h_*`) and an
    # egress stream's position (`p_*`), so a resumed pipeline carries both on.
    extra: dict[str, int] = field(default_factory=dict)
    # The extension settings in effect (shared/spec/extensions.md), named as the API names
    # them and with defaults filled in: `{"sampleRate": 16000, "channels": 1, ...}`. Empty
    # for a record written before extensions existed. Never holds a secret (header values
    # are stored apart).
    options: dict[str, Any] = field(default_factory=dict)
    # The app had a webhook when the adapter was created: its transitions emit lifecycle
    # events (E7; `lua/prelude.lua`, `emit_event`).
    webhooks: bool = False

    def to_hash(self) -> dict[str, str]:
        mapping = {
            "adapter_id": self.adapter_id,
            "app_id": self.app_id,
            "direction": self.direction.value,
            "session_id": self.session_id,
            "track_name": self.track_name,
            "endpoint": self.endpoint,
            "codec": self.codec,
            "state": self.state.value,
            "created_at": self.created_at,
        }
        for name, value in (
            ("closed_at", self.closed_at),
            ("close_reason", self.close_reason),
            ("worker", self.worker),
        ):
            if value is not None:
                mapping[name] = value
        for name, count in self.counters.items():
            mapping[f"c_{name}"] = str(count)
        if self.resumes:
            mapping["resumes"] = str(self.resumes)
        mapping.update({name: str(value) for name, value in self.extra.items()})
        if self.options:
            mapping["options"] = json.dumps(self.options, separators=(",", ":"), sort_keys=True)
        if self.webhooks:
            mapping["webhooks"] = "1"
        return mapping

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> AdapterRecord:
        return cls(
            adapter_id=raw["adapter_id"],
            app_id=raw["app_id"],
            direction=Direction(raw["direction"]),
            session_id=raw.get("session_id", ""),
            track_name=raw.get("track_name", ""),
            endpoint=raw.get("endpoint", ""),
            codec=raw.get("codec", ""),
            state=AdapterState(raw.get("state", AdapterState.CLOSED)),
            created_at=raw.get("created_at", ""),
            closed_at=raw.get("closed_at"),
            close_reason=raw.get("close_reason"),
            worker=raw.get("worker"),
            counters={name: int(raw.get(f"c_{name}", 0)) for name in COUNTER_NAMES},
            resumes=int(raw.get("resumes", 0)),
            extra={k: int(v) for k, v in raw.items() if k[:2] in ("h_", "p_")},
            options=json.loads(raw["options"]) if "options" in raw else {},
            webhooks=raw.get("webhooks") == "1",
        )
