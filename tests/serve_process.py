"""A real ``lakeops serve`` child process that can be stopped and restarted on the same port and home."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
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
    """``lakeops serve`` on a fixed port; ``stop()`` and ``start()`` again keep port and home."""

    def __init__(
        self,
        settings: LakeopsSettings,
        log: Path,
        port: int | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.extra_args = extra_args
        self.extra_env = extra_env or {}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start the server and wait until /health answers."""
        # --no-preload: great-expectations costs ~8 s of CPU to import; only suite tests need it.
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lakeops.cli",
                    "serve",
                    "--port",
                    str(self.port),
                    "--no-preload",
                    *self.extra_args,
                ],
                env={**child_env(self.settings), **self.extra_env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lakeops serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"lakeops serve did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM (the server commits what it holds), then wait for the exit."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
