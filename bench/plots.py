"""Plots for docs/performance.md from the benchmarks' JSON: `python -m bench.plots`.

`python -m bench` runs this at its end; alone, it redraws the plots from results already
written (`--results-dir`, default `bench/results/`) without running anything. A result
that is missing is skipped. Output: SVG files (`bench.svg`), by default in `docs/img/`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR
from bench.svg import Chart, Series, render

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"

EGRESS_PATHS = {
    "sluice": "Sluice: SFU → adapter → endpoint",
    "sfu_tap": "the SFU's output, tapped",
    "bare_tap": "one bare aiortc hop, tapped",
    "bare_default": "one bare aiortc hop, default jitter buffer",
}
INGEST_PATHS = {
    "sluice_tap": "Sluice: adapter → SFU → subscriber, tapped",
    "sluice_default": "the same, subscriber's default receiver",
}
CAPACITY_KINDS = {"audio": "egress audio (PCM)", "jpeg": "JPEG from 640x480 VP8 30 fps"}


def ecdf(values: Sequence[float | None]) -> list[tuple[float, float]]:
    """The empirical distribution of the values measured (None: a click never detected):
    for each, the share of them at or below it."""
    ordered = sorted(value for value in values if value is not None)
    return [(value, (i + 1) / len(ordered)) for i, value in enumerate(ordered)]


def latency_chart(result: dict[str, Any], direction: str, names: dict[str, str]) -> Chart:
    paths = result[direction]["paths"]
    series = [
        Series(label, ecdf(paths[key]["per_click_ms"]), step=True)
        for key, label in names.items()
        if paths.get(key, {}).get("per_click_ms")
    ]
    clicks = max((len(s.points) for s in series), default=0)
    return Chart(
        title=f"{direction.capitalize()} latency per click ({clicks} clicks detected)",
        x_label="latency (ms)",
        y_label="share of clicks at or below",
        series=series,
        y_range=(0.0, 1.0),
    )


def capacity_chart(result: dict[str, Any]) -> Chart:
    config = result["config"]
    return Chart(
        title=f"Capacity ramp: frames late by more than {config['late_ms']:g} ms",
        x_label="adapters at once",
        y_label="frames late (%)",
        series=[
            Series(label, [(s["n"], s["late_pct"]) for s in kind["steps"]], markers=True)
            for key, label in CAPACITY_KINDS.items()
            if (kind := result["kinds"].get(key))
        ],
        rules=[
            (config["pass_below_late_pct"], f"passes below {config['pass_below_late_pct']:g} %")
        ],
    )


def capacity_cpu_chart(result: dict[str, Any]) -> Chart:
    steps = result["kinds"]["audio"]["steps"]
    cpus = result["config"].get("cpus", 2)
    parts = {
        "adapter processes (sum)": "cpu_pct_adapters_sum",
        "SFU": "cpu_pct_sfu",
        "bench (publisher, endpoints)": "cpu_pct_bench",
    }
    return Chart(
        title="Capacity ramp, egress audio: where the CPU goes",
        x_label="adapters at once",
        y_label="CPU (% of one core)",
        series=[
            Series(label, [(s["n"], s[key]) for s in steps], markers=True)
            for label, key in parts.items()
        ],
        rules=[(100.0 * cpus, f"{cpus} cores")],
    )


def drift_chart(result: dict[str, Any]) -> Chart:
    points = [(t, deviation) for t, deviation in result["median_deviation_every_10s_ms"]]
    span = max(5.0, *(abs(deviation) for _, deviation in points))
    return Chart(
        title=f"Ingest pacing over {result['seconds']:.0f} s: median deviation per 10 s",
        x_label="time since the first frame (s)",
        y_label="deviation from real time (ms)",
        series=[Series("frames at the subscriber", points, markers=True)],
        y_range=(-span, span),
    )


def _node_label(nodes: str) -> str:
    return f"{nodes} node" if nodes == "1" else f"{nodes} nodes"


def sfu_scale_late_chart(result: dict[str, Any]) -> Chart:
    """Late frames against forwarded streams, one node against two (first round of each);
    a ramp ends at its first failed step, so its last point is where it failed."""
    return Chart(
        title="SFU nodes: audio frames late by more than 100 ms",
        x_label="forwarded audio streams",
        y_label="frames late (%)",
        series=[
            Series(
                _node_label(nodes),
                [(s["n"], s["late_pct"]) for s in runs[0]["steps"]],
                markers=True,
            )
            for nodes, runs in result["ramps"].items()
        ],
    )


def sfu_scale_cpu_chart(result: dict[str, Any]) -> Chart:
    """CPU per node (mean over the nodes) against forwarded streams."""

    def per_node(step: dict[str, Any], nodes: str) -> float:
        busy: float = sum(c for name, c in step["cpu_pct"].items() if name.startswith("node"))
        return round(busy / int(nodes), 1)

    return Chart(
        title="SFU nodes: CPU per node",
        x_label="forwarded audio streams",
        y_label="CPU (% of one core)",
        series=[
            Series(
                _node_label(nodes),
                [(s["n"], per_node(s, nodes)) for s in runs[0]["steps"]],
                markers=True,
            )
            for nodes, runs in result["ramps"].items()
        ],
        rules=[(100.0, "one core")],
    )


def memory_chart(result: dict[str, Any]) -> Chart:
    """An adapter process's private memory and PSS from its standby to after its create:
    the create's first few hundred milliseconds, where it moves (the labels give the end)."""
    curve = result["curve"]
    answered = curve["answered_ms"]
    shown = max(3 * answered, 300.0)
    points = [p for p in curve["curve_ms_private_pss_mib"] if p[0] <= shown]
    points.append([shown, *points[-1][1:]])  # as it stood until the edge
    top = max(pss for _, _, pss in points)
    after = f"{result['config']['after_s']:g} s after the answer"
    return Chart(
        title="An egress PCM adapter's memory, from its standby to after its create",
        x_label="time since the create was sent (ms)",
        y_label="MiB",
        series=[
            Series(
                f"private (pages copied on write): {curve['end_private_mib']:.1f} MiB {after}",
                [(t, m) for t, m, _ in points],
            ),
            Series(f"PSS: {curve['end_pss_mib']:.1f} MiB {after}", [(t, p) for t, _, p in points]),
            Series(f"the create answered, {answered:.0f} ms", [(answered, 0), (answered, top)]),
        ],
        x_range=(min(t for t, _, _ in points), shown),
        y_range=(0.0, top * 1.1),
    )


