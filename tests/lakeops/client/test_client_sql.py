"""``client.sql``: the lake's SQL views as polars, embedded and over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from lakeops.client import Client
from lakeops.errors import InvalidArgumentError


def _sweep(client: Client, experiment: str) -> list[str]:
    ids = []
    for lr, acc in ((0.1, 0.91), (0.3, 0.95), (0.03, 0.88)):
        with client.start_run(experiment, f"lr{lr}", params={"lr": lr}) as run:
            for step in range(10):
                run.log_metric("loss", 1.0 / (step + 1) + lr, step=step)
            run.log_metric("acc", acc)
        ids.append(run.run_id)
    return ids


def test_sql_answers_polars_over_the_views(client: Client, experiment: str) -> None:
    ids = _sweep(client, experiment)

    board = client.sql(
        'SELECT run_id, run_name, "params.lr" AS lr, "metrics.acc" AS acc FROM runs_wide(?) ORDER BY acc DESC',
        params=[experiment],
    )
    assert isinstance(board, pl.DataFrame)
    assert board.select("run_name", "lr", "acc").rows() == [
        ("lr0.3", "0.3", 0.95),
        ("lr0.1", "0.1", 0.91),
        ("lr0.03", "0.03", 0.88),
    ]
    assert sorted(board["run_id"].to_list()) == sorted(ids)

    points = client.sql(
        "SELECT r.run_name, count(*) AS points, min(m.value) AS best FROM metrics m JOIN runs r USING (run_id) "
        "WHERE m.key = 'loss' AND r.run_id IN (?, ?, ?) GROUP BY r.run_name ORDER BY best",
        params=ids,
    )
    assert points["points"].to_list() == [10, 10, 10]
    assert points["best"].to_list() == pytest.approx([0.13, 0.2, 0.4])

    assert client.sql("SELECT * FROM runs WHERE run_id IN (?, ?, ?)", params=ids, max_rows=2).height == 2


def test_sql_as_of_reads_the_lake_as_it_was(client: Client, experiment: str) -> None:
    with client.start_run(experiment, "before") as first:
        first.log_metric("acc", 0.5)
    query = "SELECT run_name FROM runs WHERE experiment_id = (SELECT experiment_id FROM experiments WHERE name = ?)"
    assert client.sql(query, params=[experiment])["run_name"].to_list() == ["before"]  # committed now
    then = datetime.now(UTC).isoformat()
    with client.start_run(experiment, "after") as second:
        second.log_metric("acc", 0.6)
    assert sorted(client.sql(query, params=[experiment])["run_name"].to_list()) == ["after", "before"]
    assert client.sql(query, params=[experiment], as_of=then)["run_name"].to_list() == ["before"]


def test_bad_sql_is_refused(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="SQL refused"):
        client.sql("DROP TABLE runs")
    with pytest.raises(InvalidArgumentError, match="SQL refused"):
        client.sql("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(InvalidArgumentError, match="as_of must be an ISO-8601 time"):
        client.sql("SELECT 1", as_of="yesterday")
    with pytest.raises(InvalidArgumentError, match="max_rows must be a positive integer"):
        client.sql("SELECT 1", max_rows=0)
