"""Renders every failure in the contract's error shape, for every Sluice HTTP app."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from sluice.errors import ErrorCode, SluiceError, StateStoreUnavailable
from sluice.http.validation import classify

log = structlog.get_logger("sluice.http")


def _render(
    status: int, code: str, description: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"errorCode": code, "errorDescription": description}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SluiceError)
    async def sluice_error(_: Request, exc: SluiceError) -> JSONResponse:
        return _render(exc.status, exc.error_code, exc.description)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = classify(exc.errors())
        return _render(error.status, error.error_code, error.description)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(
            exc.status_code, ErrorCode.INVALID_PARAMS
        )
        # Keep the framework's headers: a 405 must say which methods are `Allow`ed.
        return _render(exc.status_code, code, str(exc.detail), exc.headers)

    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        log.error("state_store_unreachable", error=str(exc))
        error = StateStoreUnavailable("the state store (Redis) is unreachable; retry shortly")
        return _render(error.status, error.error_code, error.description)

    app.add_exception_handler(RedisConnectionError, redis_down)
    app.add_exception_handler(RedisTimeoutError, redis_down)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error")
        return _render(500, ErrorCode.INTERNAL_ERROR, "internal error; see the server log")
