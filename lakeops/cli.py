"""The ``lakeops`` command line: serve, demo, sql, queries, duckdb-init, maintain, gc, migrate-catalog, info."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeops.settings import LakeopsSettings

if TYPE_CHECKING:
    from lakeops.lake import Lake


def _lake(settings: LakeopsSettings, **options: Any) -> Lake:
    """The lake the settings name, opened the one way the app and the client open it (lakeops/lake.py)."""
    from lakeops.lake import Lake

    return Lake(settings, **options)


def cmd_demo(args: argparse.Namespace) -> int:
    """Log a small hyper-parameter sweep and print the best runs."""
    settings = LakeopsSettings()
    lake = _lake(settings)
    store, tracking = lake.store, lake.tracking
    try:
        name = args.experiment
        try:
            experiment_id = tracking.get_experiment_by_name(name).experiment_id
        except Exception:
            experiment_id = tracking.create_experiment(name, tags={"team": "demo"})
        rng = random.Random(42)
        started = time.perf_counter()
        for lr in (0.001, 0.01, 0.1):
            for depth in (2, 4, 8):
                run = tracking.create_run(experiment_id, run_name=f"lr{lr}-d{depth}", user_id="demo")
                tracking.log_batch(run.info.run_id, params={"lr": lr, "depth": depth}, tags={"model": "gbm"})
                now = int(time.time() * 1000)
                loss = 1.0
                points = []
                for step in range(args.steps):
                    loss *= 1 - lr * rng.uniform(0.5, 1.5) / math.sqrt(depth)
                    points.append(("loss", loss, now + step, step))
                tracking.log_batch(run.info.run_id, metrics=points)
                tracking.log_metric(run.info.run_id, "accuracy", round(1 - loss / 2, 4), timestamp=now)
                tracking.update_run(run.info.run_id, status="FINISHED", end_time=int(time.time() * 1000))
        elapsed = time.perf_counter() - started
        page = tracking.search_runs(
            [experiment_id],
            filter_string="params.depth != '2' AND metrics.accuracy > 0",
            order_by=["metrics.accuracy DESC"],
            max_results=5,
        )
        print(f"lakeops demo: 9 runs x {args.steps} steps logged to experiment {name!r} in {elapsed:.2f}s")
        print(f"warehouse: {settings.warehouse()}")
        print(f"{'run_name':<14} {'lr':>6} {'depth':>5} {'accuracy':>9}")
        for run in page.runs:
            acc = run.metrics["accuracy"].value
            print(f"{run.info.run_name:<14} {run.params['lr']:>6} {run.params['depth']:>5} {acc:>9.4f}")
    finally:
        store.close()
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Free (or list, in a dry run) the artifact bytes nothing references any more."""
    return _collect_garbage(args, LakeopsSettings())


def cmd_maintain(args: argparse.Namespace) -> int:
    """Compact small files and expire old snapshots now (or apply checkpoint retention)."""
    settings = LakeopsSettings()
    if args.checkpoints:
        return _maintain_checkpoints(args, settings)
    if args.gc:
        return _collect_garbage(args, settings)
    from catalog.tables import TABLES
    from lakeops.progress import progress_bar

    store = _lake(settings, start_committer=False).store
    try:
        with progress_bar(len(TABLES), desc="maintaining", unit="tables", enabled=args.progress) as bar:
            report = store.maintain(
                compact=not args.no_compact,
                expire=not args.no_expire,
                on_table=lambda name: (bar.set_postfix_str(name), bar.update(1)),
            )
    finally:
        store.close()
    print(json.dumps(report, indent=2))
    return 0


