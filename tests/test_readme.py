"""The README's code blocks, run as a new user runs them, against a real ``lakeops serve``.

Every fenced block of README.md is either run here or listed in ``NOT_RUN`` with the reason
(a block without a language is sample output), so a new block cannot slip in unchecked
(``test_every_block_is_run_or_explained``). Blocks run in README order, as a reader following along
would: Python blocks in one interpreter (later blocks use what earlier ones defined, e.g. ``client``),
shell blocks in bash with ``.venv/bin`` on the PATH (as after ``source .venv/bin/activate``) and
``set -euo pipefail``, SQL blocks statement by statement through ``POST /api/v1/sql``; Prometheus'
and Trino's configuration is parsed and checked (``test_config_files_say_what_they_should``).

The server is the one the README's BI line starts (``lakeops serve --port 5000 --pg-port 5433``, on
free ports). The fixture fills the placeholders: the server's address replaces
``127.0.0.1:5000``/``localhost:5000``, the PostgreSQL port replaces ``5433``, and ``LAKEOPS_HOME`` is
the server's lake (as ``./.lakeops`` is for ``make serve``). What a block leaves to the reader comes
from the fixture too: Python names a fragment uses (``PYTHON_FIXTURES``), values of the lake a block
names by example (``BLOCK_PLACEHOLDERS``: a path, a snapshot id, a date), and for the shell
``$URL``, ``$RUN``, ``$VERSION``, ``<exp>/<run>``, ``customers.arrows`` and ``event.json``
(``_shell_fixture``). curl without ``--fail`` exits 0 on an error answer, so no shell block may
print one.

Blocks that need more than one plain server run in tests of their own, which xdist may run beside
the main one: the Security section (``SECURITY_BLOCKS``: servers with authentication on, TLS) and
the blocks that need an S3 endpoint (``S3_BLOCKS``: SeaweedFS, DuckDB's extensions from PyPI).
A block that starts a server is run as written by ``ServeProcess`` (its ``command``).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from lakes import make_settings
from pydantic import SecretStr
from s3server import S3Target
from serve_process import ServeProcess, free_port, settings_env

from lakeops.lake import Lake
from lakeops.settings import LakeopsSettings, LocalStorageConfig, ObjectCatalogConfig, S3StorageConfig, SqlCatalogConfig

pytestmark = [pytest.mark.api, pytest.mark.slow]

README = Path(__file__).resolve().parents[1] / "README.md"
PG_PASSWORD = "change-me"  # the README's
# The servers may be slow to answer on a loaded machine (importing great-expectations in the background after
# start, committing): httpx's 5 s default timed out at load ~29.
_get = functools.partial(httpx.get, timeout=60)
_post = functools.partial(httpx.post, timeout=60)
_put = functools.partial(httpx.put, timeout=60)

# Blocks not run here, by their first line, and why. Keep reasons true; prefer making a block runnable.
NOT_RUN: dict[str, str] = {
    "make serve   # installs the locked environment and serves lakeops on h": (
        "the set-up itself: run from a fresh clone by hand (make serve until it serves); make test is the suite itself"
    ),
    "LAKEOPS_HOME=/tmp/lake .venv/bin/jupyter execute notebooks/quickstart.ipynb   # or open it in Jupyter": (
        "executes both notebooks, then tests/notebooks, which executes them again and asserts their outputs: "
        "tests/notebooks is that run; test_the_notebook_commands_name_what_exists checks the names"
    ),
    ".venv/bin/python benchmarks/bench_registry.py [--quick] [--servers lakeops,mlflow]": (
        "a benchmark (minutes, with MLflow's own server beside lakeops); [--quick] marks an option"
    ),
    "from catalog.tables import LINEAGE_EDGES": (
        "a recipe for code inside a service: `...: my_change_rows` stands for that service's own table and rows, "
        "and state, store and actor are the service's"
    ),
    "spark-sql --packages org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.2,org.apache.iceberg:iceberg-aws-bundle:1.10.2 \\": (
        "needs Spark with Iceberg's runtime jars from Maven Central, which this machine cannot reach (the README says why "
        "the one PyPI jar does not work)"
    ),
}

# What a Python block leaves to the reader, filled before it runs (by the block's first line):
# the charts fragment uses the client and a run of the client section below (the mlflow quickstart's
# run stands for it, that client is closed before the section connects its own); `points` is a
# table of metric points of the client section's run, `checkpoint.pt` a file; `model` of the
# registry block is a trained sklearn model.
PYTHON_FIXTURES: dict[str, str] = {
    'client.metric_history(run_id, "loss", points=1000)': textwrap.dedent(
        """
        import lakeops as _lakeops

        client = _lakeops.connect("http://127.0.0.1:5000")
        run_id = client.runs("churn")["run_id"][0]
        """
    ),
    "import lakeops": "client.close()",
    "import json": "client.close()",  # the checkpoints recipe connects a client of its own
    "import mlflow": textwrap.dedent(
        """
        from sklearn.linear_model import LogisticRegression as _LogisticRegression

        model = _LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        _lakeops_client = client  # the registry block names its MlflowClient `client` too
        """
    ),
    "client.import_metrics(points, batch_size=100_000)": textwrap.dedent(
        """
        import time as _time

        import pyarrow as _pa

        points = _pa.table({
            "run_id": [run.run_id] * 3,
            "key": ["imported"] * 3,
            "value": [0.5, 0.25, 0.125],
            "timestamp": [int(_time.time() * 1000)] * 3,
            "step": [0, 1, 2],
        })
        with open("checkpoint.pt", "wb") as _f:
            _f.write(b"checkpoint bytes")
        """
    ),
    # the datasets fragment: a DatasetService on the lake of $LAKEOPS_HOME (opened in-process beside the server,
    # as the embedded TrackingService example does), a folder raw/iris in its artifact store, two frames; `run_id`
    # is the analysis block's, the Iceberg table sales.orders the fixture's (`_orders_table`)
    "from lakeops.datasets import DatasetService": textwrap.dedent(
        """
        import polars as _pl

        from lakeops.lake import Lake as _Lake
        from lakeops.settings import LakeopsSettings as _LakeopsSettings

        _lake = _Lake(_LakeopsSettings())
        datasets = _lake.datasets
        _lake.artifacts.upload_bytes("raw/iris/part-0.csv", b"sepal_length,species\\n5.1,setosa\\n7.0,versicolor\\n")
        df = _pl.DataFrame({"age": [41, 29], "churned": [1, 0]})
        preds = _pl.DataFrame({"score": [0.8, 0.1]})
        """
    ),
}
# ... and after it runs: the blocks after the registry block use lakeops' client; the datasets fragment's lake
# is closed (committing what it logged), and what it logged is checked.
PYTHON_AFTER: dict[str, str] = {
    "import mlflow": "client = _lakeops_client",
    "from lakeops.datasets import DatasetService": textwrap.dedent(
        """
        _lake.close()
        assert v["row_count"] == 2 and v["source_type"] == "dataframe", v
        """
    ),
}

# Placeholders a block leaves to the reader, by the block's first line: each filled with a value of the
# fixture's lake (`ReadmeServer.context`): its home for `/path/.lakeops`, the snapshot of the Iceberg table
# sales.orders it made for `123456789`, and for "1 March" a time the lake has, after the alias was set.
BLOCK_PLACEHOLDERS: dict[str, dict[str, str]] = {
    "from pyiceberg.catalog import load_catalog": {"/path/.lakeops": "{home}"},
    "from lakeops.datasets import DatasetService": {"123456789": "{orders_snapshot}"},
    "# a DataFrame as an Arrow IPC stream": {"123456789": "{orders_snapshot}"},
    '# which version held "production" on 1 March?': {"2026-03-01T00:00:00Z": "{now}"},
}
# The BI block's first line starts the server the fixture serves the README with; the block's other lines run.
SERVE_LINE = "LAKEOPS_SQL__PG_PASSWORD=change-me lakeops serve --port 5000 --pg-port 5433"
# The Security section's blocks run in their own test, against servers with authentication on.
SECURITY_BLOCKS = (
    "# turn it on: the first admin is created from the settings",
    "# MLFLOW_TRACKING_USERNAME=alice MLFLOW_TRACKING_PASSWORD=",
    "# users and tokens from the command line",
    "# MLflow's own client for its basic-auth API",
    "# HTTPS and TLS on the PostgreSQL endpoint",
    "# alice is held back from experiment 1234",
    "# workspaces: an admin creates one and makes alice a member",
)
ADMIN_PASSWORD = "a-long-admin-password"  # the README's
# Blocks that need an S3 endpoint run in their own test, against SeaweedFS: the outside engines' DuckDB SQL, the
# object-store settings, and moving a SQLite-catalog lake to the object-store catalog.
S3_BLOCKS = ("LOAD iceberg; LOAD httpfs;", "# MinIO (or any S3 endpoint)", "lakeops migrate-catalog --dry-run")
# Configuration files, checked for what they say (no Prometheus or Trino here): `test_config_files_say_what_they_should`.
CONFIG_LANGUAGES = ("yaml", "properties")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    line: int  # of the opening fence, 1-based
    language: str
    code: str

    @property
    def key(self) -> str:
        return next((line for line in self.code.splitlines() if line.strip()), "")


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if match:
            indent = match.group(1)
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(f"{indent}```"))
            body = textwrap.dedent("\n".join(lines[i + 1 : end]) + "\n")
            blocks.append(Block(i + 1, match.group(2), body))
            i = end
        i += 1
    return blocks


def _not_run(block: Block) -> str | None:
    if not block.language:
        return "a block without a language is sample output"
    for key, reason in NOT_RUN.items():
        if block.key.startswith(key) or block.key == key.strip():
            return reason
    return None


def _in(block: Block, keys: tuple[str, ...]) -> bool:
    return any(block.key.startswith(key) for key in keys)


def test_every_block_is_run_or_explained() -> None:
    blocks = readme_blocks(README.read_text())
    unexplained = [
        b for b in blocks if _not_run(b) is None and b.language not in ("python", "bash", "sql", *CONFIG_LANGUAGES)
    ]
    assert not unexplained, f"README blocks neither run nor listed in NOT_RUN: {[(b.line, b.key) for b in unexplained]}"
    keyed = [*NOT_RUN, *PYTHON_FIXTURES, *PYTHON_AFTER, *BLOCK_PLACEHOLDERS, SERVE_LINE, *SECURITY_BLOCKS, *S3_BLOCKS]
    stale = [key for key in keyed if not any(b.key.startswith(key) for b in blocks)]
    assert not stale, f"the test names blocks by first lines the README no longer has: {stale}"


@dataclass
class ReadmeServer:
    server: ServeProcess
    pg_port: int
    work: Path
    env: dict[str, str]
    context: dict[str, str]  # what BLOCK_PLACEHOLDERS fill in


def _block(key: str) -> Block:
    return next(b for b in readme_blocks(README.read_text()) if b.key.startswith(key))


def _orders_table(settings: LakeopsSettings) -> str:
    """The Iceberg table sales.orders in the lake's catalog, with one snapshot, whose id it returns."""
    import pyarrow as pa
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog("lakeops", **settings.catalog_properties())
    catalog.create_namespace_if_not_exists("sales")
    orders = pa.table({"order_id": pa.array([1, 2, 3], pa.int64()), "amount": [9.5, 20.0, 3.25]})
    table = catalog.create_table("sales.orders", schema=orders.schema)
    table.append(orders)
    snapshot = table.current_snapshot()
    assert snapshot is not None
    return str(snapshot.snapshot_id)


