"""Saved queries: named SQL with a description and an author, kept in an Iceberg table.

A saved query is a change row in ``saved_query_changes`` (create, update, delete); the current
set is the latest row per name, both in memory (``TrackingState.saved_queries``) and in SQL
(the ``saved_queries`` view). Running one goes through the same sandbox as any user SQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from catalog.tables import SAVED_QUERY_CHANGES
from lakeops.actor import ActorField
from lakeops.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from lakeops.sql import Readable, SqlEngine, check_statement
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import SavedQueryState, TrackingState

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MAX_SQL_LENGTH = 100_000
MAX_DESCRIPTION_LENGTH = 5_000


@dataclass(frozen=True)
class SavedQuery:
    """A named SQL query for others to find and run."""

    name: str
    sql: str
    description: str | None
    author: str | None
    created_at: int  # ms since the epoch
    updated_at: int
    updated_by: str | None

    @classmethod
    def of(cls, state: SavedQueryState) -> SavedQuery:
        """The entity for one state entry."""
        return cls(
            name=state.name,
            sql=state.sql,
            description=state.description,
            author=state.author,
            created_at=state.created_at,
            updated_at=state.updated_at,
            updated_by=state.updated_by,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return {
            "name": self.name,
            "sql": self.sql,
            "description": self.description,
            "author": self.author,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


def _validate(name: object, sql: object, description: object) -> tuple[str, str, str | None]:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgumentError(
            f"Invalid saved query name {name!r}: 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if not isinstance(sql, str) or len(sql) > MAX_SQL_LENGTH:
        raise InvalidArgumentError(
            f"Invalid SQL for saved query {name!r}: a string of at most {MAX_SQL_LENGTH} characters"
        )
    check_statement(sql)
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH):
        raise InvalidArgumentError(f"Invalid description: a string of at most {MAX_DESCRIPTION_LENGTH} characters")
    return name, sql, description


class SavedQueryService:
    """Save, list, run and delete named queries."""

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(
        self, store: IcebergStore, engine: SqlEngine, *, actor: str, now_ms: Callable[[], int] | None = None
    ) -> None:
        self.store = store
        self.engine = engine
        self.actor = actor
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))

    def _row(self, query: SavedQueryState, operation: str, *, is_deleted: bool = False) -> Rows:
        columns = {
            "name": [query.name],
            "sql": [query.sql],
            "description": [query.description],
            "author": [query.author],
            "is_deleted": [is_deleted],
            "created_at": [query.created_at * 1000],
            "changed_at": [query.updated_at * 1000],
            "actor": [self.actor],
            "operation": [operation],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return {SAVED_QUERY_CHANGES.name: pa.RecordBatch.from_pydict(columns, schema=SAVED_QUERY_CHANGES.arrow_schema)}

    def save(
        self, name: str, sql: str, *, description: str | None = None, author: str | None = None, replace: bool = False
    ) -> SavedQuery:
        """Save a new query (``replace=True``: or a new version of an existing one).

        Raises:
            InvalidArgumentError: a bad name, or SQL the sandbox would refuse.
            AlreadyExistsError: the name is taken and ``replace`` is false.
        """
        name, sql, description = _validate(name, sql, description)
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            old = state.saved_queries.get(name)
            if old is not None and not replace:
                raise AlreadyExistsError(f"Saved query '{name}' already exists.", details={"name": name})
            query = SavedQueryState(
                name=name,
                sql=sql,
                description=description,
                author=author or (old.author if old else None) or self.actor,
                created_at=old.created_at if old else now,
                updated_at=now,
                updated_by=self.actor,
            )
            return self._row(query, "update" if old else "create")

        self.store.write(build)
        return self.get(name)

    def get(self, name: str) -> SavedQuery:
        """One saved query.

        Raises:
            NotFoundError: no saved query has this name.
        """
        found = self.store.state.saved_queries.get(name)
        if found is None:
            raise NotFoundError(f"No saved query named '{name}'", details={"name": name})
        return SavedQuery.of(found)

    def list(self) -> list[SavedQuery]:
        """Every saved query, by name."""
        return [SavedQuery.of(q) for _n, q in sorted(self.store.state.saved_queries.items())]

    def delete(self, name: str) -> None:
        """Delete a saved query (its history stays in the table).

        Raises:
            NotFoundError: no saved query has this name.
        """
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            old = state.saved_queries.get(name)
            if old is None:
                raise NotFoundError(f"No saved query named '{name}'", details={"name": name})
            gone = SavedQueryState(
                name=old.name,
                sql=old.sql,
                description=old.description,
                author=old.author,
                created_at=old.created_at,
                updated_at=now,
                updated_by=self.actor,
            )
            return self._row(gone, "delete", is_deleted=True)

        self.store.write(build)

    def run(
        self,
        name: str,
        *,
        params: Sequence[Any] | None = None,
        as_of: datetime | None = None,
        max_rows: int | None = None,
        readable: Readable | None = None,
    ) -> pa.Table:
        """Run a saved query through the sandbox (``readable``: see ``SqlEngine.query``).

        Raises:
            NotFoundError: no saved query has this name.
            InvalidArgumentError: the query fails (see ``SqlEngine.query``).
        """
        sql = self.get(name).sql
        return self.engine.query(sql, params=params, as_of=as_of, max_rows=max_rows, readable=readable)
