"""The PostgreSQL wire protocol over the lake's views, for BI tools (buenavista).

``lakeops serve --pg-port N`` starts ``PgWireServer`` beside the HTTP service. It speaks
enough of PostgreSQL's protocol (simple and extended queries, MD5 password authentication)
for psql, psycopg, JDBC and ODBC clients, so Metabase, Superset, Grafana, Tableau or DBeaver
connect as to a PostgreSQL server. Every statement goes through the same sandbox as
``POST /api/v1/sql`` (``lakeops.sql.SqlEngine``): one read-only SELECT, the timeout and the row cap.

Client chatter that PostgreSQL drivers send is answered without running anything:
``BEGIN``/``COMMIT``/``ROLLBACK`` (each query runs alone, read-only) and ``SET`` of harmless
session parameters (``application_name``, ``extra_float_digits``, ``client_encoding``,
``DateStyle``, ...). Any other ``SET`` is refused like every other statement.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import socketserver
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from buenavista import bv_dialects, postgres
from buenavista.backends.duckdb import DuckDBQueryResult
from buenavista.core import Connection, QueryResult, Session
from buenavista.rewrite import Rewriter

from lakeops.sql import Readable, SqlEngine

log = logging.getLogger(__name__)

# Session parameters PostgreSQL drivers set on connect; accepted and ignored (settings are locked).
CLIENT_PARAMETERS = frozenset(
    {
        "application_name",
        "bytea_output",
        "client_encoding",
        "client_min_messages",
        "datestyle",
        "extra_float_digits",
        "intervalstyle",
        "lc_monetary",
        "lc_numeric",
        "lc_time",
        "search_path",
        "standard_conforming_strings",
        "statement_timeout",
        "timezone",
        "time zone",
        "session characteristics as transaction isolation level read committed",
    }
)
_SET = re.compile(r"^\s*set\s+(?:session\s+|local\s+)?(.+?)\s*(?:=|\bto\b|$)", re.IGNORECASE | re.DOTALL)
_TXN = {
    "begin": "BEGIN",
    "begin read only": "BEGIN",
    "begin transaction": "BEGIN",
    "start transaction": "BEGIN",
    "start transaction read only": "BEGIN",
    "commit": "COMMIT",
    "end": "COMMIT",
    "rollback": "ROLLBACK",
    "abort": "ROLLBACK",
}
# Rewrites buenavista's DuckDB session makes so that catalog queries of BI tools run.
_REPLACEMENTS = (
    ("::regclass", ""),
    ("::regtype", ""),
    ("::regproc", ""),
    ("pg_get_expr(ad.adbin, ad.adrelid, true)", "pg_get_expr(ad.adbin, ad.adrelid)"),
    ("pg_catalog.current_schemas", "current_schemas"),
    ("pg_catalog.generate_series", "generate_series"),
    ("pg_catalog.PG_GET_USERBYID", ""),
)
_FIXED = {
    "show search_path": "SELECT 'main' AS search_path",
    "show transaction isolation level": "SELECT 'read committed' AS transaction_isolation",
    "select pg_catalog.version()": "SELECT 'PostgreSQL 9.3 (lakeops)' AS version",
    "select version()": "SELECT 'PostgreSQL 9.3 (lakeops)' AS version",
}


def _client_type(field: pa.Field) -> pa.Field:
    """A column type buenavista can send (null and dictionary columns are sent as text)."""
    typ = field.type
    if pa.types.is_null(typ) or pa.types.is_dictionary(typ) or pa.types.is_large_string(typ):
        return pa.field(field.name, pa.string())
    if pa.types.is_unsigned_integer(typ):
        return pa.field(field.name, pa.int64())
    return field


class _Result(DuckDBQueryResult):
    """An Arrow answer as buenavista's query result."""

    def __init__(self, table: pa.Table) -> None:
        schema = pa.schema([_client_type(f) for f in table.schema])
        if schema != table.schema:
            table = table.cast(schema)
        super().__init__(table.to_reader(), status="SELECT")


class _Status(QueryResult):
    """A command without rows (BEGIN, SET, ...)."""

    def __init__(self, status: str) -> None:
        super().__init__()
        self._status = status

    def has_results(self) -> bool:
        return False

    def column_count(self) -> int:
        return 0

    def rows(self) -> Any:
        return iter([])

    def status(self) -> str:
        return self._status


