"""The plots of docs/performance.md: the SVG writer, and the committed plots agree with
the committed results (regenerate with `python -m bench.plots`)."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import plots
from bench.__main__ import draw_plots
from bench.report import RESULTS_DIR
from bench.svg import (
    HEIGHT,
    MARGIN_BOTTOM,
    MARGIN_LEFT,
    MARGIN_TOP,
    WIDTH,
    Chart,
    Series,
    nice_ticks,
    render,
)

SVG = "{http://www.w3.org/2000/svg}"


def test_ticks_are_round_numbers_covering_the_range() -> None:
    assert nice_ticks(0, 50) == [0, 10, 20, 30, 40, 50]
    assert nice_ticks(0, 4.188) == [0, 1, 2, 3, 4, 5]
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-5, 5) == [-6, -4, -2, 0, 2, 4, 6]
    assert nice_ticks(3, 3) == [3, 3.2, 3.4, 3.6, 3.8, 4.0]  # an empty range still draws


def test_ecdf_rises_to_one_in_order() -> None:
    assert plots.ecdf([30.0, 10.0, None, 20.0, 40.0]) == [
        (10, 0.25),
        (20, 0.5),
        (30, 0.75),
        (40, 1.0),
    ]


def test_a_chart_draws_each_series_inside_its_axes() -> None:
    chart = Chart(
        title="late <frames> & more",
        x_label="adapters",
        y_label="late (%)",
        series=[
            Series("audio", [(10, 0.0), (20, 0.5), (30, 4.0)], markers=True),
            Series("clicks", [(5, 0.5), (15, 1.0)], step=True),
        ],
        rules=[(0.5, "threshold")],
    )
    root = ET.fromstring(render(chart))  # well-formed, text escaped
    assert root.find(f"{SVG}text").text == "late <frames> & more"  # type: ignore[union-attr]
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    vertices = [
        [tuple(map(float, p.split(","))) for p in line.get("points", "").split()] for line in lines
    ]
    assert len(vertices[0]) == 3 and len(vertices[1]) == 3  # the step adds one corner
    for x, y in (v for line in vertices for v in line):
        assert MARGIN_LEFT <= x <= WIDTH and MARGIN_TOP <= y <= HEIGHT - MARGIN_BOTTOM
    (x_a, y_a), (x_b, y_b), (x_c, y_c) = vertices[0]
    assert x_a < x_b < x_c and y_a > y_b > y_c  # more adapters, more late frames: up
    assert len(root.findall(f"{SVG}circle")) == 3  # markers on the ramp only
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"audio", "clicks", "threshold", "adapters", "late (%)"} <= set(texts)


def test_the_same_results_make_the_same_file() -> None:
    chart = Chart("t", "x", "y", [Series("s", [(1, 2), (3, 4)])])
    assert render(chart) == render(chart)
    assert not re.search(r"\d{4}-\d\d-\d\d|id=", render(chart))  # no dates, no ids


def test_the_committed_plots_are_drawn_from_the_committed_results(
    tmp_path: Path, repo_root: Path
) -> None:
    written = plots.write_plots(RESULTS_DIR, tmp_path)
    expected = {f"{name}.svg" for name in [*plots.PLOTS, *plots.COMPARISONS]}
    assert {p.name for p in written} == expected
    performance = (repo_root / "docs" / "performance.md").read_text()
    for path in written:
        committed = repo_root / "docs" / "img" / path.name
        assert committed.read_text() == path.read_text(), f"run python -m bench.plots: {path.name}"
        assert f"img/{path.name}" in performance, f"docs/performance.md shows {path.name}"


def test_a_run_elsewhere_draws_beside_its_results_and_skips_what_it_lacks(
    tmp_path: Path,
) -> None:
    shutil.copy(RESULTS_DIR / "capacity.json", tmp_path / "capacity.json")
    written = draw_plots(tmp_path)
    assert sorted(p.name for p in written) == ["capacity-cpu.svg", "capacity.svg"]
    assert all(p.parent == tmp_path / "img" for p in written)


@pytest.mark.parametrize("name", sorted(plots.PLOTS))
def test_each_plot_has_its_data(name: str) -> None:
    result_name, draw = plots.PLOTS[name]
    chart = draw(json.loads((RESULTS_DIR / f"{result_name}.json").read_text()))
    assert chart.series and all(len(series.points) >= 2 for series in chart.series)


@pytest.mark.parametrize("name", sorted(plots.COMPARISONS))
def test_each_comparison_has_both_sides(name: str) -> None:
    (before, after), kind = plots.COMPARISONS[name]
    loaded = [json.loads((RESULTS_DIR / f"{r}.json").read_text()) for r in (before, after)]
    chart = plots.capacity_before_after_chart(kind, *loaded)
    labels = {series.name.split(",")[0] for series in chart.series}
    assert labels == {"before", "after"}
    assert all(len(series.points) >= 2 for series in chart.series)
    assert all(y <= plots.LATE_CAP_PCT for series in chart.series for _, y in series.points)
