"""Users, tokens and grants in the lake (``lakeops.services.auth``) and the ``lakeops users`` command line."""

from __future__ import annotations

import io
import sys

import pytest
from serve_process import settings_env

from lakeops.cli import main
from lakeops.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from lakeops.services.auth import AuthService
from lakeops.settings import AuthConfig, LakeopsSettings
from lakeops.stores import IcebergStore, open_store


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_tokens_expire_and_are_revoked(store: IcebergStore) -> None:
    clock = Clock()
    auth = AuthService(store, AuthConfig(enabled=True, token_days=1), now_ms=clock)
    auth.create_user("dana", "dana-password")
    token, info = auth.create_token("dana", name="nightly")
    assert auth.authenticate_token(token) is not None and info.expires_at == clock.ms + 86_400_000
    clock.ms += 86_400_000 - 1
    assert auth.authenticate_token(token) is not None
    clock.ms += 1
    assert auth.authenticate_token(token) is None  # expired
    fresh, fresh_info = auth.create_token("dana", days=30)
    assert auth.authenticate_token(fresh) is not None
    auth.revoke_token(fresh_info.token_id)
    assert auth.authenticate_token(fresh) is None
    with pytest.raises(NotFoundError, match="No API token"):
        auth.revoke_token(fresh_info.token_id)
    with pytest.raises(InvalidArgumentError, match="days"):
        auth.create_token("dana", days=0)


@pytest.mark.parametrize(
    "backend", ["file", pytest.param("s3", marks=pytest.mark.s3)], indirect=True
)  # users are a constrained table: on the object store too
def test_users_and_grants_survive_a_restart(lake_settings: LakeopsSettings) -> None:
    store = open_store(lake_settings)
    auth = AuthService(store, AuthConfig(enabled=True, default_permission="NO_PERMISSIONS"))
    erin = auth.create_user("erin", "erin-password")
    with pytest.raises(AlreadyExistsError, match="already exists"):
        auth.create_user("erin", "other-password")
    with pytest.raises(InvalidArgumentError, match="password"):
        auth.create_user("frank", "short")
    auth.grant("experiment", "42", "erin", "EDIT")
    auth.update_password("erin", "erin-password-2")
    store.close()
    store = open_store(lake_settings)
    try:
        auth = AuthService(store, AuthConfig(enabled=True, default_permission="NO_PERMISSIONS"))
        assert auth.authenticate_password("erin", "erin-password") is None
        user = auth.authenticate_password("erin", "erin-password-2")
        assert user is not None and user.user_id == erin.user_id
        assert auth.level(user, "experiment", "42") == "EDIT"
        assert auth.level(user, "experiment", "43") == "NO_PERMISSIONS"
        auth.revoke("experiment", "42", "erin")
        assert auth.level(user, "experiment", "42") == "NO_PERMISSIONS"
        # A deleted user takes their tokens and grants along: a new "erin" starts afresh.
        auth.grant("registered_model", "churn", "erin", "MANAGE")
        token, _info = auth.create_token("erin")
        auth.delete_user("erin")
        assert auth.authenticate_token(token) is None and auth.list_tokens("erin") == []
        again = auth.create_user("erin", "erin-password-3")
        assert again.user_id != erin.user_id
        assert auth.level(again, "registered_model", "churn") == "NO_PERMISSIONS"
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_users_command_line(
    lake_settings: LakeopsSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in settings_env(lake_settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO("gina-password\n"))
    assert main(["users", "create", "gina", "--admin", "--password-stdin"]) == 0
    assert main(["users", "token", "gina", "--name", "ci", "--days", "7"]) == 0
    out = capsys.readouterr()
    token = out.out.strip().splitlines()[-1]
    assert token.startswith("lko_") and "shown once" in out.err
    assert main(["users", "list"]) == 0
    assert "gina (admin)" in capsys.readouterr().out
    assert main(["users", "grant", "gina", "experiment", "7", "READ"]) == 0
    assert main(["users", "tokens", "gina"]) == 0
    token_id = capsys.readouterr().out.strip().splitlines()[-1].split()[0]
    assert token.startswith(f"lko_{token_id}_")
    assert main(["users", "revoke", token_id]) == 0
    assert main(["users", "revoke", token_id]) == 2
    assert "No API token" in capsys.readouterr().err
    store = open_store(lake_settings)
    try:
        auth = AuthService(store, AuthConfig(enabled=True))
        assert auth.authenticate_token(token) is None
        gina = auth.authenticate_password("gina", "gina-password")
        assert gina is not None and gina.is_admin
        assert auth.granted("experiment", "7", "gina") == "READ"
    finally:
        store.close()
