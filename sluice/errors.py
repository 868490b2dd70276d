"""Every error Sluice raises on purpose, in one tree. Each carries the wire `errorCode`
and an HTTP status; the body of an error is `{"errorCode": ..., "errorDescription": ...}`,
and per-track failures in batch answers carry the same two fields.

- `SluiceError`
  - request errors, rendered by the API and the SFU: `DecodingError`, `BodyTooLarge`,
    `InvalidParams`, `TooManyTracks`, `Unauthorized`, `AppNotFound`, `SessionNotFound`,
    `TrackNotFound`, `AdapterNotFound`, `QuotaExceeded`, `RateLimited`,
    `StateStoreUnavailable`
  - `CodedError`: the code is chosen where it is raised (a create's per-track failure)
    - `worker.pipelines.base.SetupError`: a pipeline's media set-up failed
    - `worker.dial.DialError`: the endpoint could not be reached
  - `sluice.endpoint_policy.EndpointNotAllowed`: the endpoint resolves where it may not
  - `sluice.media.calls_client.SessionsApiError`: the sessions API refused a call
  - `MediaError`: media Sluice cannot use
    - `sluice.media.aiortc_internals.SeamBroken`: aiortc changed shape (an upgrade)
    - `sluice.media.rtp.vp9_payload.Vp9PayloadError`, `...rtp.h265.H265PayloadError`
  - `sluice.wire.packet.PacketError`: a WebSocket message that is no valid `Packet`
    - `PacketDecodeError` (ingest skips and counts it), `MessageTooBig` (closes 1009)
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    DECODING_ERROR = "decoding_error"
    INVALID_PARAMS = "invalid_params"
    NOT_FOUND_SESSION = "not_found_session_error"
    NOT_FOUND_TRACK = "not_found_track_error"
    ADAPTER_NOT_FOUND = "adapter_not_found"
    WEBSOCKET_HANDSHAKE_FAILED = "websocket_handshake_failed"
    WEBSOCKET_CONNECTION_TIMEOUT = "websocket_connection_timeout"
    WEBSOCKET_ENDPOINT_NOT_ALLOWED = "websocket_endpoint_not_allowed"
    NO_CAPACITY = "no_capacity"
    TOO_MANY_ADAPTERS = "too_many_adapters"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    APP_NOT_FOUND = "not_found_app_error"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"


# The HTTP status a batch answer takes when this code is its first (and only kind of) failure.
BATCH_STATUS: dict[str, int] = {
    ErrorCode.NOT_FOUND_SESSION: 404,
    ErrorCode.NOT_FOUND_TRACK: 404,
    ErrorCode.ADAPTER_NOT_FOUND: 503,
    ErrorCode.NO_CAPACITY: 503,
    ErrorCode.TOO_MANY_ADAPTERS: 429,
    ErrorCode.WEBSOCKET_HANDSHAKE_FAILED: 503,
    ErrorCode.WEBSOCKET_CONNECTION_TIMEOUT: 503,
    ErrorCode.WEBSOCKET_ENDPOINT_NOT_ALLOWED: 503,
    ErrorCode.INVALID_PARAMS: 400,
    ErrorCode.INTERNAL_ERROR: 500,
}

# Seconds a client should wait before retrying an answer with this code (`Retry-After`).
# Rate limits count per wall-clock second; the others last until something outside the
# client's control changes (an adapter ends, a worker frees up, Redis or the SFU is back).
RETRY_AFTER_S: dict[str, int] = {
    ErrorCode.RATE_LIMITED: 1,
    ErrorCode.TOO_MANY_ADAPTERS: 5,
    ErrorCode.NO_CAPACITY: 5,
    ErrorCode.SERVICE_UNAVAILABLE: 2,
}


def error_headers(code: str) -> dict[str, str]:
    """The HTTP headers an answer whose (first) error has this code carries: how to
    authenticate after a 401 (RFC 6750), when to retry after a 429 or a transient 503."""
    if code == ErrorCode.UNAUTHORIZED:
        return {"WWW-Authenticate": "Bearer"}
    seconds = RETRY_AFTER_S.get(code)
    return {"Retry-After": str(seconds)} if seconds is not None else {}


class SluiceError(Exception):
    """Base of every error Sluice raises on purpose."""

    error_code: str = ErrorCode.INTERNAL_ERROR  # an `ErrorCode`, or a peer's own code
    status: int = 500

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def body(self) -> dict[str, str]:
        return {"errorCode": str(self.error_code), "errorDescription": self.description}


class DecodingError(SluiceError):
    error_code, status = ErrorCode.DECODING_ERROR, 400


class BodyTooLarge(SluiceError):
    error_code, status = ErrorCode.DECODING_ERROR, 413


class InvalidParams(SluiceError):
    error_code, status = ErrorCode.INVALID_PARAMS, 400


class TooManyTracks(SluiceError):
    error_code, status = ErrorCode.INVALID_PARAMS, 406


class Unauthorized(SluiceError):
    error_code, status = ErrorCode.UNAUTHORIZED, 401


class AppNotFound(SluiceError):
    error_code, status = ErrorCode.APP_NOT_FOUND, 404


class SessionNotFound(SluiceError):
    error_code, status = ErrorCode.NOT_FOUND_SESSION, 404


class TrackNotFound(SluiceError):
    error_code, status = ErrorCode.NOT_FOUND_TRACK, 404


class AdapterNotFound(SluiceError):
    error_code, status = ErrorCode.ADAPTER_NOT_FOUND, 404


class QuotaExceeded(SluiceError):
    """The app runs as many adapters as it may."""

    error_code, status = ErrorCode.TOO_MANY_ADAPTERS, 429


class RateLimited(SluiceError):
    """The app sends create requests faster than it may."""

    error_code, status = ErrorCode.RATE_LIMITED, 429


class StateStoreUnavailable(SluiceError):
    """Redis could not be reached; retrying later is the right move."""

    error_code, status = ErrorCode.SERVICE_UNAVAILABLE, 503


class CodedError(SluiceError):
    """An error whose code is decided where it is raised.

    Attributes:
        code: the per-track error code (also `error_code`).
    """

    def __init__(self, code: ErrorCode, description: str) -> None:
        super().__init__(description)
        self.error_code = self.code = code


class MediaError(SluiceError):
    """Media Sluice cannot use: a payload it cannot parse, a media stack it cannot drive."""
