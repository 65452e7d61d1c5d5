"""The view-file convention: one SELECT per file, dependency order found, activity built from parts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from catalog import views


def test_every_view_file_is_one_select_body() -> None:
    parser = duckdb.connect()
    definitions = views.view_definitions()
    assert {"experiments", "runs", "params", "metrics", "latest_metrics", "metric_history", "tags", "activity"} <= set(
        definitions
    )
    for name, body in definitions.items():
        kinds = [s.type for s in parser.extract_statements(body)]
        assert kinds == [duckdb.StatementType.SELECT], name
    assert set(views.macro_definitions()) == {"runs_wide"}


def _write(directory: Path, **files: str) -> None:
    for name, body in files.items():
        (directory / f"{name}.sql").write_text(body)


def test_views_register_in_dependency_order_whatever_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(
        tmp_path,
        a_top="SELECT n + 1 AS n FROM m_middle",
        m_middle="-- a comment first\nSELECT n * 2 AS n FROM z_base",
        z_base="SELECT x AS n FROM lake.numbers",
        activity_one="SELECT 1 AS changed_at, 'one' AS detail",
        activity_two="SELECT 2 AS changed_at, 'two' AS detail",
    )
    monkeypatch.setattr(views, "VIEWS_DIR", tmp_path)
    monkeypatch.setattr(views, "MACROS_DIR", tmp_path / "macros")
    con = duckdb.connect()
    con.execute("CREATE SCHEMA lake")
    con.execute("CREATE TABLE lake.numbers AS SELECT 20 AS x")
    created = views.register_views(con)
    assert created.index("z_base") < created.index("m_middle") < created.index("a_top")
    assert con.execute("SELECT n FROM a_top").fetchall() == [(41,)]
    assert con.execute("SELECT detail FROM activity").fetchall() == [("two",), ("one",)]
    listed = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "activity" in listed and not {"activity_one", "activity_two"} & listed  # parts are no views of their own


def test_a_view_that_never_resolves_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, fine="SELECT 1 AS n", broken="SELECT * FROM no_such_view")
    monkeypatch.setattr(views, "VIEWS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"views \['broken'\] do not resolve"):
        views.register_views(duckdb.connect())
    _write(tmp_path, activity="SELECT 1")
    with pytest.raises(ValueError, match=r"activity\.sql must not exist"):
        views.view_definitions()
    (tmp_path / "activity.sql").unlink()
    _write(tmp_path, **{"Bad-Name": "SELECT 1"})
    with pytest.raises(ValueError, match="must be a lowercase SQL identifier"):
        views.view_definitions()
