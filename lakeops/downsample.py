"""Downsampling a metric's history for charts: at most N points that draw like all of them.

A chart is a few hundred to a few thousand pixels wide, a history can hold millions of points.
``downsample`` splits the step range into ``points // 2`` equal-width buckets and keeps, from each,
the point with the smallest and the point with the largest value (the min/max or "M4-lite" method),
plus the first and last point of the range. Drawn as a line, the result covers exactly the pixels
the full series would (every spike survives, unlike averaging or taking every k-th point), and
every point returned is a real logged point (step, timestamp, value), never an interpolation.
Zooming in asks again with ``min_step``/``max_step``: a narrow enough range comes back in full.

Non-finite values (NaN, ±inf) cannot be drawn: they are left out of the buckets and counted.

Written here rather than taken from a library: the algorithm is twenty lines of vectorised numpy
over the Arrow columns we already hold (O(n), no sort), and the downsampling libraries on PyPI
(``tsdownsample``, ``lttb``) would add a compiled dependency for one call site.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lakeops.errors import InvalidArgumentError

MIN_POINTS = 4
MAX_POINTS = 100_000


@dataclass(frozen=True, slots=True)
class Downsampled:
    """A downsampled history: ``table`` (step, timestamp, value; ordered by step) and what it stands for."""

    table: pa.Table
    points_in_range: int  # finite points of the full history within [min_step, max_step]
    non_finite: int  # NaN and ±inf points in the range, left out
    min_step: int | None  # the range covered (None: the history is empty)
    max_step: int | None

    @property
    def is_downsampled(self) -> bool:
        """Whether points were left out (else the table is the full history of the range)."""
        return bool(self.table.num_rows < self.points_in_range)


def downsample(
    history: pa.Table, points: int, *, min_step: int | None = None, max_step: int | None = None
) -> Downsampled:
    """At most ``points`` points of ``history`` (step, timestamp, value; ordered by step) within the steps.

    Raises:
        InvalidArgumentError: ``points`` is outside [4, 100000] or ``min_step`` > ``max_step``.
    """
    if not MIN_POINTS <= points <= MAX_POINTS:
        raise InvalidArgumentError(f"points must be between {MIN_POINTS} and {MAX_POINTS}, got {points}")
    if min_step is not None and max_step is not None and min_step > max_step:
        raise InvalidArgumentError(f"min_step ({min_step}) is greater than max_step ({max_step})")
    steps = history.column("step").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    values = history.column("value").to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    keep = np.ones(len(steps), dtype=bool)
    if min_step is not None:
        keep &= steps >= min_step
    if max_step is not None:
        keep &= steps <= max_step
    in_range = int(keep.sum())
    finite = keep & np.isfinite(values)
    rows = np.flatnonzero(finite)
    non_finite = in_range - len(rows)
    if len(rows) <= points:
        chosen = rows
    else:
        chosen = _min_max_buckets(steps[rows], values[rows], buckets=(points - 2) // 2)
        chosen = rows[chosen]
    table = history.select(["step", "timestamp", "value"]).take(pa.array(chosen, type=pa.int64()))
    first = int(steps[rows[0]]) if len(rows) else None
    last = int(steps[rows[-1]]) if len(rows) else None
    return Downsampled(table, points_in_range=len(rows), non_finite=non_finite, min_step=first, max_step=last)


def _min_max_buckets(steps: np.ndarray, values: np.ndarray, *, buckets: int) -> np.ndarray:
    """Indices (ascending) of each bucket's min and max value, and of the first and last point."""
    span = float(steps[-1] - steps[0]) + 1.0
    bucket = np.minimum(((steps - steps[0]) / span * buckets).astype(np.int64), buckets - 1)
    # Steps are ordered, so each bucket is one contiguous run of rows starting where the bucket changes.
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    lows = np.minimum.reduceat(values, starts)
    highs = np.maximum.reduceat(values, starts)
    owner = np.repeat(np.arange(len(starts)), sizes)
    picked = [np.array([0, len(values) - 1])]
    for extreme in (lows, highs):
        hits = np.flatnonzero(values == extreme[owner])
        first_hit = np.r_[True, owner[hits][1:] != owner[hits][:-1]]  # the first hit of each bucket
        picked.append(hits[first_hit])
    return np.unique(np.concatenate(picked))
