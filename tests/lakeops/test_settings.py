"""Settings: the embedded default, environment variables, a TOML file, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lakeops.settings import LakeopsSettings


def test_embedded_default_lives_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAKEOPS_HOME", raising=False)
    s = LakeopsSettings()
    assert s.home == tmp_path / ".lakeops"
    assert s.warehouse() == (tmp_path / ".lakeops" / "warehouse").as_uri()
    assert s.catalog_properties()["uri"] == f"sqlite:///{tmp_path / '.lakeops' / 'catalog.db'}"


def test_environment_selects_s3_and_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEOPS_STORAGE__KIND", "s3")
    monkeypatch.setenv("LAKEOPS_STORAGE__BUCKET", "lake")
    monkeypatch.setenv("LAKEOPS_STORAGE__ENDPOINT", "http://127.0.0.1:9000")
    monkeypatch.setenv("LAKEOPS_STORAGE__ACCESS_KEY_ID", "k")
    monkeypatch.setenv("LAKEOPS_STORAGE__SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("LAKEOPS_CATALOG__KIND", "rest")
    monkeypatch.setenv("LAKEOPS_CATALOG__URI", "http://127.0.0.1:8181")
    monkeypatch.setenv("LAKEOPS_CATALOG__CREDENTIAL", "k:s")
    s = LakeopsSettings()
    props = s.catalog_properties()
    assert s.warehouse() == "s3://lake/lakeops"
    assert props["type"] == "rest" and props["credential"] == "k:s"
    assert props["s3.endpoint"] == "http://127.0.0.1:9000" and props["s3.force-virtual-addressing"] == "false"
    assert "k:s" not in repr(s)  # secrets stay out of logs


def test_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "lakeops.toml"
    config.write_text(
        'namespace = "team"\n[write]\ncommit_interval_s = 0.5\n[catalog]\nkind = "sql"\nuri = "postgresql+psycopg://u:p@db/lake"\n'
    )
    monkeypatch.setenv("LAKEOPS_CONFIG", str(config))
    s = LakeopsSettings()
    assert (s.namespace, s.write.commit_interval_s) == ("team", 0.5)
    assert s.catalog_properties()["uri"] == "postgresql+psycopg://u:p@db/lake"


def test_unknown_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEOPS_STORAGE__KIND", "ftp")
    with pytest.raises(ValidationError, match="kind"):
        LakeopsSettings()


def test_redact_removes_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEOPS_STORAGE__KIND", "s3")
    monkeypatch.setenv("LAKEOPS_STORAGE__BUCKET", "lake")
    monkeypatch.setenv("LAKEOPS_STORAGE__SECRET_ACCESS_KEY", "s3cr3t-key")
    monkeypatch.setenv("LAKEOPS_CATALOG__KIND", "rest")
    monkeypatch.setenv("LAKEOPS_CATALOG__URI", "http://127.0.0.1:8181")
    monkeypatch.setenv("LAKEOPS_CATALOG__CREDENTIAL", "client-id:cl1ent-s3cret")
    s = LakeopsSettings()
    text = s.redact("signature for s3cr3t-key failed; token cl1ent-s3cret; client-id:cl1ent-s3cret")
    assert "s3cr3t" not in text and "cl1ent" not in text
    assert text.startswith("signature for *** failed")