class SandboxedSession(Session):
    """One client connection: every statement goes through ``SqlEngine.query``."""

    def __init__(self, engine: SqlEngine) -> None:
        super().__init__()
        self._engine = engine
        self._in_txn = False
        # With lakeops users logging in: what this session's user may read, asked per query.
        self.readable: Callable[[], Readable | None] = lambda: None

    def cursor(self) -> None:
        return None

    def close(self) -> None:
        self._in_txn = False

    def in_transaction(self) -> bool:
        return self._in_txn

    def execute_sql(self, sql: str, params: Any = None) -> QueryResult:
        text = sql.strip().rstrip(";").strip()
        lowered = " ".join(text.lower().split())
        if not lowered:
            return _Status("EMPTY")
        if lowered in _TXN:
            status = _TXN[lowered]
            self._in_txn = status == "BEGIN"
            return _Status(status)
        match = _SET.match(text)
        if match and " ".join(match.group(1).lower().split()) in CLIENT_PARAMETERS:
            return _Status("SET")
        text = _FIXED.get(lowered, text)
        for old, new in _REPLACEMENTS:
            text = text.replace(old, new)
        return _Result(self._engine.query(text, params=list(params) if params else None, readable=self.readable()))


class SandboxedConnection(Connection):
    """Hands each client a sandboxed session over the shared engine."""

    def __init__(self, engine: SqlEngine) -> None:
        super().__init__()
        self._engine = engine

    def new_session(self) -> Session:
        return SandboxedSession(self._engine)

    def parameters(self) -> dict[str, str]:
        return {
            "server_version": "9.3.lakeops",
            "client_encoding": "UTF8",
            "DateStyle": "ISO",
            "TimeZone": "UTC",
            "integer_datetimes": "on",
            "standard_conforming_strings": "on",
        }


class _Passwords(dict[str, str]):
    """user -> password; an unknown user gets a random password, so the login fails like a wrong one."""

    def __missing__(self, key: str) -> str:
        return secrets.token_hex(32)


# psql's and BI tools' catalog queries use PostgreSQL-only syntax; rewritten before sqlglot sees them.
_PG_SYNTAX = (
    (re.compile(r"OPERATOR\(pg_catalog\.([^)\s]+)\)", re.IGNORECASE), r"\1"),
    (re.compile(r"\s+COLLATE\s+pg_catalog\.\w+", re.IGNORECASE), ""),
    (re.compile(r"pg_catalog\.pg_get_userbyid\([^)]*\)", re.IGNORECASE), "'lakeops'"),
    (re.compile(r"pg_catalog\.pg_table_is_visible\([^)]*\)", re.IGNORECASE), "true"),
    (re.compile(r"::(?:pg_catalog\.)?reg(?:type|class|proc)\b", re.IGNORECASE), ""),
    (re.compile(r"(?:pg_catalog\.)?pg_get_expr\(([^,()]+),([^,()]+),\s*true\)", re.IGNORECASE), r"pg_get_expr(\1,\2)"),
    (re.compile(r"::pg_catalog\.(\w+)", re.IGNORECASE), r"::\1"),
)


class _Rewriter(Rewriter):
    """buenavista's PostgreSQL -> DuckDB rewrite (sqlglot); SQL it cannot parse passes unchanged."""

    def rewrite(self, sql: str) -> str:
        for pattern, replacement in _PG_SYNTAX:
            sql = pattern.sub(replacement, sql)
        rewritten: str = super().rewrite(sql)
        return rewritten


def _text_param(value: str, type_oid: int) -> Any:
    """A parameter sent in text format, typed by its PostgreSQL type oid (unknown/text stay text)."""
    if type_oid in (20, 21, 23, 26):
        return int(value)
    if type_oid in (700, 701, 1700):
        return float(value)
    if type_oid == 16:
        return value.lower() in ("t", "true", "1", "yes", "on")
    return value


_SSL_REQUEST = 80877103
_CANCEL_REQUEST = 80877102


