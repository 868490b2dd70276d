"""The sessions API routes; the logic lives in `sfu.session` and `sfu.manager`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request

from sfu.manager import SessionManager
from sfu.session import Session
from sluice.http import sessions_docs as docs
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


async def get_manager(request: Request) -> SessionManager:
    manager: SessionManager = request.app.state.sessions
    return manager


ManagerDep = Annotated[SessionManager, Depends(get_manager)]


async def find_session(
    app_id: AppDep,
    manager: ManagerDep,
    session_id: Annotated[str, Path(alias="sessionId")],
) -> Session:
    return manager.get(app_id, session_id)


SessionDep = Annotated[Session, Depends(find_session)]

router = APIRouter(prefix="/v1/apps/{appId}/sessions", tags=["sessions"])


@router.post("/new", response_model_exclude_none=True, **docs.NEW_SESSION.sfu())
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


@router.post("/{sessionId}/tracks/new", response_model_exclude_none=True, **docs.NEW_TRACKS.sfu())
async def new_tracks(session: SessionDep, body: NewTracksRequest) -> TracksResponse:
    return await session.new_tracks(body)


@router.put("/{sessionId}/renegotiate", **docs.RENEGOTIATE.sfu())
async def renegotiate(session: SessionDep, body: RenegotiateRequest) -> dict[str, str]:
    await session.renegotiate(body.sessionDescription)
    return {}


@router.put(
    "/{sessionId}/tracks/close", response_model_exclude_none=True, **docs.CLOSE_TRACKS.sfu()
)
async def close_tracks(session: SessionDep, body: CloseTracksRequest) -> TracksResponse:
    return await session.close_tracks(body)


@router.get("/{sessionId}", **docs.GET_SESSION.sfu())
async def get_session(session: SessionDep) -> SessionView:
    return session.view()
