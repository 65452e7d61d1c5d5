"""A real ``lakeops serve`` child process that can be stopped and restarted on the same port and home."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import psutil
from pydantic import SecretStr

from lakeops.settings import LakeopsSettings


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: LakeopsSettings) -> dict[str, str]:
    """The environment variables that configure ``settings`` in a child process."""
    env = {"LAKEOPS_HOME": str(settings.home), "LAKEOPS_NAMESPACE": settings.namespace}
    for section in ("storage", "catalog", "write"):
        for key, value in getattr(settings, section).model_dump().items():
            if value is None:
                continue
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            env[f"LAKEOPS_{section.upper()}__{key.upper()}"] = text
    return env


def child_env(settings: LakeopsSettings) -> dict[str, str]:
    """This process's environment without LAKEOPS_/MLFLOW_ variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEOPS_", "MLFLOW_"))}
    env.update(settings_env(settings))
    return env


class ServeProcess:
    """``lakeops serve`` on a fixed port; ``stop()`` and ``start()`` again keep port and home.

    A start that fails (the process exits, or ``/health`` does not answer within 90 s) kills the
    process before it raises, so a failed fixture leaves nothing running. The first start on a port
    picked here moves to another free port if that one was taken in the meantime (by a parallel
    test worker, say); a port given by the caller is kept.
    """

    START_TIMEOUT_S = 90.0

    def __init__(
        self,
        settings: LakeopsSettings,
        log: Path,
        port: int | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
        ca_file: Path | None = None,
        command: Callable[[int], Sequence[str]] | None = None,
    ) -> None:
        """``ca_file``: the server serves HTTPS (``--ssl-certfile`` in ``extra_args``) with a certificate it signs.

        ``command``: the argv that serves on the port it is given, instead of ``lakeops serve --port P
        --no-preload *extra_args`` (a README line run with ``bash -c``, say: bash execs a last simple
        command, so the process started is the server itself).
        """
        self.settings = settings
        self.command = command
        self.ca_file = ca_file
        self.scheme = "https" if ca_file is not None else "http"
        self.extra_args = extra_args
        self.extra_env = extra_env or {}
        self.port = port or free_port()
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._may_move = port is None
        self.start()

    def start(self) -> None:
        """Start the server and wait until /health answers.

        Raises:
            RuntimeError: it exited or did not answer in time (the message ends with its log's tail).
        """
        for attempt in range(1, 4):
            try:
                self._launch_and_wait()
            except _PortTaken as taken:
                if not self._may_move or attempt == 3:
                    raise RuntimeError(f"lakeops serve could not bind port {self.port}: {taken}") from None
                self.port = free_port()
                self.url = f"{self.scheme}://127.0.0.1:{self.port}"
            else:
                self._may_move = False  # a restart comes back on the same port
                return

    def _launch_and_wait(self) -> None:
        logged = self.log.stat().st_size if self.log.exists() else 0
        # --no-preload: great-expectations costs ~8 s of CPU to import; only suite tests need it.
        with self.log.open("a") as out:
            argv = [sys.executable, "-m", "lakeops.cli", "serve", "--port", str(self.port), "--no-preload"]
            proc = subprocess.Popen(
                list(self.command(self.port)) if self.command is not None else [*argv, *self.extra_args],
                env={**child_env(self.settings), **self.extra_env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # One client for the polls: httpx.get() builds a client, and with it a TLS context (~40 ms of CPU), per call.
        verify = ssl.create_default_context(cafile=self.ca_file) if self.ca_file is not None else True
        try:
            with httpx.Client(timeout=1, verify=verify) as http:
                deadline = time.monotonic() + self.START_TIMEOUT_S
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        tail = self._log_tail(logged)
                        if "address already in use" in tail.lower():
                            raise _PortTaken(tail)
                        raise RuntimeError(f"lakeops serve exited with code {proc.returncode}: {tail}")
                    try:
                        # The answer must come from this process, not another test's server that got the same port.
                        health = http.get(f"{self.url}/health")
                        if health.status_code == 200 and _listens(proc, self.port):
                            self.proc = proc
                            return
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
            raise RuntimeError(
                f"lakeops serve did not answer /health within {self.START_TIMEOUT_S:.0f} s: {self._log_tail(logged)}"
            )
        except BaseException:
            _end(proc)
            raise

    def _log_tail(self, since: int) -> str:
        with self.log.open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        """SIGTERM (the server commits what it holds), then wait for the exit."""
        if self.proc is None:
            return
        _end(self.proc)
        self.proc = None


class _PortTaken(Exception):
    """The server exited at start-up because its port was taken."""


def _listens(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Whether ``proc`` itself holds the listening socket on ``port``."""
    try:
        sockets = psutil.Process(proc.pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in sockets)


def _end(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
