"""The demo page at `/` (and its icon): publish mic and camera, pull any track, drive the
adapters.

Served in every mode; only in development mode does it come with the `demo` app's
credentials filled in.
"""

from __future__ import annotations

import html
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from sluice.config import DEV_APP_ID, DEV_APP_SECRET
from sluice.http.auth import SettingsDep

router = APIRouter()


@router.get("/", include_in_schema=False)
async def demo_page(settings: SettingsDep) -> HTMLResponse:
    """Publish mic and camera, pull any track: a plain page, no build step."""
    page = resources.files("sluice.demo").joinpath("static/demo.html").read_text(encoding="utf-8")
    app_id, secret = (DEV_APP_ID, DEV_APP_SECRET) if settings.dev else ("", "")
    page = page.replace("{{APP_ID}}", html.escape(app_id)).replace(
        "{{APP_SECRET}}", html.escape(secret)
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """The page's icon; browsers ask for it on any page of the API's host."""
    icon = resources.files("sluice.demo").joinpath("static/favicon.ico").read_bytes()
    return Response(icon, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})