@pytest.fixture
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeServer]:
    """The server the README's BI line starts (``lakeops serve --port 5000 --pg-port 5433``), on free ports.

    Function-scoped (one test uses it), so the module defines no shared fixture and xdist may spread its tests.
    """
    root = tmp_path_factory.mktemp("readme")
    work = root / "work"  # stands for the checkout: `.venv/bin/lakeops` works from it
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    settings = LakeopsSettings(home=root / "lake", storage=LocalStorageConfig(), catalog=SqlCatalogConfig())
    pg_port = free_port()
    line = _block(SERVE_LINE).code.splitlines()[0]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    server = ServeProcess(
        settings,
        root / "serve.log",
        command=lambda port: [
            "bash",
            "-c",
            line.replace("--port 5000", f"--port {port}").replace("5433", str(pg_port)),
        ],
        extra_env={"PATH": path},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEOPS_", "MLFLOW_"))}
    env["LAKEOPS_HOME"] = str(settings.home)
    env["PATH"] = path
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        context = {"home": str(settings.home), "orders_snapshot": _orders_table(settings)}
        yield ReadmeServer(server, pg_port, work, env, context)
    finally:
        server.stop()


def _statements(sql: str) -> list[str]:
    """The statements of a SQL block (each ends with ``;`` at the end of a line)."""
    found, current = [], []
    for line in sql.splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(current).strip().rstrip(";")
            if any(not part.strip().startswith("--") for part in text.splitlines() if part.strip()):
                found.append(text)
            current = []
    return found


def _fill(code: str, srv: ReadmeServer, placeholders: dict[str, str] | None = None, block: Block | None = None) -> str:
    address = f"127.0.0.1:{srv.server.port}"
    code = code.replace("127.0.0.1:5000", address).replace("localhost:5000", address)
    own = next((fills for key, fills in BLOCK_PLACEHOLDERS.items() if block and block.key.startswith(key)), {})
    for placeholder, value in {**(placeholders or {}), **{k: v.format(**srv.context) for k, v in own.items()}}.items():
        code = code.replace(placeholder, value)
    return code.replace("5433", str(srv.pg_port))


def _run_python(pieces: list[tuple[str, str]], work: Path, env: dict[str, str]) -> None:
    """Run (name, code) pieces in one fresh interpreter in ``work``, as one notebook session would."""
    runner = work / "run_readme.py"
    runner.write_text(
        textwrap.dedent(
            """
            import sys
            blocks = {blocks!r}
            namespace = {{"__name__": "__main__"}}
            import time
            for line, code in blocks:
                started = time.perf_counter()
                exec(compile(code, line, "exec"), namespace)
                print(f"{{line}}: ran in {{time.perf_counter() - started:.1f}} s", flush=True)
            if "client" in namespace:
                namespace["client"].close()
            """
        ).format(blocks=pieces)
    )
    done = subprocess.run(
        [sys.executable, str(runner)], cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def _python_fixture(block: Block, fixtures: dict[str, str]) -> str | None:
    return next((code for key, code in fixtures.items() if block.key.startswith(key)), None)


def _shell_fixture(srv: ReadmeServer) -> tuple[dict[str, str], dict[str, str]]:
    """The shell blocks' placeholders, filled from what the Python blocks stored, as a reader's would be.

    ``$RUN`` is the run the client section logged its training data in (churn/train), ``$VERSION``
    that data's dataset version; ``customers.arrows`` (an Arrow IPC stream that passes the suite)
    and ``event.json`` (an OpenLineage RunEvent) are written to the working directory; the run gets
    two versions of ``ckpt.pt`` for the artifact-versions block (``<exp>/<run>``, ``version_id=…``).
    Returns the environment variables and the text placeholders.
    """
    import uuid

    import pyarrow as pa
    from openlineage_events import ol_event

    url = srv.server.url
    experiment = _get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "churn"})
    experiment_id = experiment.raise_for_status().json()["experiment"]["experiment_id"]
    search = {"experiment_ids": [experiment_id], "filter": "attributes.run_name = 'train'"}
    (train,) = _post(f"{url}/api/2.0/mlflow/runs/search", json=search).raise_for_status().json()["runs"]
    run_id = train["info"]["run_id"]
    versions = _get(f"{url}/api/v1/datasets/customers/versions").raise_for_status().json()["versions"]
    version_id = versions[0]["dataset_version_id"]

    customers = pa.table({"age": [38, 62, 23], "churned": [0, 1, 0]})
    with pa.ipc.new_stream(srv.work / "customers.arrows", customers.schema) as stream:
        stream.write_table(customers)
    event = ol_event("COMPLETE", str(uuid.uuid4()), inputs=[("s3://shop", "raw.customers", "v1")])
    (srv.work / "event.json").write_text(json.dumps(event))

    # the datasets' Arrow block logs the artifact folder raw/iris (sales.orders is the fixture's)
    _put(f"{url}/api/v1/artifacts/raw/iris/part-1.csv", content=b"sepal_length,species\n6.3,virginica\n")
    srv.context["now"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # after the Python blocks set the aliases

    checkpoint = f"{experiment_id}/{run_id}/artifacts/ckpt.pt"
    first = _put(f"{url}/api/v1/artifacts/{checkpoint}", content=b"epoch 1").raise_for_status().json()
    _put(f"{url}/api/v1/artifacts/{checkpoint}", content=b"epoch 2").raise_for_status()

    env = {"URL": url, "RUN": run_id, "VERSION": version_id}
    return env, {"<exp>/<run>": f"{experiment_id}/{run_id}", "version_id=…": f"version_id={first['version_id']}"}


@pytest.mark.timeout(900)  # a user's first hour in a few minutes: mlflow's log_model, a dozen CLI calls
def test_the_readme_runs_as_written(readme_server: ReadmeServer) -> None:
    blocks = [
        b
        for b in readme_blocks(README.read_text())
        if _not_run(b) is None and not _in(b, (*SECURITY_BLOCKS, *S3_BLOCKS))
    ]
    assert {b.language for b in blocks} <= {"python", "bash", "sql", *CONFIG_LANGUAGES}
    python: list[tuple[str, str]] = []
    for b in (b for b in blocks if b.language == "python"):
        fixture = _python_fixture(b, PYTHON_FIXTURES)
        if fixture is not None:
            python.append((f"the fixture of README.md:{b.line}", _fill(fixture, readme_server)))
        python.append((f"README.md:{b.line}", _fill(b.code, readme_server, block=b)))
        after = _python_fixture(b, PYTHON_AFTER)
        if after is not None:
            python.append((f"after README.md:{b.line}", after))
    _run_python(python, readme_server.work, readme_server.env)
    shell_env, placeholders = _shell_fixture(readme_server)
    for block in (b for b in blocks if b.language == "bash"):
        code = block.code.split("\n", 1)[1] if block.key.startswith(SERVE_LINE) else block.code  # the fixture served it
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _fill(code, readme_server, placeholders, block)],
            cwd=readme_server.work,
            env={**readme_server.env, **shell_env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, f"README.md:{block.line}:\n{block.code}\n{ran.stdout[-2000:]}\n{ran.stderr[-3000:]}"
        # curl without --fail exits 0 on an error answer: none may come back
        refused = '{"error"' in ran.stdout or '"error_code"' in ran.stdout
        assert not refused, f"README.md:{block.line}:\n{block.code}\n{ran.stdout[-3000:]}"
    # SQL blocks: each statement through POST /api/v1/sql, the sandbox every entry point shares.
    for block in (b for b in blocks if b.language == "sql"):
        for statement in _statements(block.code):
            answer = _post(f"{readme_server.server.url}/api/v1/sql", json={"sql": statement}, timeout=120)
            assert answer.status_code == 200, f"README.md:{block.line}:\n{statement}\n{answer.text[:2000]}"
    # What the blocks claim, checked: the Arrow answer is a stream, the CSV has the run's history.
    assert (readme_server.work / "metrics.arrows").read_bytes()[:4] == b"\xff\xff\xff\xff"
    assert "gbm-1" in (readme_server.work / "history.csv").read_text()
    assert (readme_server.work / "runs.parquet").read_bytes()[:4] == b"PAR1"
    # Prometheus' scrape target, at this server, answers the metrics the README's table lists.
    (prometheus,) = [b for b in blocks if b.language == "yaml"]
    (job,) = yaml.safe_load(_fill(prometheus.code, readme_server))["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    scraped = _get(f"http://{target}{job.get('metrics_path', '/metrics')}")
    assert scraped.status_code == 200 and "lakeops_commit_lag_seconds" in scraped.text
    # The recursive lineage query walks from the deployment back to the training data.
    (walk,) = [b for b in blocks if b.language == "sql" and b.key.startswith("WITH RECURSIVE up")]
    answer = _post(f"{readme_server.server.url}/api/v1/sql", json={"sql": _statements(walk.code)[0]}).json()
    kinds = {row[0] for row in answer["rows"]}
    if kinds != {"deployment", "model_version", "run", "dataset_version"}:
        url = readme_server.server.url
        edges = _post(f"{url}/api/v1/sql", json={"sql": "SELECT * FROM lineage_edges"}).json()
        deployments = _post(f"{url}/api/v1/sql", json={"sql": "SELECT * FROM deployments"}).json()
        pytest.fail(f"walk found {answer['rows']}\nedges {edges}\ndeployments {deployments}")


def test_config_files_say_what_they_should() -> None:
    """Prometheus' and Trino's configuration blocks, parsed (neither runs here): they point where the README says.

    The main test also scrapes the Prometheus target, filled with its server's address.
    """
    blocks = readme_blocks(README.read_text())
    (prometheus,) = [b for b in blocks if b.language == "yaml"]
    (job,) = yaml.safe_load(prometheus.code)["scrape_configs"]
    assert job["job_name"] == "lakeops"
    # where `make serve` serves (the Makefile's PORT), on Prometheus' default metrics path, which lakeops serves
    assert job["static_configs"] == [{"targets": ["127.0.0.1:5000"]}] and "metrics_path" not in job
    assert re.search(r"^PORT \?= 5000$", (README.parent / "Makefile").read_text(), re.MULTILINE)

    (trino,) = [b for b in blocks if b.language == "properties"]
    properties: dict[str, str] = {}
    for line in trino.code.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        assert equals and key == key.strip() and value.strip(), f"not a key=value line: {line!r}"
        assert key not in properties, f"{key} set twice"
        assert key == "connector.name" or key.startswith(("iceberg.", "fs.", "s3.")), (
            f"not an Iceberg connector key: {key}"
        )
        properties[key] = value
    assert properties["connector.name"] == "iceberg"
    assert properties["iceberg.catalog.type"] == "rest"
    assert properties["iceberg.rest-catalog.warehouse"] == "s3://lakeops"
    assert properties["s3.path-style-access"] == "true"


def _server_script(block: Block) -> str:
    """A block that starts a server, up to its serve line: bash execs the last command of ``-c`` (not if comment
    lines follow it), so the process ServeProcess watches and stops is the server itself."""
    lines = block.code.rstrip().splitlines()
    while lines[-1].lstrip().startswith("#"):
        lines.pop()
    return "\n".join(lines)


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made with openssl; it is its own CA."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)),
            *("-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.timeout(600)
def test_the_security_section_runs_as_written(tmp_path: Path) -> None:
    """The Security section in README order, on one lake with authentication on.

    The first block starts the server (the reader's ``export``s stay for the TLS server later); the fixture
    makes what the blocks name by example: experiment ``1234`` (here "risk"), the token ``lko_...`` (the
    admin's, which ``<token_id>`` then revokes), a certificate for ``/etc/lakeops/*.pem``. Alice's SQL
    block needs the PostgreSQL endpoint and plain HTTP, which no block's server has together, so the fixture
    serves the lake so for it, with alice held back from a second experiment.
    """
    blocks = {key: _block(key) for key in SECURITY_BLOCKS}
    work = tmp_path / "work"
    work.mkdir()
    settings = LakeopsSettings(home=tmp_path / "lake", storage=LocalStorageConfig(), catalog=SqlCatalogConfig())
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEOPS_", "MLFLOW_"))}
    env.update({"LAKEOPS_HOME": str(settings.home), "PATH": path, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    exported = {"LAKEOPS_AUTH__ENABLED": "true", "LAKEOPS_AUTH__ADMIN_PASSWORD": ADMIN_PASSWORD}  # the first block's
    admin = ("admin", ADMIN_PASSWORD)
    fills: dict[str, str] = {}

    def fill(code: str, url: str, pg_port: int = 0) -> str:
        code = code.replace("http://127.0.0.1:5000", url).replace("--port 5000", f"--port {url.rsplit(':', 1)[1]}")
        for placeholder, value in fills.items():
            code = code.replace(placeholder, value)
        return code.replace("5433", str(pg_port))

    def shell(block: Block, url: str, pg_port: int = 0) -> str:
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", fill(block.code, url, pg_port)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert ran.returncode == 0, f"README.md:{block.line}:\n{block.code}\n{ran.stdout[-2000:]}\n{ran.stderr[-3000:]}"
        assert '{"error"' not in ran.stdout, f"README.md:{block.line}:\n{block.code}\n{ran.stdout[-3000:]}"
        return ran.stdout

    def serve(block: Block, log: str) -> ServeProcess:
        """The server a block starts: its last line, after its exports (bash execs that last command)."""
        return ServeProcess(
            settings,
            tmp_path / log,
            command=lambda port: ["bash", "-c", fill(_server_script(block), f"http://127.0.0.1:{port}")],
            extra_env={"PATH": path},
        )

    cert, key = _certificate(tmp_path)
    fills.update({"/etc/lakeops/cert.pem": str(cert), "/etc/lakeops/key.pem": str(key)})
    sql_pg_port, tls_pg_port = free_port(), free_port()
    tls = blocks[SECURITY_BLOCKS[4]]
    servers: list[ServeProcess] = []
    starting: list[Future[ServeProcess]] = []
    pool = ThreadPoolExecutor(2)
    try:
        # Authentication on, as the first block turns it on.
        servers.append(serve(blocks[SECURITY_BLOCKS[0]], "auth.log"))
        url = servers[0].url
        assert _get(f"{url}/api/v1/version").status_code == 401  # nothing without credentials
        http = httpx.Client(base_url=url, auth=admin, timeout=60)
        risk, secret = (
            http.post("/api/2.0/mlflow/experiments/create", json={"name": name}).raise_for_status().json()
            for name in ("risk", "secret")
        )
        for experiment in (risk, secret):
            http.post("/api/2.0/mlflow/runs/create", json=experiment).raise_for_status()
        token = http.post("/api/v1/tokens", json={"name": "readme"}).raise_for_status().json()
        fills.update({"1234": risk["experiment_id"], "lko_...": token["token"], "<token_id>": token["token_id"]})
        # The servers of the SQL and TLS blocks start meanwhile, on the same lake (the admin exists now).
        starting.append(
            pool.submit(
                ServeProcess,
                settings,
                tmp_path / "sql.log",
                extra_args=("--pg-port", str(sql_pg_port)),
                extra_env=exported,
            )
        )
        starting.append(
            pool.submit(
                ServeProcess,
                settings,
                tmp_path / "tls.log",
                command=lambda port: ["bash", "-c", fill(_server_script(tls), f"http://127.0.0.1:{port}", tls_pg_port)],
                extra_env={"PATH": path, **exported},
                ca_file=cert,
            )
        )

        # Our client with a token.
        connect = blocks[SECURITY_BLOCKS[1]]
        check = "assert 'risk' in client.experiments()['name'].to_list()"
        _run_python([(f"README.md:{connect.line}", fill(connect.code, url)), ("its check", check)], work, env)

        # Users and tokens from the command line, beside the running servers.
        said = shell(blocks[SECURITY_BLOCKS[2]], url)
        assert f"revoked token {token['token_id']}" in said
        assert f"alice has EDIT on experiment {risk['experiment_id']}" in said
        assert "admin (admin)" in said and "alice" in said
        revoked = _get(f"{url}/api/v1/version", headers={"authorization": f"Bearer {token['token']}"})
        assert revoked.status_code == 401
        assert _get(f"{url}/api/v1/version", auth=("alice", "alice-password-1")).status_code == 200

        # MLflow's basic-auth client, as the admin.
        mlflow_auth = blocks[SECURITY_BLOCKS[3]]
        check = f"assert auth.get_user_permission('bob', 'experiment', {risk['experiment_id']!r}).permission == 'READ'"
        login = {"MLFLOW_TRACKING_USERNAME": admin[0], "MLFLOW_TRACKING_PASSWORD": admin[1]}
        pieces = [(f"README.md:{mlflow_auth.line}", fill(mlflow_auth.code, url)), ("its check", check)]
        _run_python(pieces, work, {**env, **login})
        # Workspaces, as the admin with MLflow's client: alice (a member) sees the experiment made in it, bob not.
        workspaces = blocks[SECURITY_BLOCKS[6]]
        _run_python([(f"README.md:{workspaces.line}", fill(workspaces.code, url))], work, {**env, **login})
        search = {"filter": "name = 'pd-model'", "max_results": 5}
        team = {"X-MLFLOW-WORKSPACE": "risk-team"}
        for who, password, found in (("alice", "alice-password-1", 1), ("bob", "bob-password-1", 0)):
            answer = _post(f"{url}/api/2.0/mlflow/experiments/search", json=search, headers=team, auth=(who, password))
            assert len(answer.raise_for_status().json().get("experiments", [])) == found, (who, answer.text)
        held_back = {**secret, "username": "alice", "permission": "NO_PERMISSIONS"}
        http.post("/api/2.0/mlflow/experiments/permissions/create", json=held_back).raise_for_status()

        # Alice's SQL, held back from "secret" (its run is left out), over HTTP and psql.
        sql = starting[0].result()
        # The SQL server is another process on the lake: it knows alice's password and holds her back
        # once it has picked both up from the lake (a commit, then its refresh); querying before that
        # raced it and failed (her run of "secret" listed, or psql's password refused).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = _get(
                f"{sql.url}/api/2.0/mlflow/experiments/get",
                params={"experiment_id": secret["experiment_id"]},
                auth=("alice", "alice-password-1"),
            )
            if seen.status_code in (403, 404):  # alice known there (401 until then) and held back
                break
            time.sleep(0.2)
        said = shell(blocks[SECURITY_BLOCKS[5]], sql.url, sql_pg_port)
        assert risk["experiment_id"] in said  # her runs by experiment: risk's run, and no other
        assert secret["experiment_id"] not in said and "secret" not in said
        assert " risk" in said  # psql's answer

        # TLS on both endpoints, started with the reader's exports still set: HTTPS (ServeProcess asked /health
        # trusting the certificate), and psql verifying the certificate.
        starting[1].result()
        dsn = f"host=127.0.0.1 port={tls_pg_port} user=alice dbname=lakeops sslmode=verify-full sslrootcert={cert}"
        verified = subprocess.run(
            ["psql", dsn, "-X", "-A", "-t", "-c", "SELECT 41 + 1"],
            env={**env, "PGPASSWORD": "alice-password-1"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (verified.returncode, verified.stdout.strip()) == (0, "42"), verified.stderr
    finally:
        pool.shutdown(wait=True)
        servers += [future.result() for future in starting if future.exception() is None]
        for server in servers:
            server.stop()


def _fill_all(code: str, fills: dict[str, str]) -> str:
    for placeholder, value in fills.items():
        code = code.replace(placeholder, value)
    return code


@pytest.mark.s3
@pytest.mark.timeout(600)
def test_the_s3_blocks_run_as_written(s3_server: S3Target, tmp_path: Path) -> None:
    """The blocks that need an S3 endpoint, against SeaweedFS, with the fixture's bucket, keys and addresses.

    A lake is made with the SQLite catalog on a bucket of its own (the README's ``lakeops`` bucket, default
    prefix ``lakeops``); the settings block's exports are checked to configure that store, then
    ``lakeops migrate-catalog`` moves it to the object-store catalog. Meanwhile ``lakeops serve`` opens a lake on
    SeaweedFS's Iceberg REST catalog, which DuckDB's block then reads twice: through lakeops' own REST catalog
    and through SeaweedFS's with OAuth2 (the test lake's namespace stands for ``lakeops``, shared by no other
    test); its ``iceberg_scan`` reads the migrated lake's files by path.
    """
    import duckdb

    blocks = {key: _block(key) for key in S3_BLOCKS}
    bucket = s3_server.make_bucket(f"readme-{uuid.uuid4().hex[:8]}")
    keys = {"access_key_id": s3_server.access_key, "secret_access_key": SecretStr(s3_server.secret_key)}
    storage = S3StorageConfig(endpoint=s3_server.endpoint, bucket=bucket, region=s3_server.region, **keys)
    sqlite_lake = LakeopsSettings(home=tmp_path / "sqlite-lake", storage=storage, catalog=SqlCatalogConfig())
    rest_lake = make_settings("rest", tmp_path / "rest-lake", s3_server)
    pool = ThreadPoolExecutor(1)
    starting = pool.submit(ServeProcess, rest_lake, tmp_path / "serve.log")
    try:
        # The lake an older lakeops made: SQLite catalog on s3, one run with a metric.
        with Lake(sqlite_lake) as lake:
            run_id = lake.tracking.create_run(lake.tracking.create_experiment("before")).info.run_id
            lake.tracking.log_batch(run_id, metrics=[("loss", 0.5, 1_000, 1)], params={"lr": "0.1"})

        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEOPS_", "MLFLOW_"))}
        env.update({"LAKEOPS_HOME": str(sqlite_lake.home), "LAKEOPS_CONFIG": os.devnull})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        iceberg_uri, table_bucket = s3_server.iceberg_uri, s3_server.table_bucket
        assert iceberg_uri is not None and table_bucket is not None
        fills = {
            "http://127.0.0.1:9000": s3_server.endpoint,
            "LAKEOPS_STORAGE__BUCKET=lakeops": f"LAKEOPS_STORAGE__BUCKET={bucket}",
            "ACCESS_KEY_ID=...": f"ACCESS_KEY_ID={s3_server.access_key}",
            "SECRET_ACCESS_KEY=...": f"SECRET_ACCESS_KEY={s3_server.secret_key}",
            "http://127.0.0.1:8181": iceberg_uri,
            "WAREHOUSE=s3://lakeops": f"WAREHOUSE=s3://{table_bucket}",
            "CREDENTIAL=id:secret": f"CREDENTIAL={s3_server.access_key}:{s3_server.secret_key}",
        }

        def shell(block: Block, after: str = "") -> str:
            ran = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", _fill_all(block.code, fills) + after],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert ran.returncode == 0, (
                f"README.md:{block.line}:\n{block.code}\n{ran.stdout[-2000:]}\n{ran.stderr[-3000:]}"
            )
            return ran.stdout

        # The settings block: after each group of exports, the settings they make (read as lakeops reads them).
        settings_block = blocks[S3_BLOCKS[1]]
        show = (
            "\npython -c 'from lakeops.settings import LakeopsSettings as S; s = S(); "
            'print(s.storage.kind, s.catalog.kind, s.warehouse(), s.catalog_properties().get("uri"))\''
        )
        said = shell(Block(settings_block.line, "bash", settings_block.code.replace("\n# ", show + "\n# ")), show)
        warehouse = f"s3://{bucket}/lakeops"
        assert said.splitlines() == [
            f"s3 object {warehouse} None",  # the bucket alone: the object-store catalog
            f"s3 sql {warehouse} sqlite:///{sqlite_lake.home}/catalog.db",  # the lake made above
            f"s3 rest {warehouse} {iceberg_uri}",
        ], said

        # Moving the lake to the object-store catalog, with the store's settings (the catalog left to its default).
        env.update(
            {k: v for k, v in settings_env(sqlite_lake).items() if k.startswith("LAKEOPS_STORAGE__") and v != "None"}
        )
        said = shell(blocks[S3_BLOCKS[2]])
        assert "would register" in said and "registered " in said and "no data file rewritten" in said
        with Lake(sqlite_lake.model_copy(update={"catalog": ObjectCatalogConfig()}), start_committer=False) as lake:
            assert lake.tracking.get_run(run_id).params == {"lr": "0.1"}

        # DuckDB's block, statement by statement, in a stock DuckDB with the extensions from PyPI (the README's
        # recipe): the migrated lake's files by path, then the served REST lake through both catalogs.
        server = starting.result()
        http = httpx.Client(base_url=server.url, timeout=60)
        experiment = http.post("/api/2.0/mlflow/experiments/create", json={"name": "engines"}).raise_for_status()
        run = http.post("/api/2.0/mlflow/runs/create", json=experiment.json()).raise_for_status().json()
        metric = {"run_id": run["run"]["info"]["run_id"], "key": "loss", "value": 0.25, "timestamp": 1, "step": 1}
        http.post("/api/2.0/mlflow/runs/log-metric", json=metric).raise_for_status()
        while http.get("/health").json()["queued_rows"]:  # until the group commit has landed (the README's caveat)
            time.sleep(0.1)
        namespace = rest_lake.namespace
        fills = {
            "minio.local:9000": s3_server.endpoint.split("://", 1)[1],
            "KEY_ID '...'": f"KEY_ID '{s3_server.access_key}'",
            "SECRET '...'": f"SECRET '{s3_server.secret_key}'",
            "s3://lakeops/": f"s3://{bucket}/",
            "http://lakeops:5000": server.url,
            "lake.lakeops.": f"lake.{namespace}.",
            "CLIENT_ID 'id'": f"CLIENT_ID '{s3_server.access_key}'",
            "CLIENT_SECRET 'secret'": f"CLIENT_SECRET '{s3_server.secret_key}'",
            "http://catalog:8181": iceberg_uri,
            "s3://warehouse": f"s3://{table_bucket}",
            "lakehouse.lakeops.": f"lakehouse.{namespace}.",
        }
        sql = blocks[S3_BLOCKS[0]]
        con = duckdb.connect(config={"extension_directory": str(tmp_path / "duckdb-extensions")})
        con.execute("SET autoinstall_known_extensions = false")
        for name in ("iceberg", "httpfs", "avro"):
            package = Path(importlib.import_module(f"duckdb_extension_{name}").__file__ or "").parent
            con.execute(f"INSTALL '{next(package.rglob(f'{name}.duckdb_extension'))}'")
        selected = []  # each SELECT's rows; DuckDB's own parser splits the block into statements
        for statement in duckdb.extract_statements(_fill_all(sql.code, fills)):
            try:
                con.execute(statement.query)
                if statement.type == duckdb.StatementType.SELECT:
                    selected.append(con.to_arrow_table())
            except duckdb.Error as exc:
                pytest.fail(f"README.md:{sql.line}:\n{statement.query}\n{exc}")
        scanned, served, other = selected
        assert set(scanned.column("run_id").to_pylist()) == {run_id}  # the SQLite-catalog lake's run, by path
        assert served.to_pylist() == [{"run_id": metric["run_id"], "key": "loss", "value": 0.25}]  # lakeops' catalog
        assert other.column("run_id").to_pylist() == [metric["run_id"]]  # SeaweedFS's catalog, with OAuth2
    finally:
        pool.shutdown(wait=True)
        if starting.exception() is None:
            starting.result().stop()


def test_the_notebook_commands_name_what_exists() -> None:
    """The notebooks block (not run: tests/notebooks executes the notebooks) names notebooks, a command and tests
    that exist."""
    (block,) = [b for b in readme_blocks(README.read_text()) if b.key.startswith("LAKEOPS_HOME=/tmp/lake ")]
    root = README.parent
    named = re.findall(r"notebooks/\S+\.ipynb", block.code)
    assert named and all((root / name).is_file() for name in named), named
    assert sorted(named) == sorted(p.relative_to(root).as_posix() for p in (root / "notebooks").glob("*.ipynb"))
    assert "jupyter execute" in block.code and (Path(sys.executable).parent / "jupyter-execute").is_file()
    assert ".venv/bin/pytest tests/notebooks -q" in block.code and (root / "tests/notebooks").is_dir()
