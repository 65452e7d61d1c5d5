"""Large artifacts, side by side: our client, the stock mlflow 3.17.2 client, MLflow's own proxied
artifact server, and the object store itself (the floor).

Run from the repository root::

    .venv/bin/python benchmarks/bench_artifacts.py [--size-mb 200] [--rounds 1] [--skip-mlflow-server]

Everything runs on this machine: one SeaweedFS ``weed mini`` (the S3 server the tests use), and on
it, each from a fresh temporary home:

- ``floor``: the object store alone — a multipart upload with 8 parts in flight (minio's
  ``fput_object``) and a download in 8 parallel 16 MiB ranges, no lakeops in the path;
- ``lakeops direct``: ``lakeops serve`` on s3 and our client (``lakeops.connect(url)``): sha256
  first, parts straight to the store through presigned URLs, ranged parallel download;
- ``lakeops re-log``: the same bytes logged again by another run (a reference, no bytes move);
- ``lakeops proxied``: the same with ``LAKEOPS_STORAGE__DIRECT_TRANSFERS=false`` (bytes through lakeops);
- ``mlflow -> lakeops``: the stock mlflow client against ``lakeops serve``, which advertises
  multipart transfers in ``server-info`` (MLflow only uses them for files of
  ``MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE`` or more, 500 MB by default: the row says which);
- ``mlflow -> mlflow``: the stock client against a real MLflow 3.17.2 server serving artifacts from
  the same S3 server (``--artifacts-destination s3://…``, boto3), its proxied path forced
  (``MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD/DOWNLOAD=false``). It runs from its own venv in
  ``~/.cache/lakeops-bench/mlflow-s3-venv`` (mlflow 3.17.2 and boto3, created with uv on first use).

Each figure is MB/s (10^6 bytes) of one transfer of ``--size-mb`` MiB of random bytes, the best of
``--rounds``; every download is checked byte for byte. While our client transfers, the lakeops
server's RSS and its spool directory are sampled every 50 ms: the peak growth is printed. The
targets of issue 15 (>= 80% of the floor, >= 2x MLflow's proxied path) are printed with the ratios,
upload and download side by side, for our client and for the stock client. For the stock client's
last multipart upload it prints the split: the parts, the completion request (lakeops acknowledges
before hashing), and how long after that the background finisher filled in the sha256.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lakes import make_settings  # noqa: E402 - the tests' helpers, on purpose: the same servers
from s3server import SeaweedServer  # noqa: E402
from serve_process import ServeProcess, free_port  # noqa: E402

import lakeops  # noqa: E402

MiB = 1024 * 1024
MLFLOW_VERSION = "3.17.2"
MLFLOW_VENV = Path.home() / ".cache" / "lakeops-bench" / "mlflow-s3-venv"


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def best_of(rounds: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(rounds))


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def same_bytes(a: Path, b: Path) -> None:
    if a.stat().st_size != b.stat().st_size or _sha(a) != _sha(b):
        raise SystemExit(f"downloaded {b} differs from {a}")


def freshen(path: Path) -> None:
    """Change the file's first bytes, so that it is content no store has seen."""
    with path.open("r+b") as f:
        f.write(os.urandom(64))


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


