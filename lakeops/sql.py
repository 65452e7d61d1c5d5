"""SQL for people and BI tools: the named views over the lake, behind a sandbox.

``SqlEngine.query`` runs one user ``SELECT`` on DuckDB over the Iceberg tables (the views of
``catalog/views``) and answers an Arrow table. The sandbox, on every entry point (Python, CLI,
HTTP, PostgreSQL wire):

* exactly one statement, and it must be a ``SELECT`` (``WITH``, ``FROM``-first, ``VALUES``,
  ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` and pivots with an explicit ``IN`` list are SELECTs):
  ``ATTACH``/``DETACH``, ``INSTALL``/``LOAD``, ``COPY``/``EXPORT``, ``SET``/``RESET``/``USE``,
  ``PRAGMA``, ``CREATE``/``DROP``/``ALTER``, DML, ``CALL``, transactions and ``PREPARE`` are
  refused before DuckDB runs anything;
* table functions that read files or URLs (``read_*``, ``glob``, ``iceberg_scan``, ``query``, ...)
  and tables named by a path are refused (``ALLOWED_TABLE_FUNCTIONS`` lists what is allowed);
* as a second wall, the database may read only the directories of the lake's own tables
  (``allowed_directories``) with ``enable_external_access = false``: no local file, no other
  bucket or prefix, no URL; and its configuration is locked (``lock_configuration``), so no
  setting, extension or secret can be changed or shown unredacted;
* a statement is interrupted after ``sql.timeout_s`` and answers at most ``max_rows`` rows
  (``sql.max_rows`` caps what a caller may ask); a cut answer is marked (``is_truncated``).

Every refusal raises ``InvalidArgumentError`` saying what was refused and why.

Freshness: with an in-process ``store`` (the server), each query first commits what the store
has queued, so it sees every acknowledged write of this process; other replicas' writes appear
once this process has picked up their commits (``write.refresh_interval_s``). Without a store
(``lakeops sql`` on its own), a query sees what the lake's writers have committed — a running
server commits every ``write.commit_interval_s``. ``as_of`` reads every table at its snapshot
current at that time (time travel, as far back as snapshots are retained).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from catalog import views
from catalog.pointers import TableState, open_pointer_reader, read_table_state, state_of_table
from lakeops.errors import BackendUnavailableError, InvalidArgumentError
from lakeops.settings import LakeopsSettings

if TYPE_CHECKING:  # pyiceberg costs about a CPU-second to import: ``lakeops sql`` on a SQLite catalog never does
    from pyiceberg.catalog import Catalog

    from lakeops.stores.iceberg import IcebergStore

CATALOG_NAME = "lakeops"

TRUNCATED_KEY = b"lakeops.truncated"
_ALLOWED_TYPES = {duckdb.StatementType.SELECT}
_REFUSAL_REASONS = {
    "ATTACH": "ATTACH is not allowed: user SQL reads only the lake's views",
    "DETACH": "DETACH is not allowed: user SQL reads only the lake's views",
    "LOAD": "INSTALL and LOAD are not allowed: the extensions are fixed by lakeops",
    "COPY": "COPY is not allowed: user SQL cannot write or read files",
    "COPY_DATABASE": "COPY is not allowed: user SQL cannot write or read files",
    "EXPORT": "EXPORT is not allowed: user SQL cannot write files",
    "SET": "SET, RESET and USE are not allowed: settings are locked",
    "VARIABLE_SET": "SET VARIABLE is not allowed: settings are locked",
    "PRAGMA": "PRAGMA is not allowed: settings are locked",
    "CREATE": "CREATE is not allowed: user SQL is read-only and creates no objects",
    "DROP": "DROP is not allowed: user SQL is read-only",
    "ALTER": "ALTER is not allowed: user SQL is read-only",
    "INSERT": "INSERT is not allowed: user SQL is read-only",
    "UPDATE": "UPDATE is not allowed: user SQL is read-only",
    "DELETE": "DELETE is not allowed: user SQL is read-only",
    "MERGE_INTO": "MERGE is not allowed: user SQL is read-only",
    "CALL": "CALL is not allowed: only a SELECT is",
    "TRANSACTION": "transactions are not allowed: each query runs alone, read-only",
    "PREPARE": "PREPARE is not allowed: pass parameters with the query instead",
    "EXECUTE": "EXECUTE is not allowed: pass parameters with the query instead",
    "EXPLAIN": "EXPLAIN is not allowed: only a SELECT is",
    "VACUUM": "VACUUM is not allowed: user SQL is read-only",
    "ANALYZE": "ANALYZE is not allowed: user SQL is read-only",
}
# Table functions user SQL may call: generators and catalog listings, none of which reads a file or URL.
# Everything else (read_parquet, read_csv, read_text, read_blob, glob, iceberg_scan, query, ...) is
# refused by name: user SQL reads the named views and lake.<table>, never paths. (DuckDB's own
# allowed_directories stays as a second wall, but it does not normalise ".." in s3:// paths.)
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "json_each",
        "json_tree",
        "duckdb_columns",
        "duckdb_constraints",
        "duckdb_databases",
        "duckdb_functions",
        "duckdb_keywords",
        "duckdb_schemas",
        "duckdb_secrets",
        "duckdb_settings",
        "duckdb_tables",
        "duckdb_types",
        "duckdb_views",
        "pragma_table_info",
        "pragma_show",
    }
)
# Scalar functions user SQL may not call: the row filter's variable holds the ids a user is held back from.
_REFUSED_FUNCTIONS = frozenset({"getvariable"})
_PATHLIKE = re.compile(r"[/\\:.]")
_PRAGMA = re.compile(r"^\s*(?:(?:--[^\n]*\n)|(?:/\*.*?\*/)|\s)*pragma\b", re.IGNORECASE | re.DOTALL)


def is_truncated(table: pa.Table) -> bool:
    """Whether ``SqlEngine.query`` cut this answer at its row limit."""
    metadata = table.schema.metadata or {}
    return metadata.get(TRUNCATED_KEY) == b"true"


def check_statement(sql: str) -> None:
    """Refuse anything but one read-only SELECT, with a clear reason.

    Raises:
        InvalidArgumentError: empty SQL, a syntax error, several statements or a refused kind.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidArgumentError("SQL is empty: send one SELECT statement")
    if _PRAGMA.match(sql):
        raise InvalidArgumentError(f"SQL refused: {_REFUSAL_REASONS['PRAGMA']}")
    parser = _parser()
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidArgumentError(f"SQL syntax error: {_first_line(exc)}") from exc
    kinds = [s.type for s in statements]
    if not kinds:
        raise InvalidArgumentError("SQL is empty: send one SELECT statement")
    if len(kinds) > 1 and re.search(r"\bpivot\b", sql, re.IGNORECASE):
        raise InvalidArgumentError(
            "SQL refused: send exactly one SELECT statement (a PIVOT needs an explicit IN list, e.g. "
            "PIVOT runs ON status IN ('FINISHED', 'FAILED') USING count(*))"
        )
    refused = [k for k in kinds if k not in _ALLOWED_TYPES]
    if refused:
        name = refused[0].name
        reason = _REFUSAL_REASONS.get(name, f"{name} statements are not allowed: only a single SELECT is")
        raise InvalidArgumentError(f"SQL refused: {reason}", details={"statement": name})
    if len(kinds) > 1:
        raise InvalidArgumentError(f"SQL refused: send exactly one SELECT statement, got {len(kinds)}")
    _check_sources(parser, sql)


