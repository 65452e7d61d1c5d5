"""Every table user SQL can read declares its row filter (``catalog.views.ROW_FILTERS``).

A table added without one would be readable whole by users held back from some experiments; the
filtered database refuses to build without it (KeyError), and this test names the table.
"""

from __future__ import annotations

from catalog import views
from catalog.tables import TABLES


def test_every_visible_table_has_a_row_filter() -> None:
    visible = {t.name for t in TABLES} - views.HIDDEN_TABLES
    assert set(views.ROW_FILTERS) == visible


def test_filters_read_only_the_filtered_lake_views() -> None:
    for name, condition in views.ROW_FILTERS.items():
        assert "iceberg_scan" not in condition, name
        assert "main." not in condition, name
