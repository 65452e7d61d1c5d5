"""The compose file is valid Compose, runs the S3 server the tests run, and configures lakeops with
settings it accepts (no Docker engine runs here: `docker-compose config` checks the file statically)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from s3server import PORT_FLAGS, SeaweedServer

from lakeops.settings import LakeopsSettings

COMPOSE = Path(__file__).parents[1] / "docker" / "compose.yaml"


def _settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> LakeopsSettings:
    for key, value in service["environment"].items():
        # Expand ${VAR:-default} the way compose does when VAR is unset.
        monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)))
    return LakeopsSettings()


def _replicas(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in spec["services"].items() if name.startswith("lakeops-")}


def test_compose_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    replicas = _replicas(spec)
    assert len(replicas) >= 2  # a scale-out deployment
    for service in replicas.values():
        settings = _settings_of(service, monkeypatch)
        assert settings.storage.kind == "s3"
        assert settings.warehouse() == "s3://lakeops/lakeops"
        assert settings.catalog.kind == "object"  # no database: the catalog is kept in the bucket
        assert settings.write.log == "object"  # and the write-ahead log: nothing on the container's disk
        assert settings.catalog_properties()["s3.endpoint"] == "http://s3:8333"
        from lakeops.cli import build_parser

        args = build_parser().parse_args(service["command"][1:])  # the image's command is one the CLI accepts
        assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 5000)
        assert settings.auth.enabled or args.allow_no_auth  # `lakeops serve` refuses 0.0.0.0 otherwise
    hostnames = [svc["hostname"] for svc in replicas.values()]
    assert len(set(hostnames)) == len(hostnames)  # each replica its own write-ahead log name


def test_the_proxy_names_every_replica() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    config = (COMPOSE.parent / "haproxy.cfg").read_text()
    for name in _replicas(spec):
        assert f"server {name} {name}:5000 check" in config
        assert f"server {name} {name}:5433 check" in config
    assert spec["services"]["proxy"]["ports"] == ["5000:5000", "5433:5433"]


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    raise AssertionError(
        "neither docker-compose nor the docker compose plugin is installed (apt-get install docker-compose)"
    )


def test_compose_config_passes() -> None:
    # Compose's own validation (schema, anchors, depends_on conditions, variable expansion), without an engine.
    result = subprocess.run(
        [*_compose_command(), "-f", str(COMPOSE), "-p", "lakeops", "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_s3_server_is_the_one_the_tests_run() -> None:
    # SeaweedFS, maintained today (MinIO's open-source edition is archived), started as tests/s3server.py starts
    # it: weed mini with the same switches; only addresses and ports differ (loopback and free ports there).
    spec = yaml.safe_load(COMPOSE.read_text())
    s3 = spec["services"]["s3"]
    assert s3["image"].startswith("chrislusf/seaweedfs:")
    assert s3["entrypoint"] == ["/usr/bin/weed"]
    tested = SeaweedServer(tempfile.mkdtemp()).command()
    assert s3["command"][0] == "mini" == tested[tested.index("mini")]
    tested_flags = {arg.split("=", 1)[0] for arg in tested if arg.startswith("-")} | {f"-{f}" for f in PORT_FLAGS}
    for arg in s3["command"][1:]:
        assert arg.split("=", 1)[0] in tested_flags, f"{arg} is not a switch the tests' SeaweedFS runs with"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(s3["environment"])  # its admin identity
    replica = next(iter(_replicas(spec).values()))
    assert replica["depends_on"] == {"s3": {"condition": "service_healthy"}}
    assert not any("minio" in str(svc.get("image", "")) for svc in spec["services"].values())
