"""The event-loop lag histogram a pipeline keeps, and how it is stored in Redis.

Pipelines run in short-lived forked processes, so they cannot hold Prometheus metrics
themselves; each keeps cumulative bucket counts and saves them with its heartbeat as
`h_lag_*` fields, whose growth the store folds into cluster totals. Buckets are stored
non-cumulatively (one count per bucket) and made cumulative when rendered.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

# Upper bounds in microseconds: a pipeline's loop must not stall for a 20 ms frame.
BUCKET_BOUNDS_US = (1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000)
BUCKET_FIELDS = (*(f"h_lag_le_{b}" for b in BUCKET_BOUNDS_US), "h_lag_le_inf")
SUM_FIELD = "h_lag_sum_us"
COUNT_FIELD = "h_lag_count"


class LagHistogram:
    """Cumulative counts of lag samples per bucket, since the pipeline started."""

    def __init__(self) -> None:
        self.fields: dict[str, int] = dict.fromkeys((*BUCKET_FIELDS, SUM_FIELD, COUNT_FIELD), 0)

    def observe(self, lag_s: float) -> None:
        lag_us = max(0, round(lag_s * 1_000_000))
        self.fields[BUCKET_FIELDS[bisect.bisect_left(BUCKET_BOUNDS_US, lag_us)]] += 1
        self.fields[SUM_FIELD] += lag_us
        self.fields[COUNT_FIELD] += 1


def cumulative_buckets(bucket_counts: dict[str, int]) -> list[tuple[str, int]]:
    """Prometheus `le` buckets (seconds, cumulative) from stored per-bucket counts."""
    out: list[tuple[str, int]] = []
    total = 0
    for bound, name in zip((*BUCKET_BOUNDS_US, None), BUCKET_FIELDS, strict=True):
        total += bucket_counts.get(name, 0)
        out.append(("+Inf" if bound is None else repr(bound / 1_000_000), total))
    return out


def bucket_counts_ms(fields: Mapping[str, int]) -> list[tuple[float | None, int]]:
    """(upper bound in ms, or None for the last bucket; its samples) from stored fields."""
    bounds: tuple[float | None, ...] = (*(b / 1000 for b in BUCKET_BOUNDS_US), None)
    return [(bound, fields.get(name, 0)) for bound, name in zip(bounds, BUCKET_FIELDS, strict=True)]
