"""The SQL views answer what the domain API answers, and user SQL cannot leave its sandbox.

Runs on every backend (file://, s3://, REST catalog): the views read the Iceberg tables through
DuckDB's iceberg extension, so each storage kind is a different path through DuckDB.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from lakeops.entities import ViewType
from lakeops.errors import InvalidArgumentError
from lakeops.settings import LakeopsSettings, SqlConfig
from lakeops.sql import SqlEngine, check_statement, is_truncated
from lakeops.stores import IcebergStore, open_store
from lakeops.tracking import TrackingService


def _sweep(tracking: TrackingService, seed: int = 7) -> dict[str, list[str]]:
    """A small but awkward lake: renames, deletes, NaN, equal timestamps, tag deletes."""
    rng = random.Random(seed)
    made: dict[str, list[str]] = {}
    for e in range(2):
        exp = tracking.create_experiment(f"sweep-{e}", tags={"team": f"t{e}"})
        made[exp] = []
        for r in range(5):
            run = tracking.create_run(exp, run_name=f"run-{e}-{r}", user_id=f"user{r % 2}")
            rid = run.info.run_id
            made[exp].append(rid)
            params = {"lr": rng.choice(["0.1", "0.01"]), "depth": str(r + 2)}
            if r % 2:
                params["only_odd"] = "yes"
            points = [("loss", rng.random(), 1_000 + s, s) for s in range(20)]
            points.append(("loss", 5.0, 2_000, 20))
            points.append(("loss", 7.0, 2_000, 21))  # same timestamp: the larger value is latest
            points.append(("acc", float("nan"), 3_000, 0))
            points.append(("acc", 0.5, 3_000, 1))  # NaN ranks below every number
            tracking.log_batch(rid, params=params, metrics=points, tags={"model": rng.choice(["gbm", "mlp"])})
            if r == 1:
                tracking.delete_tag(rid, "model")
            if r == 2:
                tracking.update_run(rid, status="FINISHED", end_time=5_000)
            if r == 3:
                tracking.delete_run(rid)
        if e == 1:
            tracking.rename_experiment(exp, "sweep-renamed")
            tracking.set_experiment_tag(exp, "stage", "prod")
    return made


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


@pytest.fixture
def engine(store: IcebergStore, lake_settings: LakeopsSettings) -> SqlEngine:
    eng = SqlEngine(lake_settings, store=store)
    yield eng  # type: ignore[misc]
    eng.close()


def test_views_match_the_domain_api(tracking: TrackingService, engine: SqlEngine) -> None:
    made = _sweep(tracking)

    experiments = {r["experiment_id"]: r for r in engine.query("SELECT * FROM experiments").to_pylist()}
    api_experiments = tracking.search_experiments(view_type=ViewType.ALL).experiments
    assert set(experiments) == {e.experiment_id for e in api_experiments}
    for exp in api_experiments:
        row = experiments[exp.experiment_id]
        assert (row["name"], row["lifecycle_stage"]) == (exp.name, exp.lifecycle_stage)
        assert _ms(row["created_at"]) == exp.creation_time

    runs = {r["run_id"]: r for r in engine.query("SELECT * FROM runs").to_pylist()}
    params = engine.query("SELECT run_id, key, value FROM params").to_pylist()
    latest = engine.query("SELECT * FROM latest_metrics").to_pylist()
    tags = engine.query("SELECT * FROM tags").to_pylist()
    run_ids = [rid for rids in made.values() for rid in rids]
    assert set(runs) == set(run_ids)
    for rid in run_ids:
        run = tracking.get_run(rid)
        row = runs[rid]
        assert row["experiment_id"] == run.info.experiment_id
        assert (row["run_name"], row["user_id"], row["status"]) == (
            run.info.run_name,
            run.info.user_id,
            run.info.status,
        )
        assert row["lifecycle_stage"] == run.info.lifecycle_stage
        assert (_ms(row["started_at"]), _ms(row["ended_at"])) == (run.info.start_time, run.info.end_time)
        assert {p["key"]: p["value"] for p in params if p["run_id"] == rid} == run.params
        mine = {m["key"]: m for m in latest if m["run_id"] == rid}
        assert set(mine) == set(run.metrics)
        for key, metric in run.metrics.items():
            assert mine[key]["value"] == metric.value
            assert mine[key]["step"] == metric.step
            assert _ms(mine[key]["recorded_at"]) == metric.timestamp
            history = tracking.get_metric_history(rid, key).metrics
            assert mine[key]["points"] == len(history)
        assert {t["key"]: t["value"] for t in tags if t["entity_type"] == "run" and t["entity_id"] == rid} == run.tags
    for exp in api_experiments:
        mine_tags = {
            t["key"]: t["value"]
            for t in tags
            if t["entity_type"] == "experiment" and t["entity_id"] == exp.experiment_id
        }
        assert mine_tags == exp.tags

    rid = run_ids[0]
    history = engine.query(
        "SELECT step, timestamp_ms, value FROM metric_history WHERE run_id = ? AND key = 'loss' ORDER BY step, timestamp_ms",
        params=[rid],
    ).to_pylist()
    api_history = tracking.get_metric_history(rid, "loss").metrics
    assert [(h["step"], h["timestamp_ms"], h["value"]) for h in history] == [
        (m.step, m.timestamp, m.value) for m in api_history
    ]
    total = engine.query("SELECT count(*) AS n FROM metrics").column("n")[0].as_py()
    assert total == len(run_ids) * 24


def test_wide_form_has_one_row_per_run_with_params_and_latest_metrics(
    tracking: TrackingService, engine: SqlEngine
) -> None:
    made = _sweep(tracking)
    exp = next(iter(made))
    wide = engine.query("SELECT * FROM runs_wide(?)", params=[exp])
    by_name = engine.query("SELECT * FROM runs_wide('sweep-0')")
    assert by_name.to_pylist() == wide.to_pylist()
    assert {"params.lr", "params.depth", "params.only_odd", "metrics.loss", "metrics.acc"} <= set(wide.column_names)
    assert wide.schema.field("metrics.loss").type == pa.float64()
    rows = {r["run_id"]: r for r in wide.to_pylist()}
    assert set(rows) == set(made[exp])
    for rid, row in rows.items():
        run = tracking.get_run(rid)
        assert row["params.only_odd"] == run.params.get("only_odd")
        assert row["params.depth"] == run.params["depth"]
        assert row["metrics.loss"] == run.metrics["loss"].value
        assert row["metrics.acc"] == run.metrics["acc"].value
    # A leaderboard straight from the wide form.
    top = engine.query('SELECT run_id FROM runs_wide(?) ORDER BY "metrics.loss" DESC, run_id LIMIT 2', params=[exp])
    expected = sorted(made[exp], key=lambda r: (-tracking.get_run(r).metrics["loss"].value, r))[:2]
    assert top.column("run_id").to_pylist() == expected
    with pytest.raises(InvalidArgumentError, match="runs_wide: no experiment with id or name nope"):
        engine.query("SELECT * FROM runs_wide('nope')")


def test_activity_lists_every_change_with_who_and_when(tracking: TrackingService, engine: SqlEngine) -> None:
    made = _sweep(tracking)
    rows = engine.query("SELECT * FROM activity").to_pylist()
    assert [r["changed_at"] for r in rows] == sorted((r["changed_at"] for r in rows), reverse=True)
    assert {r["actor"] for r in rows} == {tracking.actor}
    ops = {(r["entity_type"], r["operation"]) for r in rows}
    assert {("experiment", "create"), ("experiment", "rename"), ("run", "create"), ("run", "delete")} <= ops
    assert ("run_tag", "delete_tag") in ops
    deleted = [r for r in rows if r["entity_type"] == "run" and r["operation"] == "delete"]
    assert {r["entity_id"] for r in deleted} == {rids[3] for rids in made.values()}


def test_views_see_every_acknowledged_write(tracking: TrackingService, engine: SqlEngine) -> None:
    exp = tracking.create_experiment("fresh")
    assert engine.query("SELECT count(*) AS n FROM runs").column("n")[0].as_py() == 0
    run = tracking.create_run(exp)
    tracking.log_metric(run.info.run_id, "loss", 0.25, timestamp=10, step=1)
    answer = engine.query("SELECT value FROM latest_metrics WHERE run_id = ?", params=[run.info.run_id])
    assert answer.column("value").to_pylist() == [0.25]


def test_sql_without_a_store_reads_what_was_committed(lake_settings: LakeopsSettings) -> None:
    store = open_store(lake_settings)
    tracking = TrackingService(store)
    exp = tracking.create_experiment("committed")
    tracking.create_run(exp, run_name="only")
    store.close()  # commits
    engine = SqlEngine(lake_settings)
    try:
        names = engine.query("SELECT run_name FROM runs WHERE experiment_id = ?", params=[exp])
        assert names.column("run_name").to_pylist() == ["only"]
    finally:
        engine.close()


def test_time_travel_reads_the_lake_as_it_was(
    tracking: TrackingService, engine: SqlEngine, store: IcebergStore
) -> None:
    exp = tracking.create_experiment("travel")
    first = tracking.create_run(exp, run_name="first")
    store.commit()
    snapshot = store.table("run_changes").metadata.current_snapshot()
    assert snapshot is not None
    between = datetime.fromtimestamp(snapshot.timestamp_ms / 1000, tz=UTC)
    tracking.update_run(first.info.run_id, status="FAILED")
    tracking.create_run(exp, run_name="second")
    store.commit()
    now = engine.query("SELECT run_name, status FROM runs WHERE experiment_id = ? ORDER BY run_name", params=[exp])
    assert now.to_pylist() == [{"run_name": "first", "status": "FAILED"}, {"run_name": "second", "status": "RUNNING"}]
    then = engine.query(
        "SELECT run_name, status FROM runs WHERE experiment_id = ? ORDER BY run_name", params=[exp], as_of=between
    )
    assert then.to_pylist() == [{"run_name": "first", "status": "RUNNING"}]
    with pytest.raises(
        InvalidArgumentError, match=r"as_of 2000-01-01T00:00:00\+00:00 is before the lake's first commit"
    ):
        engine.query("SELECT count(*) AS n FROM runs", as_of=datetime(2000, 1, 1, tzinfo=UTC))


def test_row_limit_truncates_and_says_so(engine: SqlEngine) -> None:
    full = engine.query("SELECT * FROM range(10) t(i)")
    assert full.num_rows == 10 and not is_truncated(full)
    cut = engine.query("SELECT * FROM range(10) t(i)", max_rows=4)
    assert cut.column("i").to_pylist() == [0, 1, 2, 3] and is_truncated(cut)
    with pytest.raises(InvalidArgumentError, match="max_rows must be a positive integer"):
        engine.query("SELECT 1", max_rows=0)


def test_server_cap_on_rows_wins_over_the_callers(lake_settings: LakeopsSettings, store: IcebergStore) -> None:
    settings = lake_settings.model_copy(update={"sql": SqlConfig(max_rows=5, timeout_s=0.5)})
    engine = SqlEngine(settings, store=store)
    try:
        answer = engine.query("SELECT * FROM range(100)", max_rows=50)
        assert answer.num_rows == 5 and is_truncated(answer)
        with pytest.raises(InvalidArgumentError, match=r"ran longer than 0.5s"):
            engine.query("SELECT count(*) FROM range(100000000000) a, range(1000) b")
    finally:
        engine.close()


# -- the sandbox ---------------------------------------------------------------------------------

STATEMENT_ESCAPES = [
    pytest.param("ATTACH ':memory:' AS other", "ATTACH is not allowed", id="attach"),
    pytest.param("ATTACH '/tmp/x.duckdb' AS other (READ_ONLY)", "ATTACH is not allowed", id="attach-file"),
    pytest.param("DETACH lake", "DETACH is not allowed", id="detach"),
    pytest.param("INSTALL httpfs", "INSTALL and LOAD are not allowed", id="install"),
    pytest.param("LOAD json", "INSTALL and LOAD are not allowed", id="load"),
    pytest.param("COPY runs TO '/tmp/runs.csv'", "COPY is not allowed", id="copy-to"),
    pytest.param("COPY (SELECT 1) TO 's3://bucket/x.parquet'", "COPY is not allowed", id="copy-to-s3"),
    pytest.param("EXPORT DATABASE '/tmp/dump'", "EXPORT is not allowed", id="export"),
    pytest.param("SET enable_external_access = true", "SET, RESET and USE are not allowed", id="set"),
    pytest.param("SET lock_configuration = false", "SET, RESET and USE are not allowed", id="unlock"),
    pytest.param("RESET allowed_directories", "SET, RESET and USE are not allowed", id="reset"),
    pytest.param("SET VARIABLE lakeops_runs_wide = MAP {}", "not allowed", id="set-variable"),
    pytest.param("PRAGMA enable_profiling", "PRAGMA is not allowed", id="pragma"),
    pytest.param("/* hi */ pragma version", "PRAGMA is not allowed", id="pragma-commented"),
    pytest.param("CREATE TABLE t AS SELECT 1", "CREATE is not allowed", id="create-table"),
    pytest.param("CREATE TEMP VIEW v AS SELECT 1", "CREATE is not allowed", id="create-temp-view"),
    pytest.param("CREATE MACRO m() AS 1", "CREATE is not allowed", id="create-macro"),
    pytest.param("CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "CREATE is not allowed", id="create-secret"),
    pytest.param("CREATE OR REPLACE VIEW runs AS SELECT 1", "CREATE is not allowed", id="replace-view"),
    pytest.param("DROP VIEW runs", "DROP is not allowed", id="drop"),
    pytest.param("INSERT INTO lake.metrics VALUES (1)", "INSERT is not allowed", id="insert"),
    pytest.param("DELETE FROM runs", "DELETE is not allowed", id="delete"),
    pytest.param("CALL pragma_version()", "CALL is not allowed", id="call"),
    pytest.param("CHECKPOINT", "CALL is not allowed", id="checkpoint"),
    pytest.param("BEGIN TRANSACTION", "transactions are not allowed", id="begin"),
    pytest.param("USE lake", "SET, RESET and USE are not allowed", id="use"),
    pytest.param("SELECT 1; ATTACH ':memory:' AS x", "ATTACH is not allowed", id="stacked"),
    pytest.param("SELECT 1; SELECT 2", "exactly one SELECT statement", id="two-selects"),
    pytest.param("PIVOT runs ON status USING count(*)", "explicit IN list", id="dynamic-pivot"),
    pytest.param("EXPLAIN ANALYZE SELECT 1", "EXPLAIN is not allowed", id="explain"),
    pytest.param("   ", "SQL is empty", id="empty"),
    pytest.param("SELEC 1", "SQL syntax error", id="syntax"),
]


@pytest.mark.parametrize(("sql", "message"), STATEMENT_ESCAPES)
def test_statements_other_than_one_select_are_refused(sql: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check_statement(sql)


def _escapes(settings: LakeopsSettings, home: Path) -> list[tuple[str, str]]:
    """SELECTs that try to read outside the lake, for this lake's storage."""
    cases = [
        ("SELECT * FROM read_csv('/etc/passwd')", "SQL refused"),
        ("SELECT * FROM read_text('/etc/hostname')", "SQL refused"),
        (f"SELECT * FROM read_blob('{home}/catalog.db')", "SQL refused"),
        (f"SELECT count(*) FROM glob('{home}/**')", "SQL refused"),
        ("SELECT * FROM glob('/etc/*')", "SQL refused"),
        ("SELECT * FROM '/etc/passwd'", "reading files or URLs by name is not allowed"),
        ("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')", "SQL refused"),
        ("SELECT * FROM read_parquet('https://example.com/x.parquet')", "SQL refused"),
        ("SELECT * FROM sniff_csv('/etc/passwd')", "SQL refused"),
        ("SELECT * FROM parquet_metadata('/etc/passwd')", "SQL refused"),
        ("SELECT * FROM duckdb_secrets(redact=false)", "SQL error: .*unredacted secrets is disabled"),
        ("SELECT getenv('HOME')", "SQL error"),
        ("SELECT * FROM query('ATTACH '':memory:'' AS y')", r"SQL refused: table function query\(\) is not allowed"),
        ("SELECT * FROM query_table('runs')", "SQL refused: table function query_table"),
        ("SELECT * FROM sqlite_scan('/etc/passwd', 'x')", "SQL refused: table function sqlite_scan"),
        ("SELECT * FROM iceberg_scan('/etc')", "SQL refused: table function iceberg_scan"),
        ("WITH x AS (SELECT 1) SELECT * FROM x, (SELECT * FROM read_blob('/etc/hostname'))", "read_blob"),
    ]
    if settings.storage.kind == "local":
        warehouse = settings.warehouse().removeprefix("file://")
        cases += [
            # path traversal out of a table's directory to the catalog's SQLite file
            (f"SELECT * FROM read_blob('{warehouse}/{settings.namespace}/metrics/../../../catalog.db')", "SQL refused"),
            (f"SELECT * FROM read_text('{home}/wal/*')", "SQL refused"),
        ]
    else:
        bucket = settings.storage.bucket  # type: ignore[union-attr]
        cases += [
            (f"SELECT * FROM glob('s3://{bucket}/*')", "SQL refused"),
            ("SELECT * FROM read_parquet('s3://another-bucket/x.parquet')", "SQL refused"),
            (f"SELECT * FROM read_blob('s3://{bucket}/other-prefix/x')", "SQL refused"),
            # path traversal out of a table's prefix to another prefix of the same bucket
            (
                f"SELECT * FROM read_blob('{settings.warehouse()}/{settings.namespace}/metrics/../../../other/x')",
                "SQL refused",
            ),
        ]
    return cases


