"""Workspaces in the lake (``lakeops.services.workspaces``) and what membership gives (``AuthService.level``).

On file and s3: workspaces are a constrained table, and everything must read back the same after a restart.
"""

from __future__ import annotations

import pytest
from serve_process import settings_env

from lakeops.cli import main
from lakeops.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError
from lakeops.services.auth import AuthService
from lakeops.services.workspaces import WorkspaceService
from lakeops.settings import AuthConfig, LakeopsSettings
from lakeops.stores import open_store
from lakeops.tracking import TrackingService

CONFIG = AuthConfig(enabled=True, default_permission="READ")


@pytest.mark.parametrize("backend", ["file", pytest.param("s3", marks=pytest.mark.s3)], indirect=True)
def test_workspaces_memberships_and_placements_survive_a_restart(lake_settings: LakeopsSettings) -> None:
    store = open_store(lake_settings)
    try:
        workspaces, auth, tracking = WorkspaceService(store), AuthService(store, CONFIG), TrackingService(store)
        workspaces.create_workspace("team-a", description="A team")
        with pytest.raises(AlreadyExistsError, match="already exists"):
            workspaces.create_workspace("team-a")
        for bad in ("default", "Team_A", "a", "api", "-edge"):
            with pytest.raises(InvalidArgumentError, match=r"[Ww]orkspace"):
                workspaces.create_workspace(bad)
        alice, bob = auth.create_user("alice", "alice-password"), auth.create_user("bob", "bob-password")
        shared = tracking.create_experiment("shared")  # in default
        inside = tracking.create_experiment("inside")
        auth.assign("experiment", inside, "team-a")
        auth.assign("registered_model", "churn", "team-a")
        auth.grant("workspace", "team-a", "alice", "READ")
        with pytest.raises(NotFoundError, match="not found"):
            auth.grant("workspace", "team-z", "alice", "READ")
        with pytest.raises(InvalidArgumentError, match="workspace member"):
            auth.grant("workspace", "team-a", "alice", "NO_PERMISSIONS")
        auth.rename_resource("registered_model", "churn", "churn-2")  # the model's workspace follows its name
    finally:
        store.close()
    store = open_store(lake_settings)
    try:
        workspaces, auth = WorkspaceService(store), AuthService(store, CONFIG)
        assert [w.name for w in workspaces.list_workspaces()] == ["default", "team-a"]
        assert workspaces.get_workspace("team-a").description == "A team"
        assert auth.workspace_of("registered_model", "churn-2") == "team-a"
        assert auth.workspace_of("registered_model", "churn") == "default"
        # A member reads what is in the workspace; a non-member nothing there, though the default is READ.
        assert auth.level(alice, "experiment", inside) == "READ"
        assert auth.level(bob, "experiment", inside) == "NO_PERMISSIONS"
        assert auth.level(bob, "registered_model", "churn-2") == "NO_PERMISSIONS"
        assert auth.level(bob, "experiment", shared) == "READ"
        assert not auth.may_create_in(alice, "team-a") and auth.may_create_in(bob, "default")
        # SQL: bob's rows leave the workspace's experiment out; alice (a member, default READ) reads every row.
        bobs = auth.readable(bob)
        assert bobs is not None and inside in bobs.hidden_experiments and bobs.workspaces == {"default"}
        assert shared not in bobs.hidden_experiments and bobs.by_default
        assert auth.readable(alice) is None and not auth.may_read_everything(bob)
        # USE: the configured default on what others made, and the right to create.
        auth.grant("workspace", "team-a", "bob", "USE")
        assert auth.level(bob, "experiment", inside) == "READ" and auth.may_create_in(bob, "team-a")
        # A grant on the experiment comes before the membership.
        auth.grant("experiment", inside, "alice", "MANAGE")
        assert auth.level(alice, "experiment", inside) == "MANAGE"
        # Deleting: RESTRICT refuses while it holds something; SET_DEFAULT moves it all, memberships go.
        with pytest.raises(ConflictError, match="still holds"):
            workspaces.delete_workspace("team-a")
        with pytest.raises(InvalidArgumentError, match="CASCADE"):
            workspaces.delete_workspace("team-a", mode="CASCADE")
        with pytest.raises(InvalidArgumentError, match="reserved"):
            workspaces.delete_workspace("default")
        workspaces.delete_workspace("team-a", mode="SET_DEFAULT")
        assert auth.workspace_of("experiment", inside) == "default"
        assert auth.membership("team-a", "bob") is None
        assert auth.level(bob, "experiment", inside) == "READ"  # default's default level again
        with pytest.raises(NotFoundError, match="not found"):
            workspaces.get_workspace("team-a")
        workspaces.create_workspace("team-a")  # the name is free again, and holds nothing of before
        assert auth.level(bob, "experiment", inside) == "READ" and workspaces.members("team-a") == []
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_members_from_the_command_line(lake_settings: LakeopsSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in settings_env(lake_settings).items():
        monkeypatch.setenv(key, value)
    store = open_store(lake_settings)
    try:
        WorkspaceService(store).create_workspace("team-b")
        AuthService(store, CONFIG).create_user("hana", "hana-password")
    finally:
        store.close()
    assert main(["users", "grant", "hana", "workspace", "team-b", "USE"]) == 0
    assert main(["users", "grant", "hana", "workspace", "nowhere", "USE"]) == 2
    store = open_store(lake_settings)
    try:
        assert AuthService(store, CONFIG).membership("team-b", "hana") == "USE"
    finally:
        store.close()
