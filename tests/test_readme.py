"""The README's code blocks, run as a new user runs them, against a real ``lakeops serve``.

Every fenced block of README.md is either run here or listed in ``NOT_RUN`` with the reason
(a block without a language is sample output), so a new block cannot slip in unchecked (``test_every_block_is_run_or_explained``). Blocks run in
README order, as a reader following along would: Python blocks in one interpreter (later blocks
use what earlier ones defined, e.g. ``client``), shell blocks in bash with ``.venv/bin`` on the
PATH (as after ``source .venv/bin/activate``) and ``set -euo pipefail``, SQL blocks statement by
statement through ``POST /api/v1/sql``. The fixture fills the
placeholders: the server's address replaces ``127.0.0.1:5000``/``localhost:5000``, the
PostgreSQL port replaces ``5433``, and ``LAKEOPS_HOME`` is the server's lake (as ``./.lakeops`` is
for ``make serve``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess, free_port

from lakeops.settings import LakeopsSettings, LocalStorageConfig, SqlCatalogConfig

pytestmark = [pytest.mark.api, pytest.mark.slow]

README = Path(__file__).resolve().parents[1] / "README.md"
PG_PASSWORD = "change-me"  # the README's

# Blocks not run here, by their first line, and why. Keep reasons true; prefer making a block runnable.
NOT_RUN: dict[str, str] = {
    "make serve   # installs the locked environment and serves lakeops on h": "the set-up itself; tried from a fresh clone",
    "curl $URL/api/v1/artifact-versions/<exp>/<run>/artifacts/ckpt.pt        # every": "placeholders <exp>/<run>",
    'client.metric_history(run_id, "loss", points=1000)                             # ≤': "fragment: client and run_id of the Python client section below",
    "client.import_metrics(points, batch_size=100_000)   # bulk-load an Arrow table / polars frame:": "fragment: points is your table",
    "LAKEOPS_HOME=/tmp/lake .venv/bin/jupyter execute notebooks/quickstart.ipynb   # or open it in Jupyter": "tests/notebooks runs the notebooks",
    "import json": "checkpoints recipe: tested by tests/lakeops/client/test_client_checkpoints.py",
    ".venv/bin/lakeops maintain --checkpoints": "needs checkpoints logged first",
    "import mlflow": "registry with the mlflow client: model is your trained model; tests/api/test_mlflow_registry.py",
    '# which version held "production" on 1 March?': "1 March: before the test's lake existed (a 404 then)",
    ".venv/bin/python benchmarks/bench_registry.py [--quick] [--servers lakeops,mlflow]": "a benchmark (minutes)",
    "from lakeops.services.datasets import DatasetService   # built on the store and ArtifactService": "fragment: datasets, df are yours",
    "# a DataFrame as an Arrow IPC stream (lakeops stores it as Parquet)": "placeholders $RUN, $VERSION, customers.arrows",
    "from catalog.tables import LINEAGE_EDGES": "contributor recipe inside a service (state, store, actor)",
    "curl -X POST localhost:5000/api/v1/lineage -H 'content-type: application/json' -d @event.json": "event.json is yours",
    'curl localhost:5000/api/v1/runs/$RUN/openlineage     # {"events": [...]}': "placeholder $RUN",
    "curl -X PUT localhost:5000/api/v1/datasets/customers/suites/basic -H 'content-type: application/json' -d '{": "placeholder $VERSION, $RUN",
    'curl -X POST "localhost:5000/api/v1/datasets/customers/dataframe?validate=true&run_id=$RUN" \\': "placeholders $RUN, customers.arrows",
    "LAKEOPS_SQL__PG_PASSWORD=change-me lakeops serve --port 5000 --pg-port 5433   # user: lakeops (LAKEOPS_SQL__PG_USER)": "starts a server: the fixture starts it so",
    "LOAD iceberg; LOAD httpfs;": "needs an S3 endpoint and a REST catalog; tests/lakeops/test_external_engines.py",
    "from pyiceberg.catalog import load_catalog": "paths /path/.lakeops are yours; tests/lakeops/test_external_engines.py",
    "spark-sql --packages org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.7.1,org.apache.iceberg:iceberg-aws-bundle:1.7.1 \\": "needs Spark",
    "connector.name=iceberg": "Trino configuration",
    "# MinIO (or any S3 endpoint): the catalog lives in the bucket too (kind=object), no database anywhere": "configuration for other stores",
    "lakeops migrate-catalog --dry-run    # lists the tables it would register from <home>/catalog.db": "needs a lake made with the SQLite catalog; tests/lakeops/test_object_catalog_lake.py runs it",
    "# prometheus.yml": "Prometheus configuration",
}


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


def test_every_block_is_run_or_explained() -> None:
    blocks = readme_blocks(README.read_text())
    unexplained = [b for b in blocks if _not_run(b) is None and b.language not in ("python", "bash", "sql")]
    assert not unexplained, f"README blocks neither run nor listed in NOT_RUN: {[(b.line, b.key) for b in unexplained]}"
    stale = [key for key in NOT_RUN if not any(b.key.startswith(key) for b in blocks)]
    assert not stale, f"NOT_RUN lists blocks the README no longer has: {stale}"


@dataclass
class ReadmeServer:
    server: ServeProcess
    pg_port: int
    work: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeServer]:
    root = tmp_path_factory.mktemp("readme")
    work = root / "work"  # stands for the checkout: `.venv/bin/lakeops` works from it
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    settings = LakeopsSettings(home=root / "lake", storage=LocalStorageConfig(), catalog=SqlCatalogConfig())
    pg_port = free_port()
    server = ServeProcess(
        settings,
        root / "serve.log",
        extra_args=("--pg-port", str(pg_port)),
        extra_env={"LAKEOPS_SQL__PG_PASSWORD": PG_PASSWORD},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEOPS_", "MLFLOW_"))}
    env["LAKEOPS_HOME"] = str(settings.home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    yield ReadmeServer(server, pg_port, work, env)
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


def _fill(code: str, srv: ReadmeServer) -> str:
    address = f"127.0.0.1:{srv.server.port}"
    code = code.replace("127.0.0.1:5000", address).replace("localhost:5000", address)
    return code.replace("5433", str(srv.pg_port))


@pytest.mark.timeout(900)  # a user's first hour in a few minutes: mlflow's log_model, a dozen CLI calls
def test_the_readme_runs_as_written(readme_server: ReadmeServer) -> None:
    blocks = [b for b in readme_blocks(README.read_text()) if _not_run(b) is None]
    assert {b.language for b in blocks} <= {"python", "bash", "sql"}
    python = [(b.line, _fill(b.code, readme_server)) for b in blocks if b.language == "python"]
    runner = readme_server.work / "run_readme.py"
    runner.write_text(
        textwrap.dedent(
            """
            import sys
            blocks = {blocks!r}
            namespace = {{"__name__": "__main__"}}
            import time
            for line, code in blocks:
                started = time.perf_counter()
                exec(compile(code, f"README.md:{{line}}", "exec"), namespace)
                print(f"README.md:{{line}}: ran in {{time.perf_counter() - started:.1f}} s", flush=True)
            namespace["client"].close()
            """
        ).format(blocks=python)
    )
    done = subprocess.run(
        [sys.executable, str(runner)],
        cwd=readme_server.work,
        env=readme_server.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    for block in (b for b in blocks if b.language == "bash"):
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _fill(block.code, readme_server)],
            cwd=readme_server.work,
            env=readme_server.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, f"README.md:{block.line}:\n{block.code}\n{ran.stdout[-2000:]}\n{ran.stderr[-3000:]}"
    # SQL blocks: each statement through POST /api/v1/sql, the sandbox every entry point shares.
    for block in (b for b in blocks if b.language == "sql"):
        for statement in _statements(block.code):
            answer = httpx.post(f"{readme_server.server.url}/api/v1/sql", json={"sql": statement}, timeout=120)
            assert answer.status_code == 200, f"README.md:{block.line}:\n{statement}\n{answer.text[:2000]}"
    # What the blocks claim, checked: the Arrow answer is a stream, the CSV has the run's history.
    assert (readme_server.work / "metrics.arrows").read_bytes()[:4] == b"\xff\xff\xff\xff"
    assert "gbm-1" in (readme_server.work / "history.csv").read_text()
    assert (readme_server.work / "runs.parquet").read_bytes()[:4] == b"PAR1"
    # The recursive lineage query walks from the deployment back to the training data.
    (walk,) = [b for b in blocks if b.language == "sql" and b.key.startswith("WITH RECURSIVE up")]
    answer = httpx.post(f"{readme_server.server.url}/api/v1/sql", json={"sql": _statements(walk.code)[0]}).json()
    assert {row[0] for row in answer["rows"]} == {"deployment", "model_version", "run", "dataset_version"}
