"""The compose file configures lakeops with settings it accepts (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

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
        assert settings.catalog_properties()["s3.endpoint"] == "http://minio:9000"
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