def _maintain_checkpoints(args: argparse.Namespace, settings: LakeopsSettings) -> int:
    """Apply each run's checkpoint retention policy (a dry run unless --apply); print the report."""
    from lakeops.errors import LakeopsError
    from lakeops.services.checkpoints import RetentionPolicy

    try:
        default = RetentionPolicy(
            keep_last=args.keep_last,
            keep_best=args.keep_best,
            metric=args.metric,
            mode=args.mode,
            keep_every=args.keep_every,
        ).check()
    except (ValueError, LakeopsError) as exc:
        print(f"lakeops: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    lake = _lake(settings, start_committer=False, actor="lakeops maintain")
    store, checkpoints = lake.store, lake.checkpoints
    try:
        try:
            report = checkpoints.apply_retention(
                default=None if default.is_empty() else default, dry_run=args.dry_run, run_ids=args.run or None
            )
        except LakeopsError as exc:
            print(f"lakeops: {exc.message}", file=sys.stderr)
            return 2
    finally:
        store.close()
    print(json.dumps(report.model_dump(), indent=2))
    return 0


def _collect_garbage(args: argparse.Namespace, settings: LakeopsSettings) -> int:
    """Free artifact bytes nothing references (a dry run unless --apply); print the report."""
    from lakeops.services.gc import GarbageCollector

    if args.grace < 0:
        print("lakeops: --grace must be >= 0 seconds", file=sys.stderr)
        return 2
    lake = _lake(settings, start_committer=False)
    store = lake.store
    try:
        collector = GarbageCollector(store, lake.objects)
        report = collector.collect(grace_s=args.grace, dry_run=args.dry_run)
    finally:
        store.close()
    print(json.dumps(report.model_dump(), indent=2))
    return 0


def cmd_info(_args: argparse.Namespace) -> int:
    """Print where the lake is and what it holds."""
    settings = LakeopsSettings()
    store = _lake(settings, start_committer=False).store
    try:
        info = {
            **settings.describe(),
            "experiments": len(store.state.experiments),
            "runs": len(store.state.runs),
            "tables": {
                name: (store.table(name).metadata.current_snapshot() or None)
                and store.table(name).metadata.current_snapshot().summary.additional_properties.get("total-records")  # type: ignore[union-attr]
                for name in ("experiment_changes", "run_changes", "tag_changes", "params", "metrics")
            },
        }
    finally:
        store.close()
    print(json.dumps(info, indent=2, default=str))
    return 0


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# Longer than any client's idle keep-alive (httpx: 5 s, the same as uvicorn's default), so a
# client never sends on a connection the server is closing at that very moment.
KEEP_ALIVE_S = 65


def _log_config(level: str) -> dict[str, object]:
    """uvicorn's logging, with times: the server's own lines and one access line per request."""
    stamp = "%(asctime)s %(levelname)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": f"{stamp} %(name)s: %(message)s"},
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": f'{stamp} %(client_addr)s "%(request_line)s" %(status_code)s',
            },
        },
        "handlers": {
            "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "": {"handlers": ["default"], "level": level.upper() if level != "trace" else "DEBUG"},
            "uvicorn": {"level": level.upper() if level != "trace" else "DEBUG", "propagate": True},
            "uvicorn.error": {"level": level.upper() if level != "trace" else "DEBUG"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            # Its import logs hundreds of INFO lines about its own docs registry.
            "great_expectations": {"level": "WARNING"},
        },
    }


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("lakeops users: the passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    """Users, API tokens and permission grants of the lake (what `lakeops serve` with auth on checks)."""
    from lakeops.errors import LakeopsError

    settings = LakeopsSettings()
    lake = _lake(settings, start_committer=False)
    store, auth = lake.store, lake.auth
    try:
        action = args.action
        if action == "list":
            for user in auth.list_users():
                print(f"{user.username}{' (admin)' if user.is_admin else ''}")
        elif action == "create":
            user = auth.create_user(args.username, _read_password(args), is_admin=args.admin)
            print(f"created user {user.username!r}{' (admin)' if user.is_admin else ''}")
        elif action == "delete":
            auth.delete_user(args.username)
            print(f"deleted user {args.username!r}")
        elif action == "set-password":
            auth.update_password(args.username, _read_password(args))
            print(f"changed the password of {args.username!r}")
        elif action == "set-admin":
            auth.update_admin(args.username, args.admin)
            print(f"{args.username!r} is {'now' if args.admin else 'no longer'} an admin")
        elif action == "token":
            token, info = auth.create_token(args.username, name=args.name, days=args.days)
            print(token)
            print(f"token {info.token_id} for {info.username}; shown once, store it now", file=sys.stderr)
        elif action == "tokens":
            for t in auth.list_tokens(args.username):
                print(f"{t.token_id}  {t.username}  expires_at={t.expires_at}  {t.name or ''}".rstrip())
        elif action == "revoke":
            auth.revoke_token(args.token_id)
            print(f"revoked token {args.token_id}")
        elif action == "grant":
            auth.grant(args.resource_type, args.resource_id, args.username, args.permission)
            print(f"{args.username} has {args.permission} on {args.resource_type} {args.resource_id}")
        elif action == "ungrant":
            auth.revoke(args.resource_type, args.resource_id, args.username)
            print(f"{args.username}'s grant on {args.resource_type} {args.resource_id} removed")
    except LakeopsError as exc:
        print(f"lakeops users: {exc.message}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service (native API, MLflow protocol) on the configured lake."""
    import uvicorn

    from api.main import create_app  # imported here: the domain never imports api at import time
    from lakeops.errors import LakeopsError

    settings = LakeopsSettings()
    if args.ssl_certfile or args.ssl_keyfile:
        from lakeops.settings import TlsConfig

        try:
            tls = TlsConfig(certfile=args.ssl_certfile, keyfile=args.ssl_keyfile)
        except ValueError:
            print("lakeops serve: --ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
            return 2
        settings = settings.model_copy(update={"tls": tls})
    if settings.tls.enabled:
        problem = _tls_problem(settings.tls.certfile, settings.tls.keyfile)
        if problem:
            print(f"lakeops serve: cannot use the TLS certificate: {problem}", file=sys.stderr)
            return 2
    exposed = [h for h in {args.host, args.pg_host or args.host} if not _is_loopback(h)]
    if exposed and not settings.auth.enabled and not args.allow_no_auth:
        print(
            f"lakeops serve: refusing to serve {', '.join(exposed)} (beyond this machine) without authentication: "
            "turn it on (LAKEOPS_AUTH__ENABLED=true, LAKEOPS_AUTH__ADMIN_PASSWORD=...; README: Security), or pass "
            "--allow-no-auth if something in front of lakeops authenticates",
            file=sys.stderr,
        )
        return 2
    try:
        app = create_app(settings, pg_port=args.pg_port, pg_host=args.pg_host or args.host)
    except LakeopsError as exc:
        print(f"lakeops: {exc.message}", file=sys.stderr)
        return 2
    level = args.log_level or "info"

    class Server(uvicorn.Server):
        """uvicorn's server, saying where it serves once the lake is open and the port accepts connections."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.started:
                return
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            scheme = "https" if settings.tls.enabled else "http"
            print(f"lakeops serving {settings.warehouse()} on {scheme}://{host}:{port} (docs at /docs)", flush=True)
            if args.pg_port is not None:
                print(f"PostgreSQL wire protocol on {args.pg_host or args.host}:{args.pg_port}", flush=True)
            if args.preload:
                from lakeops.quality.suites import preload_in_background

                preload_in_background()

    print(f"lakeops: opening the lake at {settings.warehouse()} ...", flush=True)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=level,
        log_config=_log_config(level),
        access_log=args.access_log and level in ("info", "debug", "trace"),
        timeout_keep_alive=KEEP_ALIVE_S,
        ssl_certfile=str(settings.tls.certfile) if settings.tls.certfile else None,
        ssl_keyfile=str(settings.tls.keyfile) if settings.tls.keyfile else None,
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: uvicorn has shut down cleanly; no traceback
        Server(config).run()
    return 0


def _tls_problem(certfile: Path | None, keyfile: Path | None) -> str | None:
    """Why the certificate and key cannot serve TLS (unreadable, not PEM, not a pair), or None."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(certfile), str(keyfile))
    except (OSError, ssl.SSLError) as exc:
        return f"{certfile}, {keyfile}: {exc}"
    return None


def _param(text: str) -> object:
    """A ``--param`` value, as text, as psql passes parameters.

    DuckDB gives a text parameter the type of what it is compared with, so ``-p 0.5`` works
    against a DOUBLE column and ``-p 1234`` against the VARCHAR ``experiment_id``; guessing
    ``1234`` to be a number instead made ``experiment_id = ?`` fail with a conversion error.
    Cast where there is nothing to compare with (``?::INTEGER + 1``).
    """
    return text


def _box(table: object, *, max_chars: int = 60) -> str:
    """The answer as a box-drawn table for the terminal (names, types, then every row).

    Hand-written rather than borrowed: polars' renderer costs ~0.2 CPU-s to import and DuckDB's
    imports pandas through pyarrow.dataset (~0.3 CPU-s), a third of what a small query may cost.
    """
    import pyarrow as pa

    assert isinstance(table, pa.Table)

    def cell(value: object) -> str:
        text = "null" if value is None else str(value)
        text = text.replace("\n", " ")
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    columns = [[cell(v) for v in column.to_pylist()] for column in table.columns]
    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type) for f in table.schema
    ]
    heads = [[name, "---", str(f.type)] for name, f in zip(table.column_names, table.schema, strict=True)]
    widths = [max(len(t) for t in [*head, *values]) for head, values in zip(heads, columns, strict=True)]

    def line(cells: list[str], right: list[bool]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "│ " + " ┆ ".join(padded) + " │"

    left = [False] * len(widths)
    out = ["┌─" + "─┬─".join("─" * w for w in widths) + "─┐"]
    out += [line([head[i] for head in heads], left) for i in range(3)]
    out.append("╞═" + "═╪═".join("═" * w for w in widths) + "═╡")
    out += [line([values[r] for values in columns], numeric) for r in range(table.num_rows)]
    out.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    return "\n".join(out) + "\n"


def _print_table(table: object, fmt: str, output: str | None) -> None:
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, output or sys.stdout.buffer)
        return
    if fmt == "csv":
        import io

        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        text = buffer.getvalue().decode()
    elif fmt == "json":
        text = json.dumps(table.to_pylist(), default=str, indent=1) + "\n"
    else:
        text = _box(table)
    if output:
        with open(output, "w") as handle:  # noqa: PTH123 - a user-given path
            handle.write(text)
    else:
        sys.stdout.write(text)


