"""Turns FastAPI's validation failures into the contract's error codes.

Step one of every batch request: the whole body is judged before anything is looked up,
so one bad item rejects the request and nothing is created.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluice.errors import DecodingError, InvalidParams, SluiceError, TooManyTracks

# The body is not JSON of the expected shape at all (as opposed to a wrong field value).
_SHAPE_ERRORS = {"json_invalid", "model_type", "model_attributes_type", "dict_type", "list_type"}


def _where(loc: Sequence[Any]) -> str:
    path = ""
    for part in loc[1:]:  # loc[0] is "body"
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("IngestTrack", "EgressTrack", "local", "remote"):
            continue  # discriminated-union branch names are noise to a client
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def classify(errors: Sequence[dict[str, Any]]) -> SluiceError:
    """Picks the one error a client sees for a rejected body.

    Args:
        errors: `RequestValidationError.errors()`.
    """
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "too_long" and loc[-1:] == ("tracks",):
            return TooManyTracks(f"too many tracks in one request: {err.get('msg', '')}")
    for err in errors:
        loc = tuple(err.get("loc", ()))
        kind = err.get("type", "")
        shallow = len(loc) <= 2  # the body itself or its `tracks` key
        if kind == "json_invalid" or (shallow and (kind in _SHAPE_ERRORS or kind == "missing")):
            return DecodingError(
                f"body is not JSON of the expected shape: {_where(loc)}: "
                f"{err.get('msg', 'invalid')}"
            )
    first = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    return InvalidParams(f"{_where(loc)}: {first.get('msg', 'invalid value')}")