class _Handler(postgres.BuenaVistaHandler):
    """buenavista's handler, with parameters in text format typed by their oid, and TLS.

    buenavista parses every untyped text parameter (oid 0, which psycopg uses for ``str``) as a
    date; here text stays text, and numbers and booleans become numbers and booleans.

    With a certificate (``tls.certfile``), a client's SSLRequest is answered ``S`` and the
    connection continues inside TLS (PostgreSQL's negotiation, ``sslmode=require``); a client that
    starts without TLS is refused before any password is sent.
    """

    _tls: ssl.SSLSocket | None = None

    def handle_startup(self, conn: Connection) -> Any:
        context: ssl.SSLContext | None = getattr(self.server, "ssl_context", None)
        if context is None or self._tls is not None:
            return super().handle_startup(conn)
        this: Any = self  # buenavista's handler is untyped
        length = this.r.read_uint32() - 4
        code = this.r.read_uint32()
        if code == _SSL_REQUEST:
            this.wfile.write(b"S")
            this.wfile.flush()
            self._tls = context.wrap_socket(self.request, server_side=True)
            this.rfile = self._tls.makefile("rb")
            this.wfile = socketserver._SocketWriter(self._tls)  # type: ignore[attr-defined] # as StreamRequestHandler
            this.r = postgres.BVBuffer(this.rfile)
            return super().handle_startup(conn)
        if code == _CANCEL_REQUEST:  # as buenavista answers it
            process_id, secret_key = this.r.read_uint32(), this.r.read_uint32()
            ctx = self.server.ctxts.get(process_id)
            if ctx and ctx.secret_key == secret_key:
                self.server.conn.close_session(ctx.session)
                del self.server.ctxts[ctx.process_id]
            return None
        this.r.read_bytes(max(length - 4, 0))
        self.send_error("this server requires TLS: connect with sslmode=require (or verify-ca, verify-full)")
        return None

    def finish(self) -> None:
        super().finish()
        if self._tls is not None:
            self._tls.close()

    def send_auth_request(self, ctx: Any) -> None:
        if getattr(self.server, "check_login", None) is None:
            super().send_auth_request(ctx)
            return
        # lakeops users: the password (or an API token) is checked against its argon2 hash, which
        # needs it in clear (AuthenticationCleartextPassword); use TLS in front on untrusted networks.
        self.wfile.write(struct.pack("!cii", postgres.ServerResponse.AUTHENTICATION_REQUEST, 8, 3))

    def handle_md5_password(self, ctx: Any, payload: bytes) -> None:
        check_login = getattr(self.server, "check_login", None)
        if check_login is None:
            super().handle_md5_password(ctx, payload)
            return
        password = payload.decode("utf-8", errors="replace").rstrip("\x00")
        readable = check_login(str(ctx.params.get("user", "")), password)
        if readable is not None:
            ctx.session.readable = readable  # the session's SQL sees only what its user may read
            self.send_authentication_ok()
            self.handle_post_auth(ctx)
        else:
            self.send_error("password authentication failed")

    def handle_bind(self, ctx: Any, payload: bytes) -> None:
        data = bytearray(payload)
        portal_end = data.index(postgres.NULL_BYTE)
        portal = data[:portal_end].decode("utf-8")
        stmt_end = data.index(postgres.NULL_BYTE, portal_end + 1)
        stmt = data[portal_end + 1 : stmt_end].decode("utf-8")
        buf = postgres.BVBuffer(io.BytesIO(data[stmt_end + 1 :]))
        formats = [buf.read_int16() for _ in range(buf.read_int16())]
        count = buf.read_int16()
        formats = (formats * count)[:count] if len(formats) == 1 else formats or [0] * count
        oids = ctx.stmts[stmt][1]
        params: list[Any] = []
        for i in range(count):
            size = buf.read_int32()
            if size < 0:
                params.append(None)
                continue
            raw = buf.read_bytes(size)
            oid = oids[i] if i < len(oids) else 0
            if formats[i] == 0:
                params.append(_text_param(raw.decode("utf-8"), oid))
            elif oid in postgres.TYPE_OIDS and postgres.TYPE_OIDS[oid][1]:
                params.append(struct.unpack(postgres.TYPE_OIDS[oid][1], raw)[0])
            elif oid in (0, 25, 1043):
                params.append(raw.decode("utf-8"))
            else:
                raise ValueError(f"unsupported binary parameter of type oid {oid}; send it as text")
        result_formats = [buf.read_int16() for _ in range(buf.read_int16())]
        ctx.add_portal(portal, stmt, params, result_formats)
        self.send_bind_complete()


class PgWireServer(postgres.BuenaVistaServer):
    """A threaded PostgreSQL-wire server over ``engine`` with MD5 password authentication."""

    daemon_threads = True

    def __init__(
        self,
        engine: SqlEngine,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        check_login: Callable[[str, str], Callable[[], Readable | None] | None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``check_login(user, password)``: log in lakeops users instead of the one ``user``/``password``;
        it answers None to refuse, else what the session's SQL may read (asked before each query)."""
        if not password and check_login is None:
            raise ValueError("the PostgreSQL endpoint needs a password (sql.pg_password)")
        super().__init__(
            (host, port),
            SandboxedConnection(engine),
            rewriter=_Rewriter(bv_dialects.BVPostgres(), bv_dialects.BVDuckDB()),
            auth=_Passwords({user: password}),
        )
        self.check_login = check_login
        self.ssl_context = ssl_context  # TLS required of every client when set
        self.RequestHandlerClass = _Handler
        self._thread: threading.Thread | None = None

    def verify_request(self, request: Any, client_address: Any) -> bool:  # noqa: ARG002 - socketserver's signature
        return True  # every client must log in with the password

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="lakeops-pgwire", daemon=True)
        self._thread.start()
        log.info("PostgreSQL wire protocol on %s:%d", *self.server_address[:2])

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
