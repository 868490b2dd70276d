"""Dialing an endpoint, with failures mapped to the contract's error codes."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from collections.abc import Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI
from websockets.uri import parse_uri

from sluice.endpoint_policy import EndpointNotAllowed, EndpointPolicy
from sluice.errors import CodedError, ErrorCode
from sluice.state.records import redact_endpoint

# A dial may carry secret headers (E6), and websockets logs the whole handshake request
# at DEBUG: its logger for dials never goes below INFO, whatever the process's log level.
_HANDSHAKE_LOG = logging.getLogger("sluice.worker.dial")
_HANDSHAKE_LOG.setLevel(logging.INFO)


class _connect_without_redirects(connect):
    """`connect` that treats a 3xx answer as a failed handshake.

    An endpoint must not be able to bounce Sluice to another address than the one the
    API client named (and the endpoint policy checked).
    """

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


class DialError(CodedError):
    """The endpoint could not be reached; `code` is the per-track error code."""


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Verifies certificates and host names, against `ca_bundle` if given (a PEM file),
    else against the system trust store.

    Loaded once per process and bundle (the worker host loads them before forking
    pipelines): a trust store costs ~20 ms to load. A changed bundle takes effect on
    restart.

    Raises:
        OSError: the bundle cannot be read.
    """
    return _load_trust(ca_bundle or None)  # "" (the setting's default) is the system store


@functools.cache
def _load_trust(ca_bundle: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle)


async def checked_address(host: str, port: int, policy: EndpointPolicy) -> str:
    """Resolves `host` and returns the address to connect to, if the policy allows it.

    Raises:
        DialError: `websocket_handshake_failed` when `host` does not resolve,
            `websocket_endpoint_not_allowed` when `policy` refuses an address.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DialError(
            ErrorCode.WEBSOCKET_HANDSHAKE_FAILED, f"{host} could not be resolved: {exc.strerror}"
        ) from None
    try:
        return policy.choose([str(info[4][0]) for info in infos])
    except EndpointNotAllowed as exc:
        raise DialError(
            ErrorCode.WEBSOCKET_ENDPOINT_NOT_ALLOWED, f"endpoint {host} is not allowed: {exc}"
        ) from None


async def dial(
    endpoint: str,
    *,
    timeout_s: float,
    close_timeout_s: float,
    max_message_bytes: int | None,
    policy: EndpointPolicy,
    tls: ssl.SSLContext | None = None,
    max_queue_messages: int = 16,
    headers: Sequence[tuple[str, str]] | None = None,
) -> ClientConnection:
    """Opens the WebSocket to `endpoint`, if `policy` allows where its host resolves to.

    Args:
        endpoint: ws:// or wss:// URL.
        policy: which resolved addresses may be dialled (checked on every call, so every
            reconnect is judged again).
        tls: for wss://, the context that verifies the endpoint's certificate (default:
            the system's trust store, always verifying).
        timeout_s: the whole opening handshake (TCP, TLS, HTTP) must finish within this.
        close_timeout_s: how long a later close waits for the endpoint's close frame.
        max_message_bytes: larger incoming messages close the connection with 1009.
        max_queue_messages: received messages queued before the socket is not read
            any more, until it is down to a quarter (websockets' flow control).
        headers: sent with the opening handshake (E6); may hold secrets, so nothing here
            logs them or puts them in an error.

    Raises:
        DialError: `websocket_connection_timeout` when nothing answered in time,
            `websocket_handshake_failed` for refusals, HTTP errors and redirects,
            `websocket_endpoint_not_allowed` when `policy` refuses the resolved address.
    """
    shown = redact_endpoint(endpoint)
    try:
        uri = parse_uri(endpoint)
        async with asyncio.timeout(timeout_s):
            address = await checked_address(uri.host, uri.port, policy)
        return await _connect_without_redirects(
            endpoint,
            # The checked address, not a second lookup that could answer differently;
            # TLS still verifies the certificate against the URL's host name.
            host=address,
            # Never None for wss://: that would make the connection plain TCP.
            ssl=(tls or tls_context()) if uri.secure else None,
            open_timeout=timeout_s,
            close_timeout=close_timeout_s,
            max_size=max_message_bytes,
            max_queue=max_queue_messages,
            compression=None,  # PCM and JPEG do not deflate; it would only cost CPU
            ping_interval=20,
            ping_timeout=20,
            additional_headers=list(headers) if headers else None,
            user_agent_header="Sluice",  # a `User-Agent` among `headers` replaces it
            logger=_HANDSHAKE_LOG,
        )
    except TimeoutError:
        raise DialError(
            ErrorCode.WEBSOCKET_CONNECTION_TIMEOUT, f"{shown} did not answer within {timeout_s} s"
        ) from None
    except (InvalidHandshake, InvalidURI) as exc:
        raise DialError(
            ErrorCode.WEBSOCKET_HANDSHAKE_FAILED, f"{shown} refused the WebSocket handshake: {exc}"
        ) from None
    except (OSError, asyncio.IncompleteReadError, EOFError) as exc:
        raise DialError(
            ErrorCode.WEBSOCKET_HANDSHAKE_FAILED,
            f"{shown} could not be reached: {exc.strerror if isinstance(exc, OSError) else exc}",
        ) from None
