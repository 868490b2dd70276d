"""Bearer authentication of apps, shared by the adapters API and the sessions API."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sluice.config import Settings
from sluice.errors import AppNotFound, Unauthorized

# Dependencies are `async def` on purpose: FastAPI runs a plain `def` one in its thread
# pool, a thread hop per dependency per request for what is a dict lookup.


async def app_settings(request: Request) -> Settings:
    """The settings the app was built with (`sluice.http.openapi.new_app`)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(app_settings)]

# Declares the `HTTPBearer` security scheme (the docs page's Authorize button; client
# generators add the header). It never refuses by itself: `authorized_app` judges, so an
# unknown app is 404 before a bad secret is 401, both in the contract's error shape.
bearer = HTTPBearer(
    description="`Authorization: Bearer <app secret>`; apps and secrets come from SLUICE_APPS.",
    auto_error=False,
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def check_app(
    settings: Settings, app_id: str, credentials: HTTPAuthorizationCredentials | None
) -> str:
    """`app_id`, once the Bearer secret checks out.

    Raises:
        AppNotFound: the app is not configured (404).
        Unauthorized: no Bearer token, or the wrong one (401).
    """
    secret = settings.app_secrets.get(app_id)
    if secret is None:
        raise AppNotFound(f"app {app_id!r} does not exist")
    token = credentials.credentials if credentials is not None else ""
    # compare_digest: the time taken must not tell how much of the secret was right.
    if credentials is None or not hmac.compare_digest(token.encode(), secret.encode()):
        raise Unauthorized("missing or wrong Bearer token for this app")
    return app_id


async def authorized_app(
    settings: SettingsDep,
    app_id: Annotated[str, Path(alias="appId", description="The app, from SLUICE_APPS.")],
    credentials: BearerDep,
) -> str:
    """The request's app id, once its Bearer secret checks out (`check_app`)."""
    return check_app(settings, app_id, credentials)


AppDep = Annotated[str, Depends(authorized_app)]