@functools.cache
def _allowed_table_functions() -> frozenset[str]:
    return ALLOWED_TABLE_FUNCTIONS | frozenset(views.macro_definitions())


def _check_sources(parser: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse table functions that read files or URLs, and tables named by a path."""
    # A literal, not a bound parameter: binding any parameter makes DuckDB import pandas (~0.5 CPU-s).
    row = parser.execute(f"SELECT json_serialize_sql({views.quote_literal(sql)})").fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        raise InvalidArgumentError(f"SQL refused: cannot analyse the statement ({tree.get('error_message', '')})")
    allowed = _allowed_table_functions()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            name = str((node.get("function") or {}).get("function_name", "")).lower()
            if name not in allowed:
                raise InvalidArgumentError(
                    f"SQL refused: table function {name}() is not allowed: user SQL reads the lakeops views "
                    "and lake.<table>, not files or URLs",
                    details={"function": name},
                )
        elif kind == "FUNCTION" and str(node.get("function_name", "")).lower() in _REFUSED_FUNCTIONS:
            name = str(node.get("function_name", "")).lower()
            raise InvalidArgumentError(
                f"SQL refused: {name}() is not allowed: connection variables are lakeops' own",
                details={"function": name},
            )
        elif kind == "BASE_TABLE" and _PATHLIKE.search(str(node.get("table_name", ""))):
            raise InvalidArgumentError(
                f"SQL refused: {node.get('table_name')!r} is not a view: reading files or URLs by name is not allowed",
                details={"table": node.get("table_name")},
            )
        stack.extend(node.values())


_PARSER_LOCAL = threading.local()


def _parser() -> duckdb.DuckDBPyConnection:
    """A bare DuckDB per thread, used only to parse (never to run) user SQL."""
    con: duckdb.DuckDBPyConnection | None = getattr(_PARSER_LOCAL, "con", None)
    if con is None:
        con = duckdb.connect(":memory:", config={"enable_external_access": False})
        _PARSER_LOCAL.con = con
    return con


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n")[:3]).strip()


# Statements that list or describe the catalog see every view; so does anything naming DuckDB's own tables.
_LISTS_CATALOG = re.compile(
    r"information_schema|pg_catalog|duckdb_|sqlite_master|\b(?:show|describe|summarize)\b", re.I
)
_WORD = re.compile(r"[a-z_][a-z0-9_]*")


@functools.cache
def _references() -> dict[str, frozenset[str]]:
    """Each view's, macro's and the wide form's words: every name its SQL could refer to (over-approximated)."""
    definitions = {**views.view_definitions(), **views.macro_definitions()}
    # runs_wide's SQL is generated at query time from these (see views.wide_form_sql and WIDE_KEYS_SQL)
    definitions["runs_wide"] = definitions.get("runs_wide", "") + views.WIDE_KEYS_SQL + " runs params latest_metrics"
    return {name: frozenset(_WORD.findall(body.lower())) for name, body in definitions.items()}


def _needed_names(sql: str) -> set[str] | None:
    """The views, macros and lake tables ``sql`` may read (a superset), or None for all of them.

    Registering a view binds it, which reads its tables' metadata: for one short query, registering
    only what the query can reach saves most of that. A name counts as used if it appears anywhere
    in the statement as a word, and the closure follows the definitions' words the same way, so a
    view the query reaches is never missing (extra ones are harmless).
    """
    if _LISTS_CATALOG.search(sql):
        return None
    references = _references()
    todo = set(_WORD.findall(sql.lower()))
    seen: set[str] = set()
    while todo:
        word = todo.pop()
        if word not in seen:
            seen.add(word)
            todo |= references.get(word, frozenset()) - seen
    return seen


@dataclass(frozen=True)
class Readable:
    """What one user's SQL may read, from their permissions (``AuthService.readable``).

    ``by_default``: whether the user may read experiments and models no grant of theirs names;
    ``experiments``/``models``: granted READ or more; ``hidden_*``: granted less than READ (models by
    name); ``workspaces``: those the user is a member of (and "default"). Passed as
    ``SqlEngine.query(readable=...)``, it makes every view answer only those rows.
    """

    by_default: bool
    experiments: frozenset[str] = frozenset()
    hidden_experiments: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    hidden_models: frozenset[str] = frozenset()
    workspaces: frozenset[str] = frozenset({"default"})

    def variable_sql(self) -> str:
        """The ``SET VARIABLE`` the row filters of ``catalog.views.ROW_FILTERS`` read."""
        return views.readable_variable_sql(
            by_default=self.by_default,
            experiments=self.experiments,
            hidden_experiments=self.hidden_experiments,
            models=self.models,
            hidden_models=self.hidden_models,
            workspaces=self.workspaces,
        )


@dataclass
class _Shared:
    """One long-lived database of the engine, its ``lake`` views pinned to the tables' snapshots."""

    db: duckdb.DuckDBPyConnection | None = None
    directories: list[str] = field(default_factory=list)
    pinned: dict[str, views.LakeTable] = field(default_factory=dict)
    registered: set[str] | None = None  # names registered in db; None: everything


_PAST_DATABASES = 2  # as-of databases kept (each holds only DuckDB's catalog until queried)


def _pinned_key(tables: Sequence[views.LakeTable]) -> tuple[tuple[str, str, int | None], ...]:
    return tuple((t.name, t.metadata_location, t.snapshot_id) for t in tables)


class SqlEngine:
    """Sandboxed SQL over the lake's views. Thread-safe; one per process is enough."""

    def __init__(self, settings: LakeopsSettings, *, store: IcebergStore | None = None) -> None:
        self.settings = settings
        self._store = store
        self._lock = threading.Lock()
        # Two databases: every row (no authentication, admins, users who may read everything), and one
        # whose lake views filter rows by the querying cursor's ``Readable`` (built on first use).
        self._shared = {False: _Shared(), True: _Shared()}
        self._wide: tuple[tuple[tuple[str, str, int | None], ...], str] | None = None
        # Databases pinned at past snapshots, by their tables' snapshots: a page "as of" a time asks several
        # queries of the same time, and building one (every view over every table) is most of each answer.
        self._past: OrderedDict[tuple[bool, tuple[tuple[str, str, int | None], ...]], duckdb.DuckDBPyConnection] = (
            OrderedDict()
        )
        self._closed = False
        home = settings.home
        self._extension_dir = home / "duckdb" / "extensions"
        self._temp_dir = home / "duckdb" / "tmp"
        self._catalog: Catalog | None = None  # opened on first use, only where the light path does not apply

    # -- the lake's tables as DuckDB sees them -----------------------------------------------------
    #
    # Reading is read-only all the way: no table is created or evolved here (the store does that
    # when a writer opens the lake). Without a store, a SQLite or object-store catalog is read
    # directly (see catalog/pointers.py); other catalogs through pyiceberg.

    def _tables(self) -> list[TableState]:
        """The tables user SQL may read: every table of the lake but those holding secrets."""
        return [t for t in self._all_tables() if t.name not in views.HIDDEN_TABLES]

    def _all_tables(self) -> list[TableState]:
        if self._store is not None:
            from catalog.tables import TABLES

            if self._store.queued_rows():
                self._store.commit()  # views see every acknowledged write of this process
            return [state_of_table(d.name, self._store.table(d.name)) for d in TABLES]
        try:
            found = self._read_pointers()
            if found is None:
                found = self._read_with_pyiceberg()
        except Exception as exc:
            raise BackendUnavailableError(
                f"cannot read the lake's tables at {self.settings.warehouse()}: {exc}"
            ) from exc
        if not found:
            raise BackendUnavailableError(
                f"there is no lake at {self.settings.warehouse()} yet: its tables are created when a lakeops "
                "process opens it to write (e.g. `lakeops serve`, or logging a run)"
            )
        return [found[name] for name in sorted(found)]

    def _missing_tables(self, tables: Sequence[views.LakeTable]) -> BackendUnavailableError | None:
        """The error to give when the views do not compile because the lake lacks tables of this version."""
        from catalog.tables import TABLES

        present = {t.name for t in tables}
        missing = [d.name for d in TABLES if d.name not in present and d.name not in views.HIDDEN_TABLES]
        if not missing:
            return None
        return BackendUnavailableError(
            f"the lake at {self.settings.warehouse()} has no table {', '.join(missing)} yet: tables are created "
            "(and upgraded) when a lakeops process of this version opens the lake to write, e.g. `lakeops serve`",
            details={"missing": missing},
        )

    def _read_pointers(self) -> dict[str, TableState] | None:
        """Every table's state straight from the catalog's pointers (SQLite file, object-store catalog),
        or None for catalogs only pyiceberg reads."""
        reader = open_pointer_reader(self.settings.catalog_properties(), catalog_name=CATALOG_NAME)
        if reader is None:
            return None
        pointers = reader.read(self.settings.namespace)
        s3 = self._s3_access()
        return {name: read_table_state(name, location, s3=s3) for name, location in pointers.items()}

    def _read_with_pyiceberg(self) -> dict[str, TableState]:
        from catalog.connection import open_catalog
        from catalog.tables import TABLES

        if self._catalog is None:
            self._catalog = open_catalog(CATALOG_NAME, self.settings.catalog_properties())
        found: dict[str, TableState] = {}
        existing = {identifier[-1] for identifier in self._catalog.list_tables(self.settings.namespace)}
        for table_def in TABLES:
            if table_def.name in existing:
                table = self._catalog.load_table((self.settings.namespace, table_def.name))
                found[table_def.name] = state_of_table(table_def.name, table)
        return found

    def _current(self) -> list[views.LakeTable]:
        return [
            views.LakeTable(
                name=table.name,
                metadata_location=table.metadata_location,
                location=table.location,
                snapshot_id=table.current_snapshot_id,
                has_snapshot=table.current_snapshot_id is not None,
            )
            for table in self._tables()
        ]

    def _as_of(self, when: datetime) -> list[views.LakeTable]:
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ms = int(when.timestamp() * 1000)
        found = []
        first_ms: int | None = None  # the lake's first commit (of any table)
        for table in self._tables():
            snapshots = sorted(table.snapshots, key=lambda s: s.timestamp_ms)
            before = [s for s in snapshots if s.timestamp_ms <= ms]
            if not before and snapshots and snapshots[0].parent_snapshot_id is not None:
                oldest = datetime.fromtimestamp(snapshots[0].timestamp_ms / 1000, tz=UTC)
                raise InvalidArgumentError(
                    f"as_of {when.isoformat()} is before the oldest retained snapshot of {table.name} "
                    f"({oldest.isoformat()}); snapshots are kept for write.snapshot_retention_s",
                    details={"table": table.name, "oldest": oldest.isoformat()},
                )
            chosen = before[-1] if before else None
            if snapshots:
                first_ms = snapshots[0].timestamp_ms if first_ms is None else min(first_ms, snapshots[0].timestamp_ms)
            found.append(
                views.LakeTable(
                    name=table.name,
                    metadata_location=table.metadata_location,
                    location=table.location,
                    snapshot_id=chosen.snapshot_id if chosen else None,
                    has_snapshot=chosen is not None,
                )
            )
        if first_ms is not None and ms < first_ms:
            # An empty answer would read as "there was nothing then" although nobody can know:
            # say what happened, as for times older than the retained snapshots.
            first = datetime.fromtimestamp(first_ms / 1000, tz=UTC)
            raise InvalidArgumentError(
                f"as_of {when.isoformat()} is before the lake's first commit ({first.isoformat()}); "
                "nothing was stored then",
                details={"first_commit": first.isoformat()},
            )
        return found

    def _build(
        self, tables: Sequence[views.LakeTable], *, only: set[str] | None = None, filtered: bool = False
    ) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB with the lake's views (or those ``only`` names), locked down;
        ``filtered``: its lake views filter rows by the querying cursor's ``Readable``."""
        s3 = self._s3_access()
        try:
            con = views.connect(
                extension_directory=self._extension_dir,
                temp_directory=self._temp_dir,
                memory_limit=self.settings.sql.memory_limit,
                remote=s3 is not None or any(views.local_path(t.location) == t.location for t in tables),
            )
        except Exception as exc:
            raise BackendUnavailableError(f"cannot start DuckDB with the iceberg extension: {exc}") from exc
        try:
            if s3 is not None:
                con.execute(s3.secret_sql())
            views.register_lake(con, [t for t in tables if only is None or t.name in only], filtered=filtered)
            views.register_views(con, only=only)
            views.lock_down(con, readable=views.allowed_directories(tables))
        except Exception as exc:
            con.close()
            raise self._missing_tables(tables) or BackendUnavailableError(
                f"cannot register the SQL views over the lake: {exc}"
            ) from exc
        return con

    def _database(
        self, needed: set[str] | None = None, *, filtered: bool = False
    ) -> tuple[duckdb.DuckDBPyConnection, tuple[tuple[str, str, int | None], ...]]:
        """A shared database, its ``lake`` views re-pointed at the tables' current snapshots.

        With ``needed`` (see ``_needed_names``), only those views and tables are registered, and
        more are added when a later query needs them; None registers everything. ``filtered``: the
        database whose lake views filter rows (always complete: its filters read other tables).
        """
        tables = self._current()
        key = _pinned_key(tables)
        if filtered:
            needed = None
        with self._lock:
            if self._closed:
                raise BackendUnavailableError("the SQL engine is closed")
            shared = self._shared[filtered]
            directories = views.allowed_directories(tables)
            if shared.db is None or directories != shared.directories:
                # a new table location: directories are locked, rebuild
                shared.db = self._build(tables, only=needed, filtered=filtered)
                shared.directories = directories
                shared.registered = None if needed is None else set(needed)
            else:
                registered = shared.registered
                moved = [
                    t for t in tables if shared.pinned.get(t.name) != t and (registered is None or t.name in registered)
                ]
                try:
                    if moved:
                        views.register_lake(shared.db, moved, filtered=filtered)
                    if registered is not None and (needed is None or not needed <= registered):
                        extra = None if needed is None else needed - registered
                        fresh = [t for t in tables if t.name not in registered and (extra is None or t.name in extra)]
                        views.register_lake(shared.db, fresh)
                        views.register_views(shared.db, only=extra)
                        shared.registered = None if extra is None else registered | extra
                except (duckdb.Error, ValueError) as exc:
                    raise BackendUnavailableError(f"cannot read the lake's tables: {_first_line(exc)}") from exc
            shared.pinned = {t.name: t for t in tables}
            return shared.db, key

    # -- queries ---------------------------------------------------------------------------------

    def query(
        self,
        sql: str,
        *,
        params: Sequence[Any] | None = None,
        as_of: datetime | None = None,
        max_rows: int | None = None,
        readable: Readable | None = None,
    ) -> pa.Table:
        """Run one sandboxed SELECT over the views; at most ``max_rows`` rows (see ``is_truncated``).

        ``readable``: the rows of which experiments and models the query may see (a user's, with
        authentication on); every view answers only those. None: every row.

        Raises:
            InvalidArgumentError: the SQL is refused, invalid, fails, or runs past the timeout.
            BackendUnavailableError: the lake cannot be read.
        """
        check_statement(sql)
        cap = self.settings.sql.max_rows
        if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
            raise InvalidArgumentError(f"max_rows must be a positive integer, got {max_rows!r}")
        limit = min(max_rows or cap, cap)
        if params is not None and not isinstance(params, (list, tuple)):
            raise InvalidArgumentError("params must be a list of values for the query's ? or $n placeholders")
        # A process without a store runs one query or a few: it registers only the views they use.
        needed = _needed_names(sql) if self._store is None and readable is None else None
        try:
            return self._query(sql, params=params, as_of=as_of, limit=limit, needed=needed, readable=readable)
        except InvalidArgumentError as exc:
            if needed is None or not isinstance(exc.__cause__, duckdb.CatalogException):
                raise
            # A name the query uses is not registered (or does not exist): answer as with every view,
            # so the error (and its "did you mean") is the one a full catalog gives.
            return self._query(sql, params=params, as_of=as_of, limit=limit, needed=None, readable=readable)

    def _query(
        self,
        sql: str,
        *,
        params: Sequence[Any] | None,
        as_of: datetime | None,
        limit: int,
        needed: set[str] | None,
        readable: Readable | None = None,
    ) -> pa.Table:
        filtered = readable is not None
        owned = None
        if as_of is None:
            db, key = self._database(needed, filtered=filtered)
        elif needed is None or filtered:
            db, key = self._past_database(self._as_of(as_of), filtered=filtered), None
        else:
            owned = self._build(self._as_of(as_of), only=needed)
            db, key = owned, None
        try:
            return self._run(db, None if filtered else key, sql, params, limit, readable=readable)
        finally:
            if owned is not None:
                owned.close()

    def _past_database(self, tables: Sequence[views.LakeTable], *, filtered: bool = False) -> duckdb.DuckDBPyConnection:
        """A database over ``tables`` pinned at past snapshots, kept for the next queries of the same time;
        ``filtered``: its lake views filter rows (see ``_build``)."""
        key = (filtered, _pinned_key(tables))
        with self._lock:
            if self._closed:
                raise BackendUnavailableError("the SQL engine is closed")
            found = self._past.get(key)
            if found is not None:
                self._past.move_to_end(key)
                return found
        db = self._build(tables, filtered=filtered)  # outside the lock: seconds on a loaded machine
        with self._lock:
            found = self._past.get(key)
            if found is not None:  # built meanwhile by another query of the same time
                db.close()
                return found
            self._past[key] = db
            while len(self._past) > _PAST_DATABASES:
                # Dropped, not closed: a query may still run on it; DuckDB closes it with its last cursor.
                self._past.popitem(last=False)
            return db

    def _run(
        self,
        db: duckdb.DuckDBPyConnection,
        key: tuple[tuple[str, str, int | None], ...] | None,
        sql: str,
        params: Sequence[Any] | None,
        limit: int,
        *,
        readable: Readable | None = None,
    ) -> pa.Table:
        cursor = db.cursor()
        timeout = self.settings.sql.timeout_s
        timer = threading.Timer(timeout, cursor.interrupt)
        timer.daemon = True
        timer.start()
        try:
            if readable is not None:  # a cursor of the filtered database without it reads nothing
                cursor.execute(readable.variable_sql())
            if "runs_wide" in sql.lower():
                cursor.execute(self._wide_variable(cursor, key))
            reader = cursor.execute(sql, list(params) if params else None).to_arrow_reader(8192)
            batches: list[pa.RecordBatch] = []
            rows = 0
            truncated = False
            for batch in reader:
                if rows + batch.num_rows > limit:
                    batches.append(batch.slice(0, limit - rows))
                    truncated = True
                    break
                batches.append(batch)
                rows += batch.num_rows
            result = pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.InterruptException as exc:
            raise InvalidArgumentError(f"SQL stopped: the statement ran longer than {timeout:g}s") from exc
        except duckdb.OutOfMemoryException as exc:
            raise InvalidArgumentError(
                f"SQL stopped: the statement needs more memory than the limit of {self.settings.sql.memory_limit} "
                "(sql.memory_limit, LAKEOPS_SQL__MEMORY_LIMIT); aggregate or filter more, or raise the limit"
            ) from exc
        except duckdb.PermissionException as exc:
            raise InvalidArgumentError(
                f"SQL refused: {_first_line(exc)} (user SQL reads only the lake's own tables; "
                "no local files, other buckets or URLs)"
            ) from exc
        except duckdb.Error as exc:
            if timer.finished.is_set() and not timer.is_alive():
                raise InvalidArgumentError(f"SQL stopped: the statement ran longer than {timeout:g}s") from exc
            raise InvalidArgumentError(f"SQL error: {_first_line(exc)}") from exc
        finally:
            timer.cancel()
            cursor.close()
        metadata = dict(result.schema.metadata or {})
        metadata[TRUNCATED_KEY] = b"true" if truncated else b"false"
        return result.replace_schema_metadata(metadata)

    def _wide_variable(
        self, cursor: duckdb.DuckDBPyConnection, key: tuple[tuple[str, str, int | None], ...] | None
    ) -> str:
        """``SET VARIABLE`` with the wide-form SQL of every experiment (cached per lake version)."""
        cached = self._wide
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        rows = cursor.execute(views.WIDE_KEYS_SQL).fetchall()
        statement = views.wide_variable_sql(rows)
        if key is not None:
            self._wide = (key, statement)
        return statement

    def external_script(self) -> str:
        """A DuckDB script that sets up these views in a DuckDB outside lakeops (``lakeops duckdb-init``)."""
        tables = self._current()
        con = self._build(tables)
        try:
            order = [
                r[0]
                for r in con.execute(
                    "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' ORDER BY view_oid"
                ).fetchall()
            ]
            wide = views.wide_variable_sql(con.execute(views.WIDE_KEYS_SQL).fetchall())
        finally:
            con.close()
        return views.external_script(tables, order=order, s3=self._s3_access(), wide_variable=wide)

    def _s3_access(self) -> views.S3Access | None:
        storage = self.settings.storage
        if storage.kind != "s3":
            return None
        secret = storage.secret_access_key
        return views.S3Access(
            endpoint=storage.endpoint,
            region=storage.region,
            access_key_id=storage.access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            path_style=storage.path_style,
        )

    def view_names(self) -> list[str]:
        """The named views and table macros users can query."""
        return sorted([*views.view_definitions(), *views.macro_definitions()])

    def close(self) -> None:
        """Release DuckDB. Idempotent."""
        with self._lock:
            self._closed = True
            for shared in self._shared.values():
                if shared.db is not None:
                    shared.db.close()
                    shared.db = None
            for db in self._past.values():
                db.close()
            self._past.clear()