def cmd_sql(args: argparse.Namespace) -> int:
    """Run one sandboxed SELECT over the views (or a saved query) and print the answer."""
    from datetime import datetime

    from lakeops.errors import LakeopsError
    from lakeops.sql import SqlEngine, is_truncated

    settings = LakeopsSettings()
    text = sys.stdin.read() if args.query == "-" else args.query
    try:
        as_of = datetime.fromisoformat(args.as_of.replace("Z", "+00:00")) if args.as_of else None
    except ValueError:
        print(f"lakeops sql: --as-of must be an ISO-8601 time, got {args.as_of!r}", file=sys.stderr)
        return 2
    if (text is None) == (args.saved is None):
        print("lakeops sql: give either a SELECT or --saved NAME", file=sys.stderr)
        return 2
    try:
        engine = SqlEngine(settings)
        try:
            if args.saved is not None:
                found = engine.query("SELECT sql FROM saved_queries WHERE name = ?", params=[args.saved])
                if not found.num_rows:
                    print(f"lakeops sql: no saved query named {args.saved!r}", file=sys.stderr)
                    return 2
                text = found.column("sql")[0].as_py()
            params = [_param(p) for p in args.param] or None
            table = engine.query(str(text), params=params, as_of=as_of, max_rows=args.max_rows)
        finally:
            engine.close()
    except LakeopsError as exc:
        print(f"lakeops sql: {exc.message}", file=sys.stderr)
        return 2
    _print_table(table, args.format, args.output)
    if is_truncated(table):
        print(f"lakeops sql: answer cut at {table.num_rows} rows (--max-rows)", file=sys.stderr)
    return 0


