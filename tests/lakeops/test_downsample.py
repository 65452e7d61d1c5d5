"""Downsampling a metric history for charts: bounded size, real points, spikes kept, ranges."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from lakeops.downsample import downsample
from lakeops.errors import InvalidArgumentError


def _history(values: list[float] | np.ndarray, steps: list[int] | np.ndarray | None = None) -> pa.Table:
    values = np.asarray(values, dtype=np.float64)
    steps = np.arange(len(values)) if steps is None else np.asarray(steps)
    return pa.table(
        {"step": pa.array(steps, pa.int64()), "timestamp": pa.array(steps * 10, pa.int64()), "value": values}
    )


def test_short_history_comes_back_whole() -> None:
    result = downsample(_history([3.0, 1.0, 2.0]), 100)
    assert result.table.column("value").to_pylist() == [3.0, 1.0, 2.0]
    assert not result.is_downsampled
    assert (result.min_step, result.max_step, result.points_in_range) == (0, 2, 3)


def test_a_million_points_keep_every_spike_and_only_real_points() -> None:
    rng = np.random.default_rng(7)
    values = np.sin(np.arange(1_000_000) / 5000) + rng.normal(0, 0.01, 1_000_000)
    values[654_321] = 40.0  # one spike up, one down: averaging or striding would lose them
    values[123_457] = -40.0
    history = _history(values)
    result = downsample(history, 1000)
    assert result.is_downsampled
    assert result.table.num_rows <= 1000
    steps = result.table.column("step").to_numpy()
    assert np.all(np.diff(steps) > 0)  # ordered by step, no duplicates
    assert {123_457, 654_321} <= set(steps.tolist())
    assert steps[0] == 0 and steps[-1] == 999_999  # the ends of the range are kept
    chosen = result.table.column("value").to_numpy()
    np.testing.assert_array_equal(chosen, values[steps])  # real points, never interpolated
    assert result.table.column("timestamp").to_pylist() == (steps * 10).tolist()
    assert chosen.max() == values.max() and chosen.min() == values.min()


def test_a_step_range_returns_full_resolution_when_it_fits() -> None:
    history = _history(np.arange(100_000, dtype=float))
    result = downsample(history, 1000, min_step=50_000, max_step=50_499)
    assert result.table.column("step").to_pylist() == list(range(50_000, 50_500))
    assert result.points_in_range == 500 and not result.is_downsampled


def test_uneven_steps_bucket_by_step_not_by_row() -> None:
    # 10,000 points crowded in steps 0..9,999 and 10 points spread to step 1,000,000: the sparse tail keeps its own buckets.
    steps = list(range(10_000)) + [100_000 * k for k in range(1, 11)]
    result = downsample(_history([float(s % 7) for s in steps], steps), 100)
    kept = result.table.column("step").to_pylist()
    assert len(kept) <= 100
    assert sum(s > 10_000 for s in kept) >= 8


def test_non_finite_values_are_left_out_and_counted() -> None:
    result = downsample(_history([1.0, math.nan, math.inf, -math.inf, 2.0]), 10)
    assert result.table.column("value").to_pylist() == [1.0, 2.0]
    assert result.non_finite == 3 and result.points_in_range == 2


def test_empty_history_and_empty_range() -> None:
    empty = downsample(_history([]), 10)
    assert empty.table.num_rows == 0 and empty.min_step is None
    outside = downsample(_history([1.0, 2.0]), 10, min_step=5)
    assert outside.table.num_rows == 0 and outside.points_in_range == 0


@pytest.mark.parametrize(
    ("points", "bounds", "match"),
    [
        pytest.param(3, {}, "points must be between 4 and 100000", id="too-few"),
        pytest.param(100_001, {}, "points must be between 4 and 100000", id="too-many"),
        pytest.param(
            10, {"min_step": 5, "max_step": 4}, "min_step .5. is greater than max_step .4.", id="inverted-range"
        ),
    ],
)
def test_bad_arguments_are_refused(points: int, bounds: dict[str, int], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        downsample(_history([1.0]), points, **bounds)