class Sampler:
    """Peak growth of a process's RSS and of a directory's size while sampling."""

    def __init__(self, pid: int, directory: Path) -> None:
        self.pid, self.directory = pid, directory
        self.rss0 = self._rss()
        self.disk0 = self._disk()
        self.rss_peak, self.disk_peak = self.rss0, self.disk0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        """VmRSS of the process (``lakeops serve`` is one process), from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _disk(self) -> int:
        if not self.directory.exists():
            return 0
        return sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError):
                self.rss_peak = max(self.rss_peak, self._rss())
                self.disk_peak = max(self.disk_peak, self._disk())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the floor: the object store alone ----------------------------------------------------------


def floor(s3: SeaweedServer, source: Path, work: Path, rounds: int) -> tuple[float, float]:
    client = s3.client()
    size = source.stat().st_size
    key = f"floor/{uuid.uuid4().hex}"

    def up() -> float:
        return timed(
            lambda: client.fput_object(s3.bucket, key, str(source), part_size=16 * MiB, num_parallel_uploads=8)
        )

    def down() -> float:
        dest = work / "floor.bin"
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(fd, size)

        def fetch(start: int) -> None:
            length = min(16 * MiB, size - start)
            response = client.get_object(s3.bucket, key, offset=start, length=length)
            try:
                os.pwrite(fd, response.read(), start)
            finally:
                response.close()
                response.release_conn()

        try:
            seconds = timed(lambda: list(ThreadPoolExecutor(8).map(fetch, range(0, size, 16 * MiB))))
        finally:
            os.close(fd)
        same_bytes(source, dest)
        return seconds

    return mbps(size, best_of(rounds, up)), mbps(size, best_of(rounds, down))


# -- lakeops with our client ------------------------------------------------------------------------


def ours(server: ServeProcess, source: Path, work: Path, rounds: int) -> dict[str, float]:
    size = source.stat().st_size
    result: dict[str, float] = {}
    with lakeops.connect(server.url) as client:
        paths: list[str] = []

        def up() -> float:
            with client.start_run("bench-artifacts") as run:
                # A fresh file per round: the same bytes again would be a reference (measured below).
                freshen(source)
                return timed(lambda: paths.append(run.log_artifact(source)))

        def down() -> float:
            dest = work / "ours.bin"
            seconds = timed(lambda: client.transport.download_artifact(paths[-1], dest, version_id=None))
            same_bytes(source, dest)
            return seconds

        pid = server.proc.pid if server.proc else 0
        spool = server.settings.home / "spool"
        with Sampler(pid, spool) as sampled:
            result["up"] = mbps(size, best_of(rounds, up))
            result["down"] = mbps(size, best_of(rounds, down))
        result["rss_mb"] = (sampled.rss_peak - sampled.rss0) / MiB
        result["disk_mb"] = (sampled.disk_peak - sampled.disk0) / MiB

        with client.start_run("bench-artifacts") as run:
            run.log_artifact(source)
        with client.start_run("bench-artifacts") as run:
            result["relog"] = mbps(size, timed(lambda: run.log_artifact(source)))
    return result


# -- the stock mlflow client ------------------------------------------------------------------------


class MultipartClock:
    """Where the stock client's multipart upload spends its time: the parts, then the completion.

    It times the client's own ``create_multipart_upload`` and ``complete_multipart_upload`` calls
    (everything between them is the parts going to the store); only used to print the split. After
    the upload (outside the timed part) it also waits for lakeops to hash the version in the
    background and notes how long after the acknowledgement its sha256 was filled in.
    """

    def __init__(self, server_url: str | None = None) -> None:
        self.server_url = server_url
        self.parts_s: float | None = None
        self.complete_s: float | None = None
        self.filed_s: float | None = None
        self._acknowledged = 0.0

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

        names = ("create_multipart_upload", "complete_multipart_upload")
        originals: dict[str, Callable[..., Any]] = {name: getattr(HttpArtifactRepository, name) for name in names}
        parts_started: list[float] = []

        def timed_create(*args: Any, **kwargs: Any) -> Any:
            answer = originals["create_multipart_upload"](*args, **kwargs)
            parts_started.append(time.perf_counter())
            return answer

        def timed_complete(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            self.parts_s = started - parts_started[-1] if parts_started else None
            try:
                return originals["complete_multipart_upload"](*args, **kwargs)
            finally:
                self._acknowledged = time.perf_counter()
                self.complete_s = self._acknowledged - started

        for name, wrapper in zip(names, (timed_create, timed_complete), strict=True):
            setattr(HttpArtifactRepository, name, wrapper)
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(HttpArtifactRepository, name, original)

    def wait_filed(self, path: str, deadline_s: float = 600.0) -> None:
        """Wait until lakeops has hashed ``path``'s newest version; note the time since the acknowledgement."""
        if self.server_url is None:
            return
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            versions = httpx.get(f"{self.server_url}/api/v1/artifact-versions/{path}").json()["versions"]
            if not versions[-1].get("is_pending"):
                self.filed_s = time.perf_counter() - self._acknowledged
                return
            time.sleep(0.05)

    def note(self, size: int) -> str:
        if self.parts_s is None or self.complete_s is None:
            return ""
        text = f"parts {mbps(size, self.parts_s):.1f} MB/s, then completion {self.complete_s:.2f} s"
        if self.filed_s is not None:
            text += f"; sha256 filled in {self.filed_s:.1f} s after, in the background"
        return text


