"""Renders every failure in the contract's error shape, for every Sluice HTTP app."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from sluice.errors import ErrorCode, SluiceError, StateStoreUnavailable, error_headers
from sluice.http.validation import classify

log = structlog.get_logger("sluice.http")


class ErrorBody(BaseModel):
    """Every error answer: a code from the contract and a sentence for people."""

    errorCode: str
    errorDescription: str


def error_response(
    status: int, code: str, description: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer in the contract's shape, with the headers its code calls for
    (`WWW-Authenticate` on 401, `Retry-After` when retrying later can help)."""
    body = {"errorCode": code, "errorDescription": description}
    return JSONResponse(
        body, status_code=status, headers={**error_headers(code), **(headers or {})}
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SluiceError)
    async def sluice_error(_: Request, exc: SluiceError) -> JSONResponse:
        return error_response(exc.status, exc.error_code, exc.description)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = classify(exc.errors())
        return error_response(error.status, error.error_code, error.description)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(
            exc.status_code, ErrorCode.INVALID_PARAMS
        )
        # Keep the framework's headers: a 405 must say which methods are `Allow`ed.
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        log.error("state_store_unreachable", error=str(exc))
        error = StateStoreUnavailable("the state store (Redis) is unreachable; retry shortly")
        return error_response(error.status, error.error_code, error.description)

    app.add_exception_handler(RedisConnectionError, redis_down)
    app.add_exception_handler(RedisTimeoutError, redis_down)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error")
        return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error; see the server log")
