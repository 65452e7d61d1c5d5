"""The compose file configures lakeops with settings it accepts (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lakeops.settings import LakeopsSettings

COMPOSE = Path(__file__).parents[1] / "docker" / "compose.yaml"


def test_compose_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    env = spec["services"]["lakeops"]["environment"]
    for key, value in env.items():
        # Expand ${VAR:-default} the way compose does when VAR is unset.
        monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)))
    settings = LakeopsSettings()
    assert settings.storage.kind == "s3"
    assert settings.warehouse() == "s3://lakeops/lakeops"
    assert settings.catalog.kind == "object"  # no database: the catalog is kept in the bucket
    assert settings.write.log == "object"  # and the write-ahead log: nothing on the container's disk
    assert spec["services"]["lakeops"]["hostname"]  # the log's name, stable when the container is recreated
    assert settings.catalog_properties()["s3.endpoint"] == "http://minio:9000"
    command = spec["services"]["lakeops"]["command"]
    from lakeops.cli import build_parser

    args = build_parser().parse_args(command[1:])  # the image's command is one the CLI accepts
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 5000)
