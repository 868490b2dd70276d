"""How each route of the sessions API is described, once: for the SFU, which serves it,
and for the API, which forwards it (and adds its own 503).

Traced from `sfu.routes`, `sfu.session` and the shared handlers: bodies are judged by
FastAPI (`decoding_error`/`invalid_params`, 406 past 64 tracks) and by the session
(`InvalidParams`); `sluice.http.auth` gives 404 for an unknown app before 401; an unknown
or ended session is 404; the body limit is 413. The SFU's Redis writes never fail a
request (media must not depend on Redis), so it never answers 503 itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sluice.http.openapi import (
    TOO_LARGE,
    UNAUTHORIZED,
    UNKNOWN_APP,
    error,
    json_body,
    retry_after,
)
from sluice.http.sessions_models import (
    CloseTracksRequest,
    NewSessionRequest,
    NewSessionResponse,
    NewTracksRequest,
    RenegotiateRequest,
    SessionView,
    TracksResponse,
)

_UNKNOWN_SESSION = error(
    "Unknown app (`not_found_app_error`), or no open session of this app has this id "
    "(`not_found_session_error`)."
)
_TOO_MANY_TRACKS = error("More than 64 tracks in one request (`invalid_params`).")


def _bad_body(reasons: str) -> dict[str, Any]:
    return error(
        f"The body is not JSON of the expected shape (`decoding_error`), or {reasons} "
        "(`invalid_params`)."
    )


def _link(operation_id: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "parameters": {"appId": "$request.path.appId", "sessionId": "$response.body#/sessionId"},
    }


SFU_UNREACHABLE = error(
    "The SFU is unreachable or did not answer within 15 s (`service_unavailable`).",
    headers=retry_after(),
)


@dataclass(frozen=True)
class RouteDoc:
    """How one sessions route is described; `sfu()` and `forwarded()` are the keyword
    arguments of its `@router.<method>(...)` on the SFU and on the API."""

    summary: str
    description: str
    answer: str  # what the success answer holds
    answers: dict[int | str, Any]
    response_model: Any = None
    status_code: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True

    def sfu(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "description": self.description,
            "response_description": self.answer,
            "responses": self.answers,
            "response_model": self.response_model,
            "status_code": self.status_code,
        }

    def forwarded(self) -> dict[str, Any]:
        """The same route on the API, which passes the raw body on instead of parsing it."""
        extra = json_body(self.body, required=self.body_required) if self.body else None
        return {
            **self.sfu(),
            "responses": {**self.answers, 503: SFU_UNREACHABLE},
            "openapi_extra": extra,
        }


# Operation ids (the endpoints' names in camelCase) are the same on the SFU and the API.
NEW_SESSION = RouteDoc(
    summary="Create a session (one WebRTC connection), optionally with the client's offer",
    description="Without an offer the session has no media yet: push or pull tracks with "
    "`tracks/new`. A session without media for SLUICE_SFU_SESSION_IDLE_TIMEOUT_S (30 s) "
    "is closed.",
    answer="The new session, and with an offer the SFU's answer.",
    answers={
        201: {
            "links": {
                name: _link(name)
                for name in ("newTracks", "renegotiate", "closeTracks", "getSession")
            }
        },
        400: _bad_body(
            "a field has a wrong value: an SDP that is not an offer, or has a media section "
            "the SFU cannot take"
        ),
        401: UNAUTHORIZED,
        404: UNKNOWN_APP,
        413: TOO_LARGE,
    },
    response_model=NewSessionResponse,
    status_code=201,
    body=NewSessionRequest,
    body_required=False,
)
NEW_TRACKS = RouteDoc(
    summary="Push and/or pull tracks",
    description="Push: the offer's `sendonly`/`sendrecv` sections become tracks named "
    "`trackName` (every new section with `autoDiscover`), published at answer time. Pull "
    "(`location: remote`): without an offer the SFU makes one "
    "(`requiresImmediateRenegotiation: true`; answer it with `renegotiate`); with the "
    "client's `recvonly` offer it answers. Up to 64 tracks.",
    answer="One result per track, in request order; a pulled track that does not exist "
    "carries `errorCode: not_found_track_error` and the others proceed.",
    answers={
        400: _bad_body(
            "a field has a wrong value: the request names no `tracks`, `autoDiscover` or "
            "`sessionDescription`; a local track's `mid` is not in the offer or its "
            "`trackName` exists; a pulled track has no `sessionId`; the offer cannot be used"
        ),
        401: UNAUTHORIZED,
        404: _UNKNOWN_SESSION,
        406: _TOO_MANY_TRACKS,
        413: TOO_LARGE,
    },
    response_model=TracksResponse,
    body=NewTracksRequest,
)
RENEGOTIATE = RouteDoc(
    summary="Answer the SFU's offer",
    description="The client's answer to the offer a `tracks/new` or `tracks/close` answer "
    "carried with `requiresImmediateRenegotiation: true`.",
    answer="The answer is applied: `{}`.",
    answers={
        200: {"content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}}},
        400: _bad_body(
            "a field has a wrong value: there is no SFU offer to answer, or the answer cannot "
            "be used"
        ),
        401: UNAUTHORIZED,
        404: _UNKNOWN_SESSION,
        413: TOO_LARGE,
    },
    body=RenegotiateRequest,
)
CLOSE_TRACKS = RouteDoc(
    summary="Close tracks: a pushed one ends for every subscriber and egress adapter",
    description="Closed tracks show `status: inactive`. With the client's offer the SFU "
    "answers it; with `force` nothing is renegotiated; otherwise the SFU makes an offer "
    "to answer with `renegotiate`.",
    answer="The closed tracks, in request order.",
    answers={
        400: _bad_body(
            "a field has a wrong value: a `mid` names no track of this session, or the offer "
            "cannot be used"
        ),
        401: UNAUTHORIZED,
        404: _UNKNOWN_SESSION,
        406: _TOO_MANY_TRACKS,
        413: TOO_LARGE,
    },
    response_model=TracksResponse,
    body=CloseTracksRequest,
)
GET_SESSION = RouteDoc(
    summary="A session's tracks and their status",
    description="Pushed (`local`) and pulled (`remote`) tracks, closed ones included.",
    answer="The session's tracks.",
    answers={401: UNAUTHORIZED, 404: _UNKNOWN_SESSION},
    response_model=SessionView,
)
