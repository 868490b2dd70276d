"""Lifecycle webhooks (E7): check a delivery's signature, read its event.

    event = read_webhook(body, request.headers, secret)   # raw body, as received
    if inbox.first_time(event):                            # deliveries come at least once
        ...

Deliveries are retried until answered with 2xx, so the same event may come twice, and
in any order: deduplicate by `id`, order by `sequence` (per adapter).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice_endpoint.client.models import Adapter
from sluice_endpoint.signatures import TOLERANCE_S, Secrets, verify_webhook_signature

EVENT_TYPES = ("adapter.active", "adapter.reconnecting", "adapter.reconnected", "adapter.closed")


@dataclass(frozen=True)
class WebhookEvent:
    """One lifecycle event.

    Attributes:
        id: unique per event (the same on every retry).
        type: `adapter.active`, `adapter.reconnecting`, `adapter.reconnected` or
            `adapter.closed` (the reason and final counters are in `adapter`).
        created_at: RFC 3339.
        app_id: the app.
        sequence: per adapter, from 1.
        adapter: the adapter as `GET .../adapters/websocket/{id}` shows it.
    """

    id: str
    type: str
    created_at: str
    app_id: str
    sequence: int
    adapter: Adapter

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WebhookEvent:
        """Raises: KeyError, ValueError or TypeError for a body that is not an event."""
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            created_at=str(data.get("createdAt", "")),
            app_id=str(data.get("appId", "")),
            sequence=int(data["sequence"]),
            adapter=Adapter.from_json(data["adapter"]),
        )


def read_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: Secrets | None,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> WebhookEvent:
    """Checks a delivery (when `secret` is given) and parses it.

    Args:
        body: the request body exactly as received (the signature covers these bytes).
        headers: the request headers.
        secret: the app's signing secret; None skips the check (unsigned apps).
        now: unix seconds (default: the clock).
        tolerance_s: how old the signature's timestamp may be.

    Raises:
        SignatureError: a missing, wrong or stale signature.
        ValueError: a body that is not an event.
    """
    if secret is not None:
        verify_webhook_signature(
            secret, headers, body, time.time() if now is None else now, tolerance_s
        )
    try:
        return WebhookEvent.from_json(json.loads(body))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a webhook event: {exc}") from None


class WebhookInbox:
    """Remembers the last `size` event ids, to drop repeated deliveries."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event: WebhookEvent) -> bool:
        """True the first time an event id is seen."""
        if event.id in self._seen:
            self._seen.move_to_end(event.id)
            return False
        self._seen[event.id] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True