def test_selects_cannot_reach_files_urls_or_other_buckets(engine: SqlEngine, lake_settings: LakeopsSettings) -> None:
    for sql, message in _escapes(lake_settings, lake_settings.home):
        with pytest.raises(InvalidArgumentError, match=message):
            engine.query(sql)


def test_the_lake_tables_stay_readable_and_secrets_stay_hidden(
    tracking: TrackingService, engine: SqlEngine, lake_settings: LakeopsSettings
) -> None:
    tracking.create_run(tracking.create_experiment("visible"))
    assert engine.query("SELECT count(*) AS n FROM lake.run_changes").column("n").to_pylist() == [1]
    settings = engine.query("SELECT name, value FROM duckdb_settings()").to_pylist()
    values = {s["name"]: s["value"] for s in settings}
    assert values["enable_external_access"] == "false"
    assert values["lock_configuration"] == "true"
    assert values["autoinstall_known_extensions"] == "false"
    if lake_settings.storage.kind == "s3":
        secret = lake_settings.storage.secret_access_key.get_secret_value()  # type: ignore[union-attr]
        shown = engine.query("SELECT * FROM duckdb_secrets()").to_pylist()
        assert shown and secret not in str(shown)
        assert secret not in str(settings)


def test_parameters_bind_values_not_sql(tracking: TrackingService, engine: SqlEngine) -> None:
    exp = tracking.create_experiment("params")
    tracking.create_run(exp, run_name="x'; DROP VIEW runs; --")
    found = engine.query("SELECT run_name FROM runs WHERE run_name = ?", params=["x'; DROP VIEW runs; --"])
    assert found.column("run_name").to_pylist() == ["x'; DROP VIEW runs; --"]
    with pytest.raises(InvalidArgumentError, match="params must be a list"):
        engine.query("SELECT ?", params="oops")  # type: ignore[arg-type]
    assert not math.isnan(engine.query("SELECT ?::DOUBLE AS v", params=[1.5]).column("v")[0].as_py())
