"""The SFU process's HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from sluice import __version__


def create_app() -> FastAPI:
    app = FastAPI(title="Sluice SFU", version=__version__)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
