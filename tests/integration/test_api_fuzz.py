"""The HTTP API fuzzed from its own OpenAPI schema: no 500s, every answer matches it.

The API runs as a real process against a real Redis and SFU, with no worker process: a
create that passes validation ends as `no_capacity` instead of dialling whatever endpoint
the fuzzer made up, so no traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from api.main import create_app
from sluice.config import Settings
from tests.conftest import free_port
from tests.integration.helpers import APP, BIN, SECRET, stack_env, wait_until

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_dict(
    create_app(Settings(apps=f"{APP}:{SECRET}")).openapi()
).include(path_regex="^/v1/apps/\\{appId\\}/adapters")


@pytest.fixture(scope="module")
def api_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = stack_env(redis_url, pickup_timeout_s=0.05, app_creates_per_s=0)
    api = subprocess.Popen(
        [str(BIN / "sluice"), "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(logs / "api.log", "ab"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 20, "the API")
        yield url
    finally:
        api.terminate()
        api.wait(timeout=10)
        print((logs / "api.log").read_text()[-4000:])


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_adapters_api_against_its_schema(case: schemathesis.Case, api_url: str) -> None:
    case.path_parameters = {**(case.path_parameters or {}), "appId": APP}
    response = case.call_and_validate(
        base_url=api_url,
        headers={"Authorization": f"Bearer {SECRET}"},
        excluded_checks=[
            # The schema cannot say every rule (an endpoint's host must parse): a
            # schema-valid body may still be refused, with a documented 4xx.
            positive_data_acceptance,
            # The contract answers 503 for `no_capacity` and `adapter_not_found`; those
            # are documented answers, checked against the schema like any other.
            not_a_server_error,
        ],
    )
    assert response.status_code != 500, response.text
