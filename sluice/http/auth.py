"""Bearer authentication of apps, shared by the adapters API and the sessions API."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Path

from sluice.config import Settings, get_settings
from sluice.errors import AppNotFound, Unauthorized

SettingsDep = Annotated[Settings, Depends(get_settings)]


def authorized_app(
    settings: SettingsDep,
    app_id: Annotated[str, Path(alias="appId", description="The app, from SLUICE_APPS.")],
    authorization: Annotated[str | None, Header(description="`Bearer <app secret>`")] = None,
) -> str:
    """The request's app id, once its Bearer secret checks out.

    Raises:
        AppNotFound: the app is not configured (404).
        Unauthorized: no Bearer token, or the wrong one (401).
    """
    secret = settings.app_secrets.get(app_id)
    if secret is None:
        raise AppNotFound(f"app {app_id!r} does not exist")
    scheme, _, token = (authorization or "").partition(" ")
    # compare_digest: the time taken must not tell how much of the secret was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), secret.encode()
    ):
        raise Unauthorized("missing or wrong Bearer token for this app")
    return app_id


AppDep = Annotated[str, Depends(authorized_app)]
