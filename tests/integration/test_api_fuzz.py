"""The public HTTP API fuzzed from its own OpenAPI schema: no 500s, every answer matches it.

The API and the SFU run as real processes against a real Redis, with no worker process:
a create that passes validation ends as `no_capacity` instead of dialling whatever
endpoint the fuzzer made up, so no traffic leaves 127.0.0.1. The sessions routes go
through the API to the SFU, half of the time for a session that exists, so that bodies
are judged by a live session and not only refused as `not_found_session_error`.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from api.main import create_app
from sluice.cli.devserver import answers_healthz
from sluice.config import Settings
from sluice.errors import error_headers
from tests.conftest import free_port
from tests.integration.helpers import APP, SECRET, spawn, stack_env, wait_until

pytestmark = pytest.mark.integration

# A request the schema says is wrong must be refused with one of the contract's 4xx (413
# included: the body limit comes first). 5xx is no refusal.
# The secret goes through the schema's security scheme, so that schemathesis knows when a
# case leaves it out on purpose (and expects a 401).
CONFIG = SchemathesisConfig.from_dict(
    {
        "auth": {"openapi": {"HTTPBearer": {"bearer": SECRET}}},
        "checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 406, 413]}},
    }
)
schema = schemathesis.openapi.from_dict(
    create_app(Settings(apps=f"{APP}:{SECRET}")).openapi(), config=CONFIG
)
AUTH = {"Authorization": f"Bearer {SECRET}"}


@pytest.fixture(scope="module")
def api_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("fuzz")
    port, sfu_port = free_port(), free_port()
    sfu_url = f"http://127.0.0.1:{sfu_port}"
    env = stack_env(
        redis_url,
        sfu_url=sfu_url,
        pickup_timeout_s=0.05,
        app_creates_per_s=0,
        sfu_session_idle_timeout_s=3600,  # the fuzzer's session must outlive the test
    )
    processes = [spawn("sfu", sfu_port, env, logs / "sfu.log")]
    processes.append(spawn("api", port, env, logs / "api.log"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers_healthz(url), 20, "the API")
        wait_until(lambda: answers_healthz(sfu_url), 20, "the SFU")
        yield url
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        for name in ("api.log", "sfu.log"):
            print(f"--- {name}\n{(logs / name).read_text()[-4000:]}")


@pytest.fixture(scope="module")
def session_id(api_url: str) -> str:
    answer = httpx.post(f"{api_url}/v1/apps/{APP}/sessions/new", headers=AUTH, timeout=10)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["sessionId"])


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_public_api_against_its_schema(
    case: schemathesis.Case, api_url: str, session_id: str
) -> None:
    params = {**(case.path_parameters or {}), "appId": APP}
    if len(params.get("sessionId", "")) % 2:  # odd lengths: a live session instead
        params["sessionId"] = session_id
    case.path_parameters = params
    response = case.call_and_validate(
        base_url=api_url,
        excluded_checks=[
            # The schema cannot say every rule (an endpoint's host must parse, an SDP
            # must be one): a schema-valid body may still be refused, with a documented 4xx.
            positive_data_acceptance,
            # The contract answers 503 for `no_capacity` and `adapter_not_found`; those
            # are documented answers, checked against the schema like any other.
            not_a_server_error,
        ],
    )
    assert response.status_code != 500, response.text
    # The headers an error code calls for are there, also where the schema cannot
    # require them (a 503 carries `Retry-After` for `no_capacity` but not for a refused
    # WebSocket handshake).
    code = response.json().get("errorCode") if response.status_code >= 400 else None
    for name, value in error_headers(code or "").items():
        assert response.headers.get(name.lower()) == [value], (code, response.headers)
