"""An adapter as the API shows it: the one rendering `GET .../adapters/websocket/{id}`
answers and lifecycle webhooks carry, so the two can never disagree."""

from __future__ import annotations

from typing import Any

from sluice.state.records import COUNTER_NAMES, AdapterRecord, redact_endpoint


def camel(name: str) -> str:
    """`max_loop_lag_ms` → `maxLoopLagMs`: a record's counter as the API names it."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def adapter_json(record: AdapterRecord) -> dict[str, Any]:
    """The record in the API's shape: endpoint without query string, counters and
    extension settings by their API names, absent fields left out. Header values are
    never in a record, so never here."""
    view: dict[str, Any] = {
        "adapterId": record.adapter_id,
        "state": record.state.value,
        "direction": record.direction.value,
        "sessionId": record.session_id,
        "trackName": record.track_name,
        "endpoint": redact_endpoint(record.endpoint),
        "codec": record.codec,
        "createdAt": record.created_at,
    }
    if record.closed_at is not None:
        view["closedAt"] = record.closed_at
    if record.close_reason is not None:
        view["closeReason"] = record.close_reason
    view["counters"] = {camel(name): record.counters.get(name, 0) for name in COUNTER_NAMES}
    view["settings"] = dict(record.options)
    return view
