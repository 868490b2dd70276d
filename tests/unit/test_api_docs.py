"""The API describes itself: offline docs pages, clean operation ids, every route typed
with the statuses it can really give and the headers those answers carry.

Redis points at a closed port: the docs need none, and the routes that need it answer
503, which is one of the answers checked here.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sfu.app import create_app as create_sfu_app
from sluice.cli.apps import create_api_app
from sluice.config import Settings

AUTH = {"Authorization": "Bearer secret1"}
V1 = "/v1/apps/{appId}"
SESSION = f"{V1}/sessions/{{sessionId}}"

# (method, path) → operation id and every status the route can answer (traced in the
# routes, `api.batch`, `sluice.http.auth`, the body limit and the SFU's session code).
ROUTES: dict[tuple[str, str], tuple[str, set[int]]] = {
    ("post", f"{V1}/adapters/websocket/new"): (
        "createAdapters",
        {200, 400, 401, 404, 406, 413, 429, 500, 503},
    ),
    ("post", f"{V1}/adapters/websocket/close"): (
        "closeAdapters",
        {200, 400, 401, 404, 406, 413, 503},
    ),
    ("get", f"{V1}/adapters/websocket/{{adapterId}}"): ("getAdapter", {200, 401, 404, 503}),
    ("get", f"{V1}/usage"): ("getUsage", {200, 400, 401, 404, 503}),
    ("post", f"{V1}/sessions/new"): ("newSession", {201, 400, 401, 404, 413, 503}),
    ("post", f"{SESSION}/tracks/new"): ("newTracks", {200, 400, 401, 404, 406, 413, 503}),
    ("put", f"{SESSION}/renegotiate"): ("renegotiate", {200, 400, 401, 404, 413, 503}),
    ("put", f"{SESSION}/tracks/close"): ("closeTracks", {200, 400, 401, 404, 406, 413, 503}),
    ("get", SESSION): ("getSession", {200, 401, 404, 503}),
    ("get", "/healthz"): ("healthz", {200}),
    ("get", "/readyz"): ("readyz", {200, 503}),
}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = Settings(
        apps="app1:secret1",
        redis_url="redis://127.0.0.1:9/0",
        redis_timeout_s=0.5,
        sfu_url="http://127.0.0.1:9",
    )
    with TestClient(create_api_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def schema(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return dict(answer.json())


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.parametrize(
    ("page", "kinds"),
    [("/docs", {"javascript", "css", "png"}), ("/redoc", {"javascript", "png"})],
)
def test_docs_pages_load_only_assets_served_here(
    client: TestClient, page: str, kinds: set[str]
) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assert "://" not in html.text  # no CDN, no web fonts, no online validator
    parser = _Assets()
    parser.feed(html.text)
    assert parser.urls
    served = set()
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
        served |= {kind for kind in kinds if kind in asset.headers["content-type"]}
    assert served == kinds


def test_swagger_ui_has_authorize_and_no_online_validator(
    client: TestClient, schema: dict[str, Any]
) -> None:
    page = client.get("/docs").text
    assert '"validatorUrl": null' in page
    assert '"persistAuthorization": true' in page
    # Swagger UI shows Authorize for a declared scheme that operations require.
    (scheme,) = schema["components"]["securitySchemes"].values()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for (_, path), operation in operations(schema).items():
        expected = [{"HTTPBearer": []}] if path.startswith("/v1/") else None
        assert operation.get("security") == expected, path
        names = {p["name"].lower() for p in operation.get("parameters", [])}
        assert "authorization" not in names, path  # the scheme carries it, not a parameter


def test_operation_ids_are_clean_names(schema: dict[str, Any]) -> None:
    ids = {key: operation["operationId"] for key, operation in operations(schema).items()}
    assert ids == {key: operation_id for key, (operation_id, _) in ROUTES.items()}


def test_every_route_documents_exactly_the_statuses_it_can_give(schema: dict[str, Any]) -> None:
    for key, operation in operations(schema).items():
        documented = {int(status) for status in operation["responses"]}
        assert documented == ROUTES[key][1], key
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_every_answer_and_body_is_typed(schema: dict[str, Any]) -> None:
    schemas = schema["components"]["schemas"]
    for key, operation in operations(schema).items():
        for status, answer in operation["responses"].items():
            body = answer["content"]["application/json"]["schema"]
            assert body, (key, status)
            assert not answer["description"].startswith(("Successful", "Validation")), key
        if key[0] in ("post", "put"):
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            refs = [body.get("$ref")] + [part.get("$ref") for part in body.get("anyOf", [])]
            names = [ref.rpartition("/")[2] for ref in refs if ref]
            assert len(names) == 1 and names[0] in schemas, key
    for name in ("NewTracksRequest", "TrackRequest", "CloseTracksRequest", "SessionDescription"):
        assert schemas[name]["type"] == "object", name


def test_headers_are_documented_where_answers_carry_them(schema: dict[str, Any]) -> None:
    for key, operation in operations(schema).items():
        answers = operation["responses"]
        if "401" in answers:
            assert answers["401"]["headers"]["WWW-Authenticate"]["required"] is True, key
        if "429" in answers:
            assert answers["429"]["headers"]["Retry-After"]["required"] is True, key
        if "503" in answers and key[1] != "/readyz":
            assert "Retry-After" in answers["503"]["headers"], key


def test_401_says_how_to_authenticate(client: TestClient) -> None:
    answer = client.get("/v1/apps/app1/usage", headers={"Authorization": "Bearer wrong"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    answer = client.get("/v1/apps/app1/usage")
    assert (answer.status_code, answer.headers["WWW-Authenticate"]) == (401, "Bearer")


def test_transient_503s_say_when_to_retry(client: TestClient) -> None:
    redis_down = client.get("/v1/apps/app1/adapters/websocket/x", headers=AUTH)
    sfu_down = client.get("/v1/apps/app1/sessions/x", headers=AUTH)
    for answer in (redis_down, sfu_down):
        assert answer.status_code == 503
        assert answer.json()["errorCode"] == "service_unavailable"
        assert int(answer.headers["Retry-After"]) >= 1


def test_the_sfu_describes_the_sessions_routes_alike() -> None:
    sfu = create_sfu_app(Settings(apps="app1:secret1")).openapi()
    api = create_api_app(Settings(apps="app1:secret1")).openapi()
    for key, operation in operations(sfu).items():
        if not key[1].startswith("/v1/"):
            continue
        public = operations(api)[key]
        assert operation["operationId"] == public["operationId"]
        assert set(public["responses"]) - set(operation["responses"]) == {"503"}
        assert operation["security"] == [{"HTTPBearer": []}]
