"""Every API call as data: method, path, body, and how to read the answer. No I/O.

`SluiceClient` and `AsyncSluiceClient` send these with httpx; nothing here knows which.
Paths are relative to the app's base URL, `.../v1/apps/{appId}`, the same for Sluice and
Cloudflare.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from sluice_endpoint.client.models import (
    Adapter,
    ClosedAdapter,
    CreatedAdapter,
    EgressItem,
    IngestItem,
    Session,
    SessionDescription,
    TrackRequest,
    TrackResult,
    TracksAnswer,
)
from sluice_endpoint.errors import ApiError

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP call and the reading of its answer.

    Attributes:
        method: the HTTP method.
        path: below the app's base URL.
        body: the JSON body, if any.
        read: (status, JSON answer or None) → the result; raises `ApiError`.
    """

    method: str
    path: str
    body: Any
    read: Callable[[int, Any], T]


def raise_for_error(status: int, data: Any) -> None:
    """An `ApiError` for any status but 2xx, with the contract's errorCode if present.

    Raises:
        ApiError: status ≥ 300.
    """
    if status < 300:
        return
    fields = data if isinstance(data, dict) else {}
    raise ApiError(
        status,
        str(fields.get("errorCode") or "http_error"),
        str(fields.get("errorDescription") or f"HTTP {status}"),
    )


def _segment(value: str) -> str:
    return quote(value, safe="")


def create_adapters(items: Sequence[EgressItem | IngestItem]) -> Call[list[CreatedAdapter]]:
    """`POST adapters/websocket/new`: results in request order, failed items included.

    Raises (when read):
        ApiError: every item failed (the first failure's status and code).
    """

    def read(status: int, data: Any) -> list[CreatedAdapter]:
        raise_for_error(status, data)
        return [CreatedAdapter.from_json(t) for t in data["tracks"]]

    body = {"tracks": [item.to_json() for item in items]}
    return Call("POST", "/adapters/websocket/new", body, read)


def close_adapters(adapter_ids: Sequence[str]) -> Call[list[ClosedAdapter]]:
    """`POST adapters/websocket/close` (closing a closed adapter succeeds)."""

    def read(status: int, data: Any) -> list[ClosedAdapter]:
        raise_for_error(status, data)
        return [ClosedAdapter.from_json(t) for t in data["tracks"]]

    body = {"tracks": [{"adapterId": adapter_id} for adapter_id in adapter_ids]}
    return Call("POST", "/adapters/websocket/close", body, read)


def get_adapter(adapter_id: str) -> Call[Adapter]:
    """`GET adapters/websocket/{id}` (a Sluice extension)."""

    def read(status: int, data: Any) -> Adapter:
        raise_for_error(status, data)
        return Adapter.from_json(data)

    return Call("GET", f"/adapters/websocket/{_segment(adapter_id)}", None, read)


def new_session(offer: SessionDescription | None = None) -> Call[Session]:
    """`POST sessions/new`, with or without an offer."""

    def read(status: int, data: Any) -> Session:
        raise_for_error(status, data)
        description = data.get("sessionDescription")
        return Session(
            session_id=str(data["sessionId"]),
            session_description=SessionDescription.from_json(description) if description else None,
        )

    body = {"sessionDescription": offer.to_json()} if offer is not None else None
    return Call("POST", "/sessions/new", body, read)


def _tracks_answer(status: int, data: Any) -> TracksAnswer:
    raise_for_error(status, data)
    return TracksAnswer.from_json(data)


def add_tracks(
    session_id: str,
    tracks: Sequence[TrackRequest] | None = None,
    session_description: SessionDescription | None = None,
    *,
    auto_discover: bool | None = None,
) -> Call[TracksAnswer]:
    """`POST sessions/{id}/tracks/new`: push (with the client's offer) or pull tracks."""
    body: dict[str, Any] = {}
    if session_description is not None:
        body["sessionDescription"] = session_description.to_json()
    if tracks is not None:
        body["tracks"] = [t.to_json() for t in tracks]
    if auto_discover is not None:
        body["autoDiscover"] = auto_discover
    return Call("POST", f"/sessions/{_segment(session_id)}/tracks/new", body, _tracks_answer)


def renegotiate(session_id: str, answer: SessionDescription) -> Call[None]:
    """`PUT sessions/{id}/renegotiate` with the client's answer."""

    def read(status: int, data: Any) -> None:
        raise_for_error(status, data)

    body = {"sessionDescription": answer.to_json()}
    return Call("PUT", f"/sessions/{_segment(session_id)}/renegotiate", body, read)


def close_tracks(
    session_id: str,
    mids: Sequence[str],
    session_description: SessionDescription | None = None,
    *,
    force: bool | None = None,
) -> Call[TracksAnswer]:
    """`PUT sessions/{id}/tracks/close`."""
    body: dict[str, Any] = {"tracks": [{"mid": mid} for mid in mids]}
    if session_description is not None:
        body["sessionDescription"] = session_description.to_json()
    if force is not None:
        body["force"] = force
    return Call("PUT", f"/sessions/{_segment(session_id)}/tracks/close", body, _tracks_answer)


def get_session(session_id: str) -> Call[list[TrackResult]]:
    """`GET sessions/{id}`: its tracks and their status."""

    def read(status: int, data: Any) -> list[TrackResult]:
        raise_for_error(status, data)
        return [TrackResult.from_json(t) for t in data.get("tracks") or []]

    return Call("GET", f"/sessions/{_segment(session_id)}", None, read)


def first_error(results: Sequence[CreatedAdapter | ClosedAdapter]) -> ApiError | None:
    """An `ApiError` (status 200) for the first failed item of a batch, if any."""
    for result in results:
        if result.error_code is not None:
            return ApiError(200, result.error_code, result.error_description or "")
    return None