def stock_mlflow(
    url: str, source: Path, work: Path, rounds: int, env: dict[str, str], clock: MultipartClock | None = None
) -> tuple[float, float]:
    from mlflow import MlflowClient

    size = source.stat().st_size
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = MlflowClient(url)
        experiment = client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")
        runs: list[str] = []

        def up() -> float:
            run = client.create_run(experiment).info.run_id
            runs.append(run)
            freshen(source)  # new bytes: lakeops would store bytes it has seen as a reference
            with clock.watching() if clock is not None else contextlib.nullcontext():
                seconds = timed(lambda: client.log_artifact(run, str(source)))
            if clock is not None:  # outside the timed part: lakeops hashes it in the background
                clock.wait_filed(f"{experiment}/{run}/artifacts/{source.name}")
            return seconds

        def down() -> float:
            dest = work / f"mlflow-{uuid.uuid4().hex[:6]}"
            dest.mkdir()
            seconds = timed(lambda: client.download_artifacts(runs[-1], source.name, str(dest)))
            same_bytes(source, dest / source.name)
            shutil.rmtree(dest)
            return seconds

        return mbps(size, best_of(rounds, up)), mbps(size, best_of(rounds, down))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ensure_mlflow_venv() -> Path:
    """mlflow 3.17.2 with boto3 (for an S3 artifact destination) in a cached venv."""
    mlflow = MLFLOW_VENV / "bin" / "mlflow"
    python = MLFLOW_VENV / "bin" / "python"
    if python.exists():
        found = subprocess.run(
            [str(python), "-c", "import boto3, mlflow; print(mlflow.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.stdout.strip() == MLFLOW_VERSION:
            return mlflow
    progress(f"creating {MLFLOW_VENV} with mlflow=={MLFLOW_VERSION} and boto3 ...")
    MLFLOW_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3", "-m", "uv", "venv", "--allow-existing", str(MLFLOW_VENV)], check=True)
    subprocess.run(
        ["python3", "-m", "uv", "pip", "install", "--python", str(python), f"mlflow=={MLFLOW_VERSION}", "boto3"],
        check=True,
    )
    return mlflow


class MlflowServerError(RuntimeError):
    """The real MLflow server for the comparison row could not be started."""


@contextlib.contextmanager
def mlflow_server(s3: SeaweedServer, home: Path) -> Iterator[str]:
    """A real MLflow 3.17.2 server whose proxied artifacts live on the S3 server."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LAKEOPS_"))}
    env |= {
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_DEFAULT_REGION": s3.region,
    }
    argv = [
        str(ensure_mlflow_venv()),
        "server",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        f"s3://{s3.bucket}/mlflow-bench",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with (home / "mlflow.log").open("w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # its first start compiles the venv and imports mlflow: >1 min at load
        while True:
            if proc.poll() is not None:
                raise MlflowServerError(f"mlflow server exited: {(home / 'mlflow.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise MlflowServerError("mlflow server did not answer /health within 300 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the run --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="MiB per transfer (default 200)")
    parser.add_argument("--rounds", type=int, default=1, help="best of this many transfers (default 1)")
    parser.add_argument("--skip-mlflow-server", action="store_true", help="no real MLflow server row")
    args = parser.parse_args()
    size = args.size_mb * MiB
    rows: list[tuple[str, float | None, float | None, str]] = []
    mlflow_split = ""
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
        work = Path(tmp)
        source = work / "weights.bin"
        with source.open("wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(MiB))
        progress(f"starting SeaweedFS ... ({args.size_mb} MiB per transfer)")
        with SeaweedServer(work / "s3") as s3:
            progress("floor: the object store alone ...")
            up, down = floor(s3, source, work, args.rounds)
            rows.append(("floor (S3 multipart, 8 parts / ranges in flight)", up, down, ""))
            floor_up, floor_down = up, down

            progress("lakeops serve (s3) with our client ...")
            server = ServeProcess(make_settings("s3", work / "lakeops", s3), work / "lakeops.log")
            try:
                mine = ours(server, source, work, args.rounds)
                note = f"server RSS +{mine['rss_mb']:.0f} MiB, spool +{mine['disk_mb']:.0f} MiB"
                rows.append(("lakeops client -> lakeops (direct)", mine["up"], mine["down"], note))
                rows.append(("lakeops client, the same bytes re-logged", mine["relog"], None, "a reference"))
                progress("stock mlflow client -> lakeops ...")
                small = {"MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(5 * MiB)}
                clock = MultipartClock(server.url)
                up, down = stock_mlflow(server.url, source, work, args.rounds, small, clock)
                rows.append(("mlflow client -> lakeops (multipart on)", up, down, "MIN_FILE_SIZE=5MiB"))
                mlflow_split = clock.note(size)
                if size < 500 * 1024**2:
                    up, down = stock_mlflow(server.url, source, work, args.rounds, {})
                    rows.append(("mlflow client -> lakeops (defaults)", up, down, "< 500 MB: proxied upload"))
            finally:
                server.stop()

            progress("lakeops serve (s3, direct transfers off) with our client ...")
            settings = make_settings("s3", work / "lakeops-proxied", s3)
            settings = settings.model_copy(
                update={"storage": settings.storage.model_copy(update={"direct_transfers": False})}
            )
            server = ServeProcess(settings, work / "lakeops-proxied.log")
            try:
                mine = ours(server, source, work, args.rounds)
                note = f"server RSS +{mine['rss_mb']:.0f} MiB, spool +{mine['disk_mb']:.0f} MiB"
                rows.append(("lakeops client -> lakeops (proxied)", mine["up"], mine["down"], note))
            finally:
                server.stop()

            mlflow_proxied: tuple[float, float] | None = None
            if not args.skip_mlflow_server:
                progress("stock mlflow client -> MLflow 3.17.2 server (proxied artifacts on S3) ...")
                (work / "mlflow").mkdir()
                try:
                    with mlflow_server(s3, work / "mlflow") as url:
                        forced = {
                            "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
                            "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
                        }
                        mlflow_proxied = stock_mlflow(url, source, work, args.rounds, forced)
                        rows.append(("mlflow client -> MLflow 3.17.2 (proxied)", *mlflow_proxied, "boto3 to S3"))
                except MlflowServerError as exc:  # the rows measured so far are still worth printing
                    rows.append(("mlflow client -> MLflow 3.17.2 (proxied)", None, None, str(exc).splitlines()[0]))

    print(
        f"\nartifact transfers, {args.size_mb} MiB of random bytes, SeaweedFS on loopback (MB/s, best of {args.rounds})"
    )
    print(f"  {'path':<50} {'upload':>9} {'download':>9}  note")
    for name, up_rate, down_rate, note in rows:
        up_text = f"{up_rate:9.1f}" if up_rate is not None else f"{'-':>9}"
        down_text = f"{down_rate:9.1f}" if down_rate is not None else f"{'-':>9}"
        print(f"  {name:<50} {up_text} {down_text}  {note}")
    direct = next(r for r in rows if r[0].startswith("lakeops client -> lakeops (direct)"))
    stock = next(r for r in rows if r[0].startswith("mlflow client -> lakeops (multipart on)"))
    print(f"\n  {'ratio':<50} {'upload':>9} {'download':>9}  target")
    for label, row in (("ours", direct), ("stock mlflow client", stock)):
        if row[1] is None or row[2] is None:
            continue
        print(f"  {label + ' / floor':<50} {row[1] / floor_up:9.0%} {row[2] / floor_down:9.0%}  >= 80%")
        if mlflow_proxied is not None:
            up_x, down_x = row[1] / mlflow_proxied[0], row[2] / mlflow_proxied[1]
            print(f"  {label + ' / MLflow proxied':<50} {up_x:8.1f}x {down_x:8.1f}x  >= 2x")
    if mlflow_split:
        # The stock client does not send the sha256: lakeops records the version at once and hashes it
        # (one read inside the store, a copy to its content address) after the acknowledgement.
        print(f"  mlflow client -> lakeops, last upload: {mlflow_split}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
