"""Every benchmark runs end to end in its smoke configuration and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import plots
from sluice.cli.devserver import redis_server_binary
from tests.conftest import NO_REDIS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(340),
    pytest.mark.skipif(redis_server_binary() is None, reason=NO_REDIS),
]

EXPECTED = {
    "latency": {"egress", "ingest", "ratios_median", "where", "config"},
    "cost": {"types", "where", "config"},
    "memory": {"curve", "steps", "where", "config"},
    "drift": {
        "drift_at_end_ms",
        "max_abs_deviation_ms",
        "frames_received",
        "frames_expected_from_wall",
        "click_latency_ms",
        "adapter_counters",
    },
    "capacity": {"kinds", "where", "config"},
    "control": {"idle", "filling", "full", "burst", "rate_worker_fail", "rate_api_refused"},
    "sfu": {"kinds", "where", "config"},
    "sfu_scale": {"forwarded_streams", "ratio", "ramps", "cascade", "where", "config"},
}


def test_every_bench_runs_quick(tmp_path: Path, repo_root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results-dir", str(tmp_path)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=420,  # sfu_scale starts two stacks of its own, memory one
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for name, keys in EXPECTED.items():
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["quick"] is True
        assert keys <= result.keys(), f"{name}: missing {keys - result.keys()}"
    latency = json.loads((tmp_path / "latency.json").read_text())
    for path in ("sluice", "sfu_tap", "bare_default", "bare_tap"):
        assert latency["egress"]["paths"][path]["latency_ms"]["n"] > 0, path
    for path in ("sluice_tap", "sluice_default"):
        assert latency["ingest"]["paths"][path]["latency_ms"]["n"] > 0, path
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert set(cost["types"]) == {
        *("egress_pcm", "ingest", "ingest_stereo", "ingest_pcm24k_mono", "ingest_mulaw8k"),
        *("jpeg_640x480", "jpeg_1280x720"),
    }
    for kind, r in cost["types"].items():
        assert r["cpu_pct_per_adapter"]["n"] == 2, kind
        assert r["pss_mib_per_adapter"]["mean"] > 0, kind
    assert cost["types"]["jpeg_640x480"]["jpeg_resolution"] == [640, 480]
    # The bare stack ran beside egress and ingest adapters, in both layouts.
    for kind in ("egress_pcm", "ingest"):
        bare = cost["types"][kind]["bare"]
        assert set(bare) == {"bare_per_process", "bare_shared"}, kind
        assert bare["bare_per_process"]["processes"] == 2, kind
        assert bare["bare_shared"]["streams_per_process"] == 2, kind
        for name, figures in bare.items():
            assert figures["cpu_pct_per_stream"]["max"] > 0, (kind, name)
    for name, figures in cost["types"]["egress_pcm"]["bare"].items():
        assert figures["messages_per_s_per_stream"]["n"] == 2, name
        assert figures["messages_per_s_per_stream"]["min"] > 0, name
    # The plots are drawn from this run's results, beside them (docs/img is left alone).
    assert {p.name for p in (tmp_path / "img").glob("*.svg")} == {
        f"{name}.svg" for name in plots.PLOTS
    }
    assert cost["types"]["jpeg_1280x720"]["jpeg_resolution"] == [1280, 720]
    assert "create_to_first_jpeg_ms" in cost["types"]["jpeg_640x480"]
    # An adapter's memory: the standby that took it sampled through its create, then
    # a standby's preparation step by step in a child of a host prepared as the pool's.
    memory = json.loads((tmp_path / "memory.json").read_text())
    assert memory["curve"]["samples"] > 10
    assert memory["curve"]["end_private_mib"] > memory["curve"]["standby_private_mib"] > 0
    assert [step[0].split("(")[0] for step in memory["steps"]["steps"]] == [
        *("forked", "PipelineProcess", "connect", "connect"),
    ]
    capacity = json.loads((tmp_path / "capacity.json").read_text())
    for kind in ("audio", "jpeg"):
        steps = capacity["kinds"][kind]["steps"]
        assert steps and steps[0]["frames_received"] > 0, kind
    control = json.loads((tmp_path / "control.json").read_text())
    assert control["idle"]["create_to_active_ms"]["n"] == 3
    assert control["full"]["close_ms"]["n"] > 0
    assert control["rate_api_refused"]["requests_per_s"] > 0
    sfu = json.loads((tmp_path / "sfu.json").read_text())
    for kind in ("audio", "video"):
        for forwarder in ("sluice", "media_relay"):
            r = sfu["kinds"][kind][forwarder]
            assert r["frames_per_s_per_subscriber"]["min"] > 0, (kind, forwarder)


def test_impaired_network_table_quick(tmp_path: Path, repo_root: Path) -> None:
    """`bench.impaired` (alone, not in `python -m bench`): every impairment, both paths."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.impaired", "--quick", "--results-dir", str(tmp_path)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(done.stdout)
    result = json.loads((tmp_path / "impaired.json").read_text())
    assert result["quick"] is True
    assert len(result["audio"]) == 5 and len(result["jpeg"]) == 2
    for kind in ("audio", "jpeg"):
        for label, case in result[kind].items():
            assert {"sluice", "bare"} <= case.keys(), f"{kind} {label}: {case}"
    failed = [name for name, ok in result["checks"].items() if not ok]
    assert not failed, done.stdout
    assert done.returncode == 0, done.stderr[-4000:]
    # The relay did impair: the lossy cases lost, the outage dropped, the jitter reordered.
    relays = {label: case["relay"]["sluice"] for label, case in result["audio"].items()}
    assert relays["10 % loss"]["lost"] > relays["2 % loss"]["lost"] > 0
    assert relays["300 ms outage every 10 s"]["outage"] >= 5
    assert relays["30 ± 20 ms jitter, reordering"]["reordered"] >= 10
