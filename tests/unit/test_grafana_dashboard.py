"""The Grafana dashboard in deploy/ stays importable and in step with the exported metrics.

Every query may name only metrics Sluice (or prometheus_client) exports, and every exported
metric has a panel, so renaming or adding a metric without touching the dashboard fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DASHBOARD = Path("deploy/grafana/sluice-dashboard.json")
PROMETHEUS_CONFIG = Path("deploy/prometheus.yml")

# Identical on every API replica (read from Redis): summing them over instances
# multiplies them.
CLUSTER_WIDE = (
    "sluice_adapters",
    "sluice_adapter_closes_total",
    "sluice_adapter_packets_total",
    "sluice_adapter_bytes_total",
    "sluice_adapter_backlog_dropped_total",
    "sluice_adapter_skipped_total",
    "sluice_adapter_reconnects_total",
    "sluice_adapter_resumes_total",
    "sluice_adapter_playout_underruns_total",
    "sluice_adapter_concealed_frames_total",
    "sluice_adapter_lost_frames_total",
    "sluice_adapter_cleared_seconds_total",
    "sluice_adapter_loop_lag_seconds",
    "sluice_workers",
    "sluice_queue_jobs",
    "sluice_webhook_deliveries_total",
    "sluice_webhook_pending",
    "sluice_webhook_failed",
)

# Every metric name the dashboard may use (histograms by their base name).
KNOWN_METRICS = (
    *CLUSTER_WIDE,
    # API process, per replica
    "sluice_api_creates_total",
    "sluice_api_closes_total",
    "sluice_adapter_create_seconds",
    # worker host
    "sluice_worker_processes",
    "sluice_worker_processes_configured",
    "sluice_worker_respawns_total",
    "sluice_reaper_lost_total",
    "sluice_reaper_withdrawn_total",
    "sluice_reaper_resumed_total",
    # SFU
    "sluice_sfu_sessions",
    "sluice_sfu_tracks",
    "sluice_sfu_subscribers",
    "sluice_sfu_rtp_packets_received_total",
    "sluice_sfu_rtp_packets_lost_total",
    "sluice_sfu_frames_forwarded_total",
    "sluice_sfu_session_closes_total",
    # prometheus_client, every process
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
)

HISTOGRAMS = ("sluice_adapter_loop_lag_seconds", "sluice_adapter_create_seconds")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])(?:sluice|process)_[a-z_]+")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    loaded = json.loads((root / DASHBOARD).read_text())
    assert isinstance(loaded, dict)
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield panel["title"], target["expr"]


def metric_names(expr: str) -> set[str]:
    names = set()
    for name in METRIC_NAME.findall(expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_identity_and_defaults(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "sluice-overview"
    assert dashboard["title"] == "Sluice"
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["time"] == {"from": "now-1h", "to": "now"}
    assert dashboard["refresh"] == "30s"


def test_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_panels_have_unique_ids_and_positions(dashboard: dict[str, Any]) -> None:
    panels = list(all_panels(dashboard["panels"]))
    assert panels
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys(), panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_panels_have_queries(dashboard: dict[str, Any]) -> None:
    for panel in all_panels(dashboard["panels"]):
        if panel["type"] in ("timeseries", "stat"):
            assert panel.get("targets"), panel["title"]
            assert all(target.get("expr") for target in panel["targets"]), panel["title"]


def test_queries_use_only_known_metrics(dashboard: dict[str, Any]) -> None:
    unknown = {
        (title, name)
        for title, expr in exprs(dashboard)
        for name in metric_names(expr)
        if name not in KNOWN_METRICS
    }
    assert not unknown, f"queries use metrics Sluice does not export: {sorted(unknown)}"


def test_every_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(expr) for _, expr in exprs(dashboard)))
    missing = [name for name in KNOWN_METRICS if name not in used]
    assert not missing, f"no panel shows {missing}"


def test_cluster_wide_metrics_are_not_summed_over_replicas(dashboard: dict[str, Any]) -> None:
    for title, expr in exprs(dashboard):
        if metric_names(expr) & set(CLUSTER_WIDE):
            assert "max" in expr, f"{title}: aggregate cluster-wide metrics with max: {expr}"


def test_metric_name_parsing() -> None:
    assert metric_names(
        "histogram_quantile(0.99, max by (le, direction) "
        '(rate(sluice_adapter_loop_lag_seconds_bucket{job="sluice-api"}[5m])))'
    ) == {"sluice_adapter_loop_lag_seconds"}
    assert metric_names("sluice_worker_processes_configured") == {
        "sluice_worker_processes_configured"
    }
    assert metric_names("rate(process_cpu_seconds_total[1m])") == {"process_cpu_seconds_total"}


def test_prometheus_sample_config() -> None:
    yaml = pytest.importorskip("yaml")
    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / PROMETHEUS_CONFIG).read_text())
    assert config["global"]["scrape_interval"] == "15s"
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "sluice-api": ["127.0.0.1:8080"],
        "sluice-sfu": ["127.0.0.1:8081"],
        "sluice-worker": ["127.0.0.1:8082"],
    }
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
