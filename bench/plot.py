"""Plots of bench results as Mermaid `xychart-beta` blocks, which the docs embed as text.

python -m bench.plot [--results-dir DIR]    # prints the charts of sfu_scale.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR


def xychart(
    title: str, x_label: str, x: Sequence[int], y_label: str, lines: Mapping[str, Sequence[float]]
) -> str:
    """One chart; each line is named in the title's legend order (Mermaid has no legend)."""
    top = max((v for values in lines.values() for v in values), default=1.0)
    out = [
        "```mermaid",
        "xychart-beta",
        f'  title "{title} ({", ".join(lines)})"',
        f'  x-axis "{x_label}" [{", ".join(str(v) for v in x)}]',
        f'  y-axis "{y_label}" 0 --> {max(1, round(top * 1.1))}',
    ]
    out += [f"  line [{', '.join(f'{v:g}' for v in values)}]" for values in lines.values()]
    out.append("```")
    return "\n".join(out)


def sfu_scale_charts(result: Mapping[str, Any]) -> list[str]:
    """Late frames and CPU per node against forwarded streams, one node against two."""
    first = {nodes: runs[0]["steps"] for nodes, runs in result["ramps"].items()}
    x = [s["n"] for s in max(first.values(), key=len)]

    def padded(values: list[float]) -> list[float]:
        # A ramp stops at its first failed step: its line holds that step's value.
        return values + [values[-1]] * (len(x) - len(values))

    def name(nodes: str) -> str:
        return f"{nodes} node" if nodes == "1" else f"{nodes} nodes"

    late = {name(k): padded([s["late_pct"] for s in v]) for k, v in first.items()}
    cpu = {
        name(k): padded(
            [
                round(sum(c for n, c in s["cpu_pct"].items() if n.startswith("node")) / int(k), 1)
                for s in v
            ]
        )
        for k, v in first.items()
    }
    return [
        xychart("Late frames (> 100 ms), %", "forwarded audio streams", x, "% late", late),
        xychart("CPU % of one core, per node", "forwarded audio streams", x, "% of a core", cpu),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    result = json.loads((args.results_dir / "sfu_scale.json").read_text())
    print("\n\n".join(sfu_scale_charts(result)))


if __name__ == "__main__":
    main()