def cmd_queries(args: argparse.Namespace) -> int:
    """Saved queries: list, show, save, delete."""
    from lakeops.errors import LakeopsError
    from lakeops.sql import SqlEngine

    settings = LakeopsSettings()
    try:
        if args.action in ("list", "show"):
            engine = SqlEngine(settings)
            try:
                if args.action == "list":
                    table = engine.query(
                        "SELECT name, description, author, updated_at FROM saved_queries ORDER BY name"
                    )
                else:
                    table = engine.query("SELECT * FROM saved_queries WHERE name = ?", params=[args.name])
                    if not table.num_rows:
                        print(f"lakeops queries: no saved query named {args.name!r}", file=sys.stderr)
                        return 2
            finally:
                engine.close()
            _print_table(table, args.format, None)
            return 0
        lake = _lake(settings, start_committer=False)
        try:
            service = lake.saved_queries
            if args.action == "save":
                sql_text = sys.stdin.read() if args.sql == "-" else args.sql
                saved = service.save(
                    args.name, sql_text, description=args.description, author=args.author, replace=args.replace
                )
                print(json.dumps(saved.to_dict(), indent=1))
            else:
                service.delete(args.name)
                print(f"deleted saved query {args.name!r}")
        finally:
            lake.close()
    except LakeopsError as exc:
        print(f"lakeops queries: {exc.message}", file=sys.stderr)
        return 2
    return 0


