"""What every Sluice HTTP app's OpenAPI description and docs pages have in common.

- `/docs` (Swagger UI) and `/redoc` serve their scripts and styles from this process (the
  `fastapi-offline` wheel ships them): a self-hosted Sluice without internet has its docs.
- Operation ids are the endpoints' names in camelCase (`createAdapters`), which client
  generators turn into method names.
- No 422 answers are described: `sluice.http.errors` renders every validation failure as
  the contract's 400 or 406.
- Request bodies a route forwards instead of parsing (the API's sessions routes) are
  described with `json_body(Model)` and the models passed as `request_models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.types import Lifespan

from sluice.config import Settings
from sluice.http.errors import ErrorBody

DOCS_ASSETS_URL = "/docs/assets"
REF_PREFIX = "#/components/schemas/"
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

# Swagger UI's defaults send the schema to an online validator; keep the page offline, and
# keep the secret entered under Authorize across reloads.
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None, "persistAuthorization": True}

WWW_AUTHENTICATE: dict[str, Any] = {
    "WWW-Authenticate": {
        "description": "`Bearer`: authenticate with the app's secret.",
        "required": True,
        "schema": {"type": "string"},
    }
}


def retry_after(when: str | None = None) -> dict[str, Any]:
    """The `Retry-After` header of an answer: always there, or only `when` (a phrase)."""
    description = "Seconds to wait before retrying"
    return {
        "Retry-After": {
            "description": f"{description} ({when})." if when else f"{description}.",
            "required": when is None,
            "schema": {"type": "integer", "minimum": 1},
        }
    }


def error(description: str, model: Any = ErrorBody, **extra: Any) -> dict[str, Any]:
    """One documented error answer of a route: its body's model and what it means there."""
    return {"model": model, "description": description, **extra}


UNAUTHORIZED = error("Missing or wrong Bearer secret (`unauthorized`).", headers=WWW_AUTHENTICATE)
UNKNOWN_APP = error("Unknown app (`not_found_app_error`).")
TOO_LARGE = error("The body is larger than SLUICE_MAX_BODY_BYTES (`decoding_error`).")
REDIS_DOWN = "Redis is unreachable (`service_unavailable`, with `Retry-After`)"
STATE_STORE_DOWN = error(f"{REDIS_DOWN}.", headers=retry_after())


def operation_id(route: APIRoute) -> str:
    """`create_adapters` → `createAdapters`."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` describing a JSON request body of `model` that the route does not
    parse itself; pass `model` in `new_app(request_models=...)` too. An optional body
    (`Model | None = None` where it is parsed) may also be JSON `null`."""
    schema: dict[str, Any] = {"$ref": f"{REF_PREFIX}{model.__name__}"}
    if not required:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def new_app(
    *,
    settings: Settings,
    title: str,
    version: str,
    summary: str,
    lifespan: Lifespan[FastAPI],
    description: str = "",
    request_models: Sequence[type[BaseModel]] = (),
) -> FastAPI:
    """A FastAPI app whose docs pages and OpenAPI description follow the rules above.

    Its routes read `settings` from `app.state.settings` (`sluice.http.auth.SettingsDep`).
    """
    app = FastAPIOffline(
        title=title,
        version=version,
        summary=summary,
        description=description,
        lifespan=lifespan,
        static_url=DOCS_ASSETS_URL,
        generate_unique_id_function=operation_id,
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    app.state.settings = settings
    generate = app.openapi  # FastAPI's own: cached, rebuilt when routes are added

    def openapi() -> dict[str, Any]:
        schema = generate()
        _finish(schema, request_models)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _finish(schema: dict[str, Any], request_models: Sequence[type[BaseModel]]) -> None:
    """Drops the 422 answers FastAPI adds, adds the forwarded bodies' models. Idempotent."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        components.pop(name, None)
    if not request_models:
        return
    _, top = models_json_schema(
        [(model, "validation") for model in request_models], ref_template=REF_PREFIX + "{model}"
    )
    for name, model_schema in top.get("$defs", {}).items():
        known = components.setdefault(name, model_schema)
        if known != model_schema:
            raise RuntimeError(f"two different schemas are both named {name!r}")
