"""Runs every benchmark on one shared stack: `python -m bench [--quick] [--only ...]`.

Each also runs alone (`python -m bench.latency`, `bench.cost`, `bench.memory`, `bench.drift`,
`bench.capacity`, `bench.control`, `bench.sfu`, `bench.sfu_scale`) with its own
options; here they take their defaults, or their smoke configuration with `--quick` —
except drift, which runs `DRIFT_SECONDS` here (600 s alone); the whole run takes about
half an hour on two cores, most of it `sfu_scale` and `capacity`. `capacity` starts its
own stack when its worker pool must be larger than the shared one, `memory` one of two
fresh worker processes, and `sfu_scale` its own stacks of one and two SFU nodes. The
shared stack lifts the app's create-rate limit (see `bench.control`).
`bench.resampler` (egress audio's soxr qualities, no stack), `bench.opus_encoder`
(ingest's Opus encode per frame, no stack), `bench.cost --formats`
(egress formats side by side), `bench.impaired` (media on an impaired network,
against bare aiortc; docs/reliability.md) and `bench.levers` (one setting or interpreter
A/B, two worker hosts on one stack) run only alone.
At the end the plots are drawn from the results (`bench.plots`): into `docs/img/`, or
beside the results when `--results-dir` is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import capacity, control, cost, drift, latency, memory, plots, sfu, sfu_scale
from bench.harness import progress, running_stack
from bench.report import RESULTS_DIR

BENCHES = {
    "latency": latency,
    "cost": cost,
    "memory": memory,
    "drift": drift,
    "capacity": capacity,
    "control": control,
    "sfu": sfu,
    "sfu_scale": sfu_scale,
}
DRIFT_SECONDS = 180


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run of every bench")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    common = ["--quick"] if args.quick else []
    if args.results_dir is not None:
        common += ["--results-dir", str(args.results_dir)]
    workers = 2 if args.quick else 10  # the cost bench runs 10 adapters at once
    with running_stack(workers=workers, settings=control.STACK_ENV) as stack:
        for name in chosen:
            started = time.monotonic()
            progress(f"bench {name}: start")
            extra = ["--seconds", str(DRIFT_SECONDS)] if name == "drift" and not args.quick else []
            BENCHES[name].main(common + extra, stack=stack)
            progress(f"bench {name}: done in {time.monotonic() - started:.0f} s")
    draw_plots(args.results_dir)
    return 0


def draw_plots(results_dir: Path | None) -> list[Path]:
    """The plots of docs/performance.md, or of a run written elsewhere, beside its results."""
    if results_dir is None:
        written = plots.write_plots(RESULTS_DIR, plots.DOCS_IMG)
    else:
        written = plots.write_plots(results_dir, results_dir / "img")
    for path in written:
        progress(f"plot written to {path}")
    return written


if __name__ == "__main__":
    sys.exit(main())
