"""Lifecycle events (E7) as the transition scripts leave them in the webhook outbox.

Each entry of the `sluice:webhook_outbox` stream is one event: `type`, `sequence` (per
adapter, from 1), `at_ms` (Redis's clock at the transition) and `record`, the adapter's
hash at that moment (`lua/prelude.lua`, `emit_event`). `LifecycleEvent.body()` is the JSON
a webhook receives; it is rendered once, so every retry sends the very same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sluice.state.records import AdapterRecord
from sluice.state.view import adapter_json


class DeliveryOutcome(StrEnum):
    """What one delivery attempt came to; each is counted in `sluice:metrics` under
    `webhooks|<outcome>` (`metric_field`)."""

    DELIVERED = "delivered"  # answered 2xx
    RETRIED = "retried"  # failed; another attempt is scheduled
    FAILED = "failed"  # failed, and it was the last attempt


def metric_field(outcome: DeliveryOutcome) -> str:
    return f"webhooks|{outcome.value}"


class EventType(StrEnum):
    ACTIVE = "adapter.active"
    RECONNECTING = "adapter.reconnecting"
    RECONNECTED = "adapter.reconnected"
    CLOSED = "adapter.closed"


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    type: EventType
    sequence: int
    at_ms: int
    record: AdapterRecord

    @property
    def event_id(self) -> str:
        """Unique, and the same however often the event is dispatched or delivered."""
        return f"{self.record.adapter_id}-{self.sequence}"

    @property
    def app_id(self) -> str:
        return self.record.app_id

    def body(self) -> bytes:
        created = datetime.fromtimestamp(self.at_ms / 1000, UTC)
        event = {
            "id": self.event_id,
            "type": self.type.value,
            "createdAt": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "appId": self.app_id,
            "sequence": self.sequence,
            "adapter": adapter_json(self.record),
        }
        return json.dumps(event, separators=(",", ":")).encode()


def parse_entry(fields: Mapping[str, str]) -> LifecycleEvent:
    """One outbox entry's fields (decoded) as an event.

    Raises:
        ValueError: not an entry the scripts write (a missing field, an unknown type).
    """
    try:
        flat = json.loads(fields["record"])
        if not isinstance(flat, list) or len(flat) % 2:
            raise ValueError("record is not a flat list of field/value pairs")
        record = AdapterRecord.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
        return LifecycleEvent(
            type=EventType(fields["type"]),
            sequence=int(fields["sequence"]),
            at_ms=int(fields["at_ms"]),
            record=record,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a lifecycle event: {exc!r}") from None
