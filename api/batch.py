"""The contract's rule for batch answers (spec §2, step two)."""

from __future__ import annotations

from typing import Protocol, TypeVar

from sluice.errors import BATCH_STATUS


class _Result(Protocol):
    errorCode: str | None
    errorDescription: str | None


R = TypeVar("R", bound=_Result)


def batch_status(results: list[R]) -> tuple[int, R | None]:
    """200 when any item succeeded; otherwise the first failure's status and that failure."""
    if any(result.errorCode is None for result in results):
        return 200, None
    first = results[0]
    return BATCH_STATUS.get(str(first.errorCode), 500), first
