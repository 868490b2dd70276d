"""Errors that reach users. Each carries the wire `errorCode` and an HTTP status.

The body of every error is `{"errorCode": ..., "errorDescription": ...}`; per-track
failures in batch answers carry the same two fields.
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


class SluiceError(Exception):
    """Base of every error rendered to a client."""

    error_code: ErrorCode = ErrorCode.INTERNAL_ERROR
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
