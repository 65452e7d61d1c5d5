"""Arrow timestamp columns as integer epoch times, the unit the in-memory states keep."""

from __future__ import annotations

from typing import overload

import numpy as np
import pyarrow as pa

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


@overload
def epoch_ints(array: pa.ChunkedArray | pa.Array, unit: str) -> list[int | None]: ...


@overload
def epoch_ints(array: pa.ChunkedArray | pa.Array, unit: str, *, null: int) -> list[int]: ...


def epoch_ints(
    array: pa.ChunkedArray | pa.Array, unit: str, *, null: int | None = None
) -> list[int | None] | list[int]:
    """Timestamps (tz-aware, any unit) as integers in ``unit`` (``s``, ``ms``, ``us``, ``ns``); nulls
    become ``null`` (None unless given)."""
    have, want = _PER_SECOND[array.type.unit], _PER_SECOND[unit]
    raw = array.cast(pa.int64()).to_pylist()
    if want >= have:
        factor = want // have
        return [null if v is None else v * factor for v in raw]
    divisor = have // want
    return [null if v is None else v // divisor for v in raw]


def epoch_array(array: pa.ChunkedArray | pa.Array, unit: str) -> np.ndarray:
    """``epoch_ints`` as an int64 numpy array, for a column without nulls."""
    have, want = _PER_SECOND[array.type.unit], _PER_SECOND[unit]
    raw: np.ndarray = array.cast(pa.int64()).to_numpy()
    scaled: np.ndarray = raw * (want // have) if want >= have else raw // (have // want)
    return scaled
