"""The ASGI app `sluice api` serves, composed from its layers.

The control plane (`api.main`) knows nothing of the demo; the demo page and, in
development mode, its built-in endpoints are mounted here, beside it.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.main import create_app as create_control_plane
from sluice.config import Settings, get_settings
from sluice.demo import page, viewer


def create_api_app(settings: Settings | None = None) -> FastAPI:
    """The public API: the control plane, the demo page, and the demo's endpoints in dev."""
    settings = settings or get_settings()
    app = create_control_plane(settings)
    app.include_router(page.router)
    if settings.dev:  # the demo page's own endpoints; absent (404) in production
        app.include_router(viewer.router)
    return app
