"""`SluiceClient` (blocking) and `AsyncSluiceClient`: the API calls of `calls.py` over httpx.

    with SluiceClient("http://127.0.0.1:8080/v1/apps/demo", "demo") as api:
        adapter = api.create_adapter(EgressItem(session_id, "mic", "ws://127.0.0.1:9100/stt"))
        ...
        api.close_adapter(adapter.adapter_id)

The base URL is the app's: Sluice's `.../v1/apps/{appId}`, or Cloudflare's
`https://rtc.live.cloudflare.com/v1/apps/{appId}` (where `get_adapter` does not exist).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import httpx

from sluice_endpoint.client import calls
from sluice_endpoint.client.calls import Call
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
Item = EgressItem | IngestItem
DEFAULT_TIMEOUT_S = 30.0  # a create answers once the endpoint is dialled (or timed out)


def _options(base_url: str, secret: str, timeout_s: float) -> dict[str, Any]:
    return {
        "base_url": base_url.rstrip("/"),
        "headers": {"Authorization": f"Bearer {secret}"},
        "timeout": timeout_s,
    }


def _read(call: Call[T], response: httpx.Response) -> T:
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = None
    return call.read(response.status_code, data)


def _one(results: list[CreatedAdapter]) -> CreatedAdapter:
    error = calls.first_error(results)
    if error is not None:
        raise error
    return results[0]


class SluiceClient:
    """The adapters and sessions API of one app, blocking.

    Args:
        base_url: the app's base URL, `.../v1/apps/{appId}`.
        secret: the app secret (Bearer token).
        timeout_s: per request.
        http: an httpx client of your own (its base URL and auth are then yours to set).
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http: httpx.Client | None = None,
    ) -> None:
        self.http = http or httpx.Client(**_options(base_url, secret, timeout_s))

    def _run(self, call: Call[T]) -> T:
        return _read(call, self.http.request(call.method, call.path, json=call.body))

    def create_adapters(self, items: Sequence[Item]) -> list[CreatedAdapter]:
        """Creates 1-4 adapters; failed items carry `error_code` (partial success)."""
        return self._run(calls.create_adapters(items))

    def create_adapter(self, item: Item) -> CreatedAdapter:
        """Creates one adapter.

        Raises:
            ApiError: it could not be created.
        """
        return _one(self.create_adapters([item]))

    def close_adapters(self, adapter_ids: Sequence[str]) -> list[ClosedAdapter]:
        return self._run(calls.close_adapters(adapter_ids))

    def close_adapter(self, adapter_id: str) -> ClosedAdapter:
        return self.close_adapters([adapter_id])[0]

    def get_adapter(self, adapter_id: str) -> Adapter:
        return self._run(calls.get_adapter(adapter_id))

    def new_session(self, offer: SessionDescription | None = None) -> Session:
        return self._run(calls.new_session(offer))

    def add_tracks(
        self,
        session_id: str,
        tracks: Sequence[TrackRequest] | None = None,
        session_description: SessionDescription | None = None,
        *,
        auto_discover: bool | None = None,
    ) -> TracksAnswer:
        return self._run(
            calls.add_tracks(session_id, tracks, session_description, auto_discover=auto_discover)
        )

    def renegotiate(self, session_id: str, answer: SessionDescription) -> None:
        self._run(calls.renegotiate(session_id, answer))

    def close_tracks(
        self,
        session_id: str,
        mids: Sequence[str],
        session_description: SessionDescription | None = None,
        *,
        force: bool | None = None,
    ) -> TracksAnswer:
        return self._run(calls.close_tracks(session_id, mids, session_description, force=force))

    def get_session(self, session_id: str) -> list[TrackResult]:
        return self._run(calls.get_session(session_id))

    def close(self) -> None:
        """Closes the HTTP client (not any adapter)."""
        self.http.close()

    def __enter__(self) -> SluiceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncSluiceClient:
    """The adapters and sessions API of one app, for asyncio; see `SluiceClient`."""

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.http = http or httpx.AsyncClient(**_options(base_url, secret, timeout_s))

    async def _run(self, call: Call[T]) -> T:
        return _read(call, await self.http.request(call.method, call.path, json=call.body))

    async def create_adapters(self, items: Sequence[Item]) -> list[CreatedAdapter]:
        """Creates 1-4 adapters; failed items carry `error_code` (partial success)."""
        return await self._run(calls.create_adapters(items))

    async def create_adapter(self, item: Item) -> CreatedAdapter:
        """Creates one adapter.

        Raises:
            ApiError: it could not be created.
        """
        return _one(await self.create_adapters([item]))

    async def close_adapters(self, adapter_ids: Sequence[str]) -> list[ClosedAdapter]:
        return await self._run(calls.close_adapters(adapter_ids))

    async def close_adapter(self, adapter_id: str) -> ClosedAdapter:
        return (await self.close_adapters([adapter_id]))[0]

    async def get_adapter(self, adapter_id: str) -> Adapter:
        return await self._run(calls.get_adapter(adapter_id))

    async def new_session(self, offer: SessionDescription | None = None) -> Session:
        return await self._run(calls.new_session(offer))

    async def add_tracks(
        self,
        session_id: str,
        tracks: Sequence[TrackRequest] | None = None,
        session_description: SessionDescription | None = None,
        *,
        auto_discover: bool | None = None,
    ) -> TracksAnswer:
        return await self._run(
            calls.add_tracks(session_id, tracks, session_description, auto_discover=auto_discover)
        )

    async def renegotiate(self, session_id: str, answer: SessionDescription) -> None:
        await self._run(calls.renegotiate(session_id, answer))

    async def close_tracks(
        self,
        session_id: str,
        mids: Sequence[str],
        session_description: SessionDescription | None = None,
        *,
        force: bool | None = None,
    ) -> TracksAnswer:
        return await self._run(
            calls.close_tracks(session_id, mids, session_description, force=force)
        )

    async def get_session(self, session_id: str) -> list[TrackResult]:
        return await self._run(calls.get_session(session_id))

    async def aclose(self) -> None:
        """Closes the HTTP client (not any adapter)."""
        await self.http.aclose()

    async def __aenter__(self) -> AsyncSluiceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


__all__ = ["ApiError", "AsyncSluiceClient", "SluiceClient"]
