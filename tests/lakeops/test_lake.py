"""One way to open a lake: ``Lake`` wires every service once, with one actor, for app, client and CLI."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pyarrow.compute as pc
from lakes import make_settings

from catalog.tables import EXPERIMENT_CHANGES, REGISTERED_MODEL_CHANGES
from lakeops.lake import Lake


def test_every_service_is_listed_for_the_app() -> None:
    properties = {name for name, value in vars(Lake).items() if isinstance(value, cached_property)}
    assert properties - {"objects"} == set(Lake.SERVICES)


def test_services_are_built_once_and_record_one_actor(tmp_path: Path) -> None:
    with Lake(make_settings("file", tmp_path, None), actor="ana", start_committer=False) as lake:
        assert lake.tracking is lake.tracking
        assert lake.datasets.artifacts is lake.artifacts
        assert lake.registry.gate is lake.quality_gate
        experiment_id = lake.tracking.create_experiment("one-actor")
        lake.registry.create_registered_model("m")
        lake.store.commit()
        changes = lake.store.table(EXPERIMENT_CHANGES.name).scan().to_arrow()
        mine = changes.filter(pc.equal(changes["experiment_id"], experiment_id))
        assert set(mine["actor"].to_pylist()) == {"ana"}
        models = lake.store.table(REGISTERED_MODEL_CHANGES.name).scan().to_arrow()
        assert set(models["actor"].to_pylist()) == {"ana"}
        assert lake.sql.query("SELECT count(*) AS n FROM experiments WHERE name = 'one-actor'").to_pylist() == [
            {"n": 1}
        ]


def test_the_embedded_client_opens_a_lake(tmp_path: Path) -> None:
    from lakeops.client.transport import EmbeddedTransport

    settings = make_settings("file", tmp_path, None)
    transport = EmbeddedTransport(settings)
    try:
        assert isinstance(transport.lake, Lake)
        assert transport.tracking is transport.lake.tracking
        assert transport._registry is transport.lake.registry
        assert transport.tracking.actor == transport.lake.registry.actor == transport.lake.artifacts.actor
    finally:
        transport.close()
