"""Dependencies of the adapters routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.service import AdapterService
from sluice.http.auth import AppDep, SettingsDep

__all__ = ["AppDep", "ServiceDep", "SettingsDep"]


async def get_service(request: Request) -> AdapterService:
    service: AdapterService = request.app.state.service
    return service


ServiceDep = Annotated[AdapterService, Depends(get_service)]
