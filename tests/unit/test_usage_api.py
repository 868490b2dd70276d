"""`GET /v1/apps/{appId}/usage` and `GET /metrics` of the API, on fakeredis.

Only what the API reads and renders: how the counters get there is `tests/state`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import fakeredis
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sluice.config import Settings
from sluice.state import keys
from sluice.state.usage import hour_of, hours_covering, read_usage
from tests.unit.fake_api import api_client

AUTH = {"Authorization": "Bearer secret1"}
HOUR = hour_of(datetime(2026, 11, 25, 10, tzinfo=UTC))
NO_SFU = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def settings() -> Settings:
    return Settings(apps="app1:secret1,app2:secret2", sfu_url=NO_SFU)


@pytest.fixture
def client(
    settings: Settings, server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    with api_client(settings, server, monkeypatch) as test_client:
        yield test_client


@pytest.fixture
def conn(server: fakeredis.FakeServer) -> redis.Redis:
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def usage(conn: redis.Redis) -> None:
    conn.hset(keys.usage("app1", HOUR), mapping={"egress_bytes": 1000, "ingest_bytes": 10})
    conn.hset(keys.usage("app1", HOUR + 2), mapping={"egress_bytes": 500})
    conn.hset(keys.usage("app2", HOUR), mapping={"egress_bytes": 7})


@pytest.mark.usefixtures("usage")
def test_usage_sums_the_hours_in_range(client: TestClient) -> None:
    resp = client.get(
        "/v1/apps/app1/usage",
        params={"from": "2026-11-25T10:15:00Z", "to": "2026-11-25T13:00:00Z"},
        headers=AUTH,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "appId": "app1",
        "from": "2026-11-25T10:00:00Z",
        "to": "2026-11-25T13:00:00Z",
        "egressBytes": 1500,
        "ingestBytes": 10,
        "hours": [
            {"hour": "2026-11-25T10:00:00Z", "egressBytes": 1000, "ingestBytes": 10},
            {"hour": "2026-11-25T12:00:00Z", "egressBytes": 500, "ingestBytes": 0},
        ],
    }
    narrow = client.get(
        "/v1/apps/app1/usage",
        params={"from": "2026-11-25T11:00:00", "to": "2026-11-25T12:00:00"},  # naive: UTC
        headers=AUTH,
    ).json()
    assert (narrow["egressBytes"], narrow["hours"]) == (0, [])


@pytest.mark.usefixtures("usage")
def test_usage_is_per_app(client: TestClient) -> None:
    params = {"from": "2026-11-25T00:00:00Z", "to": "2026-11-26T00:00:00Z"}
    other = client.get("/v1/apps/app2/usage", params=params, headers=AUTH)
    assert other.status_code == 401  # app1's secret does not open app2
    own = client.get(
        "/v1/apps/app2/usage", params=params, headers={"Authorization": "Bearer secret2"}
    )
    assert own.json()["egressBytes"] == 7


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-11-25T10:00:00Z", "to": "2026-11-25T09:00:00Z"}, "before"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "31 days"),
    ],
)
def test_bad_ranges_are_invalid_params(
    client: TestClient, params: dict[str, str], fragment: str
) -> None:
    resp = client.get("/v1/apps/app1/usage", params=params, headers=AUTH)
    assert resp.status_code == 400
    assert resp.json()["errorCode"] == "invalid_params"
    assert fragment in resp.json()["errorDescription"]


def test_default_range_is_the_last_day(client: TestClient) -> None:
    body = client.get("/v1/apps/app1/usage", headers=AUTH).json()
    start = datetime.fromisoformat(body["from"])
    end = datetime.fromisoformat(body["to"])
    assert 24 * 3600 <= (end - start).total_seconds() <= 25 * 3600
    assert end >= datetime.now(UTC)


def test_metrics_render_cluster_totals(client: TestClient, conn: redis.Redis) -> None:
    conn.hset(keys.METRICS, mapping={"egress|c_bytes": 1234, "closes|ingest|worker_lost": 2})
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }
    assert samples[("sluice_adapter_bytes_total", (("direction", "egress"),))] == 1234
    assert samples[("sluice_adapter_bytes_total", (("direction", "ingest"),))] == 0
    key = ("sluice_adapter_closes_total", (("direction", "ingest"), ("reason", "worker_lost")))
    assert samples[key] == 2
    assert ("sluice_queue_jobs", ()) in samples
    assert samples[("sluice_adapters", (("direction", "egress"), ("state", "active")))] == 0
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)


def test_readyz_says_what_is_missing(client: TestClient) -> None:
    resp = client.get("/readyz")  # Redis is up; no worker runs, no SFU listens here
    assert resp.status_code == 503
    checks = resp.json()["checks"]
    assert checks["redis"] == "ok"
    assert "no worker" in checks["workers"]
    assert checks["sfu"] != "ok"


def test_hours_covering_counts_partial_hours_whole() -> None:
    start = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    end = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    hours = hours_covering(start, end)
    assert [hour_of(datetime(2026, 11, 25, h, tzinfo=UTC)) for h in (10, 11)] == list(hours)
    assert list(hours_covering(end, end)) == []


async def test_read_usage_skips_empty_hours(server: fakeredis.FakeServer) -> None:
    store = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    await store.hset(keys.usage("app1", 1000), "egress_bytes", 5)
    await store.hset(keys.usage("app1", 1002), "ingest_bytes", 7)
    await store.hset(keys.usage("app2", 1001), "egress_bytes", 9)  # another app's
    used = await read_usage(store, "app1", range(999, 1004))
    assert [(u.hour, u.egress_bytes, u.ingest_bytes) for u in used] == [
        (1000, 5, 0),
        (1002, 0, 7),
    ]
    await store.aclose()