def cmd_duckdb_init(args: argparse.Namespace) -> int:
    """Print a DuckDB script that sets up the lakeops views over this lake in any DuckDB."""
    from lakeops.errors import LakeopsError
    from lakeops.sql import SqlEngine

    try:
        engine = SqlEngine(LakeopsSettings())
        try:
            script = engine.external_script()
        finally:
            engine.close()
    except LakeopsError as exc:
        print(f"lakeops duckdb-init: {exc.message}", file=sys.stderr)
        return 2
    if args.output:
        with open(args.output, "w") as handle:  # noqa: PTH123 - a user-given path
            handle.write(script)
    else:
        sys.stdout.write(script)
    return 0


def cmd_migrate_catalog(args: argparse.Namespace) -> int:
    """Register the lake's tables from a SQL catalog in the configured one (no data rewritten)."""
    from catalog.connection import open_catalog
    from catalog.migration import copy_pointers
    from lakeops.stores.iceberg import CATALOG_NAME

    settings = LakeopsSettings()
    source_uri = args.source or f"sqlite:///{settings.home / 'catalog.db'}"
    target_props = settings.catalog_properties()
    if target_props.get("uri") == source_uri:
        print("lakeops migrate-catalog: the configured catalog is the source; choose another kind", file=sys.stderr)
        return 2
    source_props = {**settings.storage.to_properties(), "type": "sql", "uri": source_uri}
    source_props["warehouse"] = settings.warehouse()
    try:
        source = open_catalog(CATALOG_NAME, source_props)
        if not source.namespace_exists(settings.namespace):
            print(f"lakeops migrate-catalog: {source_uri} has no namespace {settings.namespace!r}", file=sys.stderr)
            return 2
        target = open_catalog(CATALOG_NAME, target_props)
        moved = copy_pointers(source, target, settings.namespace, dry_run=args.dry_run)
    except Exception as exc:
        print(f"lakeops migrate-catalog: {settings.redact(str(exc))}", file=sys.stderr)
        return 2
    for table in moved:
        print(f"{table.outcome:<10} {settings.namespace}.{table.name}  {table.metadata_location}")
    diverged = [t.name for t in moved if t.outcome == "diverged"]
    verb = "would register" if args.dry_run else "registered"
    count = sum(t.outcome == "registered" for t in moved)
    print(
        f"lakeops migrate-catalog: {verb} {count} of {len(moved)} tables in the {settings.catalog.kind} catalog "
        f"at {settings.warehouse()}; no data file rewritten"
    )
    if diverged:
        print(f"lakeops migrate-catalog: the target already moved on for {', '.join(diverged)}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="lakeops", description="Lakehouse-native ML metadata on Apache Iceberg.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="log a small sweep on the configured lake and show the best runs")
    demo.add_argument("--experiment", default="demo-sweep")
    demo.add_argument("--steps", type=int, default=200)
    demo.set_defaults(func=cmd_demo)
    maintain = sub.add_parser("maintain", help="compact small files and expire old snapshots")
    maintain.add_argument("--no-compact", action="store_true")
    maintain.add_argument("--no-expire", action="store_true")
    task = maintain.add_mutually_exclusive_group()
    task.add_argument(
        "--checkpoints",
        action="store_true",
        help="apply checkpoint retention policies instead of table maintenance (see below)",
    )
    task.add_argument(
        "--gc",
        action="store_true",
        help="free artifact bytes that no artifact version, checkpoint, time-travel snapshot or "
        "upload in progress references, instead of table maintenance",
    )
    mode = maintain.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run", dest="dry_run", action="store_true", default=True, help="--checkpoints/--gc: report only (default)"
    )
    mode.add_argument("--apply", dest="dry_run", action="store_false", help="--checkpoints/--gc: do it")
    maintain.add_argument(
        "--grace",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="--gc: keep bytes unreferenced for less than this (default one day; at least the snapshot retention)",
    )
    retention = maintain.add_argument_group(
        "checkpoint retention",
        "With --checkpoints, apply each run's retention policy (tags lakeops.checkpoints.* on the run or "
        "its experiment; the options below are the default for runs without one).",
    )
    retention.add_argument("--keep-last", type=int, metavar="N", help="keep the N highest steps")
    retention.add_argument("--keep-best", type=int, metavar="K", help="keep the K best by --metric")
    retention.add_argument("--metric", help="the checkpoint metric --keep-best ranks by")
    retention.add_argument("--mode", choices=["min", "max"], default="min", help="min: lowest is best (default)")
    retention.add_argument("--keep-every", type=int, metavar="N", help="keep every step divisible by N")
    retention.add_argument("--run", action="append", metavar="RUN_ID", help="only this run (repeatable)")
    maintain.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    maintain.set_defaults(func=cmd_maintain)
    gc = sub.add_parser(
        "gc",
        help="free artifact bytes nothing references any more (the same as maintain --gc; a dry run unless --apply)",
    )
    gc_mode = gc.add_mutually_exclusive_group()
    gc_mode.add_argument("--dry-run", dest="dry_run", action="store_true", default=True, help="report only (default)")
    gc_mode.add_argument("--apply", dest="dry_run", action="store_false", help="free the bytes the report lists")
    gc.add_argument(
        "--grace",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="keep bytes unreferenced for less than this (default one day; at least the snapshot retention)",
    )
    gc.set_defaults(func=cmd_gc)
    serve = sub.add_parser("serve", help="run the HTTP service: native API at /api/v1, MLflow protocol at /api/2.0")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument(
        "--pg-port", type=int, default=None, help="also serve the SQL views over the PostgreSQL wire protocol"
    )
    serve.add_argument("--pg-host", default=None, help="address of the PostgreSQL endpoint (default: --host)")
    serve.add_argument(
        "--log-level", choices=LOG_LEVELS, default=None, help="server log level (default: info, with an access log)"
    )
    serve.add_argument(
        "--preload",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="import great-expectations in the background once serving, not in the first suite request",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one line per request on stdout (default: on at level info)",
    )
    serve.add_argument(
        "--ssl-certfile", type=Path, default=None, help="serve HTTPS and TLS on the PostgreSQL endpoint (tls.certfile)"
    )
    serve.add_argument("--ssl-keyfile", type=Path, default=None, help="the certificate's private key (tls.keyfile)")
    serve.add_argument(
        "--allow-no-auth",
        action="store_true",
        help="serve a non-loopback address without authentication (only behind something that authenticates)",
    )
    serve.set_defaults(func=cmd_serve)
    users = sub.add_parser("users", help="users, API tokens and permissions (for `lakeops serve` with auth on)")
    user_actions = users.add_subparsers(dest="action", required=True)
    user_actions.add_parser("list", help="list users")
    for name, text in (("create", "create a user"), ("set-password", "change a user's password")):
        one = user_actions.add_parser(name, help=text)
        one.add_argument("username")
        one.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
        if name == "create":
            one.add_argument("--admin", action="store_true", help="an admin: MANAGE on everything, manages users")
    user_actions.add_parser("delete", help="delete a user").add_argument("username")
    admin = user_actions.add_parser("set-admin", help="make a user an admin (--no-admin: not)")
    admin.add_argument("username")
    admin.add_argument("--admin", action=argparse.BooleanOptionalAction, default=True)
    token = user_actions.add_parser("token", help="issue an API token (printed once)")
    token.add_argument("username")
    token.add_argument("--name", help="what the token is for")
    token.add_argument("--days", type=float, default=None, help="valid for this many days (default: auth.token_days)")
    tokens = user_actions.add_parser("tokens", help="list API tokens (not the tokens themselves)")
    tokens.add_argument("username", nargs="?")
    user_actions.add_parser("revoke", help="revoke an API token").add_argument("token_id")
    for name, text in (
        ("grant", "give a user a level on an experiment or model, or make them a workspace member"),
        ("ungrant", "remove a grant or a membership"),
    ):
        one = user_actions.add_parser(name, help=text)
        one.add_argument("username")
        one.add_argument("resource_type", choices=["experiment", "registered_model", "workspace"])
        one.add_argument("resource_id", help="experiment id, registered model name, or workspace name")
        if name == "grant":  # USE: for workspace members only
            one.add_argument("permission", choices=["READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS"])
    users.set_defaults(func=cmd_users)
    sql = sub.add_parser("sql", help="run one read-only SELECT over the lakeops views and print the answer")
    sql.add_argument("query", nargs="?", help="the SELECT; '-' reads it from stdin")
    sql.add_argument("--saved", metavar="NAME", help="run the saved query NAME instead")
    sql.add_argument(
        "-p", "--param", action="append", default=[], help="value (text) of the next ? placeholder; repeat for more"
    )
    sql.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    sql.add_argument("--as-of", metavar="TIME", help="ISO-8601 time: read the tables as they were then")
    sql.add_argument("--max-rows", type=int, default=None)
    sql.add_argument("-o", "--output", help="write the answer to this file (parquet: default stdout)")
    sql.set_defaults(func=cmd_sql)
    queries = sub.add_parser("queries", help="saved queries: list, show, save, delete")
    actions = queries.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list saved queries")
    listing.add_argument("--format", choices=["table", "csv", "json"], default="table")
    show = actions.add_parser("show", help="show one saved query")
    show.add_argument("name")
    show.add_argument("--format", choices=["table", "csv", "json"], default="json")
    save = actions.add_parser("save", help="save a named query")
    save.add_argument("name")
    save.add_argument("sql", help="the SELECT; '-' reads it from stdin")
    save.add_argument("--description")
    save.add_argument("--author")
    save.add_argument("--replace", action="store_true", help="replace an existing query of that name")
    delete = actions.add_parser("delete", help="delete a saved query")
    delete.add_argument("name")
    queries.set_defaults(func=cmd_queries)
    init = sub.add_parser(
        "duckdb-init", help="print a DuckDB script with the lakeops views, for DuckDB outside lakeops"
    )
    init.add_argument("-o", "--output", help="write the script to this file")
    init.set_defaults(func=cmd_duckdb_init)
    migrate = sub.add_parser(
        "migrate-catalog",
        help="register an existing lake's tables from its SQL (SQLite) catalog in the configured catalog "
        "(e.g. the object-store catalog); data files are not rewritten. Stop lakeops first.",
    )
    migrate.add_argument(
        "--from", dest="source", metavar="URI", help="the SQL catalog to read (default sqlite:///<home>/catalog.db)"
    )
    migrate.add_argument("--dry-run", action="store_true", help="list what would be registered")
    migrate.set_defaults(func=cmd_migrate_catalog)
    info = sub.add_parser("info", help="show the configured lake")
    info.set_defaults(func=cmd_info)
    return parser


def _arrow_allocator() -> None:
    """Arrow buffers from jemalloc (a pool pyarrow ships; ``ARROW_DEFAULT_MEMORY_POOL`` set by the
    user wins), read by pyarrow when it first allocates. Its default, mimalloc, made large fresh
    allocations ~4x dearer here: decoding a 1M-run checkpoint (580 MB of columns) cost 3.6 CPU-s with
    mimalloc and 0.85 with jemalloc; opening that lake from s3 8.4 -> 3.0 CPU-s, folding it in full
    40.9 -> 22.9 (README "Run checkpoints"). Not on Windows, whose wheels lack jemalloc."""
    if sys.platform != "win32":
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lakeops`` command."""
    _arrow_allocator()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
