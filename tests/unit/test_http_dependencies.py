"""Every request of the API and the SFU solves its dependencies without extra work.

FastAPI runs a plain `def` dependency in its thread pool (a thread hop per dependency per
request), and once `app.dependency_overrides` holds anything it inspects every dependency's
signature again on every request. Both were in the path of every create and every
sessions call a pipeline makes (docs/performance.md, "create → active").
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from sfu.app import create_app as create_sfu_app
from sluice.cli.apps import create_api_app
from sluice.config import Settings

SETTINGS = Settings(apps="app1:secret1")


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(included.routes)  # newer FastAPI keeps routers whole


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _runs_in_the_loop(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004  (security schemes are instances)
    )


@pytest.mark.parametrize("make_app", [create_api_app, create_sfu_app], ids=["api", "sfu"])
def test_dependencies_run_in_the_event_loop_with_nothing_overridden(make_app: Any) -> None:
    app: FastAPI = make_app(SETTINGS)
    assert app.dependency_overrides == {}
    checked = 0
    for route in _api_routes(app.routes):
        for dependency in _dependencies(route.dependant):
            assert _runs_in_the_loop(dependency.call), (route.path, dependency.call)
            checked += 1
    assert checked > 10


def test_routes_read_the_settings_the_app_was_built_with() -> None:
    other = Settings(apps="app2:secret2")
    with TestClient(create_api_app(other)) as client:
        answer = client.get("/v1/apps/app1/adapters/websocket/x", headers={"Authorization": "x"})
        assert answer.json()["errorCode"] == "not_found_app_error"