LATE_CAP_PCT = 10.0  # a failing step's figure is drawn at most this high


def capacity_before_after_chart(kind: str, before: dict[str, Any], after: dict[str, Any]) -> Chart:
    """One kind's ramps of two capacity results, every run of each: `bench.capacity --name
    capacity-before` with the old settings, then `--name capacity-after`."""
    series = []
    for label, result in (("before", before), ("after", after)):
        for number, kinds in enumerate(result.get("runs") or [result["kinds"]], start=1):
            if steps := kinds.get(kind, {}).get("steps"):
                points = [(s["n"], min(LATE_CAP_PCT, s["late_pct"])) for s in steps]
                series.append(Series(f"{label}, run {number}", points, markers=True))
    pass_below = after["config"]["pass_below_late_pct"]
    return Chart(
        title=f"{CAPACITY_KINDS[kind]}, before and after: frames late by more than "
        f"{after['config']['late_ms']:g} ms (drawn at most {LATE_CAP_PCT:g} %)",
        x_label="adapters at once",
        y_label="frames late (%)",
        series=series,
        rules=[(pass_below, f"passes below {pass_below:g} %")],
        y_range=(0.0, LATE_CAP_PCT),
    )


# Plot file → (results it is drawn from, kind): drawn when all of them exist.
COMPARISONS: dict[str, tuple[tuple[str, str], str]] = {
    f"capacity-before-after-{kind}": (("capacity-before", "capacity-after"), kind)
    for kind in CAPACITY_KINDS
}
# The second round (eager receive, write_now, rehearsal): the first round's code against
# this one's, one after the other on a quiet machine.
COMPARISONS["capacity-round2-before-after-audio"] = (
    ("capacity-round2-before", "capacity-round2-after"),
    "audio",
)
# The fourth round (direct audio receive and send, the ingest encoder): the code at the
# start of the round against its end, one after the other on a quiet machine.
COMPARISONS["capacity-round4-before-after-audio"] = (
    ("capacity-round4-before", "capacity-round4-after"),
    "audio",
)
# The fifth round (JPEG egress): the code at the start of the round against its end, one
# after the other, two runs each.
COMPARISONS["capacity-round5-before-after-jpeg"] = (
    ("capacity-round5-before", "capacity-round5-after"),
    "jpeg",
)
# Pipelines at their usual priority ("before") against yielding the CPU (`--env
# SLUICE_PIPELINE_NICE=0` against the default), runs alternating.
COMPARISONS["capacity-round5-nice-audio"] = (
    ("capacity-round5-audio-nice0", "capacity-round5-audio-nice"),
    "audio",
)
# The sixth round, on another machine: the code at the start (`e3a50f6`) against
# this round's, one after the other on that machine (a ramp to 140 adapters).
COMPARISONS["capacity-round6-issue-start-now-audio"] = (
    ("capacity-round6-issue-start-1", "capacity-round6-now-1"),
    "audio",
)

# Plot file → (result it is drawn from, how).
PLOTS: dict[str, tuple[str, Callable[[dict[str, Any]], Chart]]] = {
    "latency-egress": ("latency", lambda r: latency_chart(r, "egress", EGRESS_PATHS)),
    "latency-ingest": ("latency", lambda r: latency_chart(r, "ingest", INGEST_PATHS)),
    "capacity": ("capacity", capacity_chart),
    "capacity-cpu": ("capacity", capacity_cpu_chart),
    "drift": ("drift", drift_chart),
    "memory": ("memory", memory_chart),
    "sfu-scale-late": ("sfu_scale", sfu_scale_late_chart),
    "sfu-scale-cpu": ("sfu_scale", sfu_scale_cpu_chart),
}


def write_plots(results_dir: Path = RESULTS_DIR, out_dir: Path = DOCS_IMG) -> list[Path]:
    """Draws every plot whose result exists; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, (result_name, draw) in PLOTS.items():
        source = results_dir / f"{result_name}.json"
        if not source.exists():
            continue
        path = out_dir / f"{name}.svg"
        path.write_text(render(draw(json.loads(source.read_text()))))
        written.append(path)
    for name, ((first, second), kind) in COMPARISONS.items():
        sources = [results_dir / f"{result_name}.json" for result_name in (first, second)]
        if all(source.exists() for source in sources):
            path = out_dir / f"{name}.svg"
            loaded = [json.loads(source.read_text()) for source in sources]
            path.write_text(render(capacity_before_after_chart(kind, *loaded)))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=DOCS_IMG, help="where the SVGs go")
    args = parser.parse_args(argv)
    for path in write_plots(args.results_dir, args.out):
        print(f"plot written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
