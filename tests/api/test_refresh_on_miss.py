"""Replicas behind a load balancer: a read that misses an id another replica just created waits for it.

Two apps on one lake, each with its own home and object-store log, as two ``lakeops serve``
replicas. Replica B's periodic refresh is switched off (an hour), so only the miss can make it look:
a run created on A is answered by B's very next ``GET`` (a 404 without ``api/refresh_on_miss.py``),
while an id that exists nowhere is still a 404 once the wait is over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lakes import make_settings

from api.main import create_app
from lakeops.settings import LakeopsSettings

pytestmark = pytest.mark.api

KINDS = [pytest.param("file-object", id="file"), pytest.param("s3-object", id="s3", marks=pytest.mark.s3)]
MLFLOW = "/api/2.0/mlflow"


@pytest.fixture(params=KINDS)
def replica(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    s3 = request.getfixturevalue("s3_server") if request.param.startswith("s3") else None
    lake = make_settings(request.param, tmp_path / "lake", s3)
    opened: list[TestClient] = []

    def open_replica(name: str, **write: Any) -> TestClient:
        settings: LakeopsSettings = lake.model_copy(
            update={
                "home": tmp_path / name,
                "write": lake.write.model_copy(update={"log": "object", "log_name": name, **write}),
            }
        )
        if lake.storage.kind == "local":  # the warehouse stays under the lake's home
            settings = settings.model_copy(
                update={
                    "storage": lake.storage.model_copy(update={"root": Path(lake.warehouse().removeprefix("file://"))})
                }
            )
        client = TestClient(create_app(settings))
        client.__enter__()
        opened.append(client)
        return client

    yield open_replica
    for client in reversed(opened):
        client.__exit__(None, None, None)


def test_a_run_created_on_one_replica_is_found_by_the_others_next_read(replica: Callable[..., TestClient]) -> None:
    a = replica("replica-a")
    b = replica("replica-b", refresh_interval_s=3600.0, miss_wait_s=30.0)  # 30 s: a bound, not a figure
    experiment_id = a.post(f"{MLFLOW}/experiments/create", json={"name": "behind a balancer"}).json()["experiment_id"]
    for _ in range(3):
        run_id = a.post(f"{MLFLOW}/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
        answer = b.get(f"{MLFLOW}/runs/get", params={"run_id": run_id})
        assert answer.status_code == 200, answer.text
        assert answer.json()["run"]["info"]["experiment_id"] == experiment_id
        native = b.get(f"/api/v1/runs/{run_id}")
        assert native.status_code == 200, native.text


def test_an_id_that_exists_nowhere_is_still_not_found(replica: Callable[..., TestClient]) -> None:
    b = replica("replica-b", miss_wait_s=0.3)
    answer = b.get(f"{MLFLOW}/runs/get", params={"run_id": "0" * 32})
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert b.get("/api/v1/runs/" + "0" * 32).status_code == 404
