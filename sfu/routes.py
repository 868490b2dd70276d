"""The sessions API routes; the logic lives in `sfu.session` and `sfu.manager`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request

from sfu.manager import SessionManager
from sfu.session import Session
from sluice.http.auth import AppDep
from sluice.http.sessions_models import (
    CloseTracksRequest,
    NewSessionRequest,
    NewSessionResponse,
    NewTracksRequest,
    RenegotiateRequest,
    SessionView,
    TracksResponse,
)


def get_manager(request: Request) -> SessionManager:
    manager: SessionManager = request.app.state.sessions
    return manager


ManagerDep = Annotated[SessionManager, Depends(get_manager)]


def get_session(
    app_id: AppDep,
    manager: ManagerDep,
    session_id: Annotated[str, Path(alias="sessionId")],
) -> Session:
    return manager.get(app_id, session_id)


SessionDep = Annotated[Session, Depends(get_session)]

_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "invalid body (`decoding_error`, `invalid_params`)"},
    401: {"description": "missing or wrong Bearer token"},
    404: {"description": "unknown app or session (`not_found_session_error`)"},
    406: {"description": "more than 64 tracks in one request"},
    413: {"description": "body too large"},
}

router = APIRouter(prefix="/v1/apps/{appId}/sessions", tags=["sessions"], responses=_ERRORS)


@router.post(
    "/new",
    status_code=201,
    response_model_exclude_none=True,
    summary="Create a session, optionally with the client's first offer",
)
async def new_session(
    app_id: AppDep,
    manager: ManagerDep,
    body: Annotated[NewSessionRequest | None, Body()] = None,
) -> NewSessionResponse:
    session = await manager.create(app_id)
    offer = body.sessionDescription if body is not None else None
    try:
        answer = await session.start(offer)
    except BaseException:
        await manager.close(session, "bad_first_offer")
        raise
    return NewSessionResponse(sessionId=session.id, sessionDescription=answer)


@router.post(
    "/{sessionId}/tracks/new",
    response_model_exclude_none=True,
    summary="Push and/or pull tracks",
)
async def new_tracks(session: SessionDep, body: NewTracksRequest) -> TracksResponse:
    return await session.new_tracks(body)


@router.put("/{sessionId}/renegotiate", summary="Answer the SFU's offer")
async def renegotiate(session: SessionDep, body: RenegotiateRequest) -> dict[str, str]:
    await session.renegotiate(body.sessionDescription)
    return {}


@router.put(
    "/{sessionId}/tracks/close",
    response_model_exclude_none=True,
    summary="Close tracks: pushed ones end for every subscriber",
)
async def close_tracks(session: SessionDep, body: CloseTracksRequest) -> TracksResponse:
    return await session.close_tracks(body)


@router.get("/{sessionId}", summary="A session's tracks and their status")
async def get_session_view(session: SessionDep) -> SessionView:
    return session.view()
