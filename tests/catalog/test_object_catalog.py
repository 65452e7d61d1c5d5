"""The object-store catalog: one contract run on file:// and on a real S3 server (SeaweedFS).

Includes the property the catalog exists for: several processes committing to one table at
once, through nothing but the object store, lose no commit and apply none twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from s3server import S3Target, pyiceberg_s3_properties

from catalog.connection import open_catalog
from catalog.pointers import open_pointer_reader
from catalog.versions import OBJECT_CATALOG_IMPL, Versions, open_version_store

SCHEMA = pa.schema([pa.field("writer", pa.int32()), pa.field("seq", pa.int32())])
ROOT = Path(__file__).resolve().parents[2]


def _properties(kind: str, tmp_path: Path, s3: S3Target | None) -> dict[str, str]:
    if kind == "file":
        return {"py-catalog-impl": OBJECT_CATALOG_IMPL, "warehouse": (tmp_path / "wh").as_uri()}
    assert s3 is not None
    return {
        "py-catalog-impl": OBJECT_CATALOG_IMPL,
        "warehouse": f"s3://{s3.bucket}/objcat-{uuid.uuid4().hex[:10]}",
        **pyiceberg_s3_properties(s3),
    }


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def properties(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    s3 = request.getfixturevalue("s3_server") if request.param == "s3" else None
    return _properties(request.param, tmp_path, s3)


@pytest.fixture
def catalog(properties: dict[str, str]) -> Catalog:
    return open_catalog("lakeops", properties)


def _rows(writer: int, seq: int) -> pa.Table:
    return pa.table({"writer": [writer], "seq": [seq]}, schema=SCHEMA)


def test_namespaces(catalog: Catalog) -> None:
    assert catalog.list_namespaces() == []
    catalog.create_namespace("lake", {"owner": "ml"})
    catalog.create_namespace(("lake", "nested"))
    with pytest.raises(NamespaceAlreadyExistsError, match="already exists"):
        catalog.create_namespace("lake")
    assert catalog.list_namespaces() == [("lake",)]
    assert catalog.list_namespaces("lake") == [("lake", "nested")]
    assert catalog.load_namespace_properties("lake") == {"owner": "ml"}
    summary = catalog.update_namespace_properties("lake", removals={"owner"}, updates={"team": "core"})
    assert summary.removed == ["owner"] and summary.updated == ["team"]
    assert catalog.load_namespace_properties("lake") == {"team": "core"}
    catalog.drop_namespace(("lake", "nested"))
    assert catalog.list_namespaces("lake") == []
    with pytest.raises(NoSuchNamespaceError, match="does not exist"):
        catalog.load_namespace_properties(("lake", "nested"))
    catalog.create_namespace(("lake", "nested"))  # a dropped name can be created again
    assert catalog.namespace_exists(("lake", "nested"))


def test_tables_round_trip_and_lifecycle(catalog: Catalog) -> None:
    with pytest.raises(NoSuchNamespaceError, match="does not exist"):
        catalog.create_table(("lake", "t"), schema=SCHEMA)
    catalog.create_namespace("lake")
    table = catalog.create_table(("lake", "t"), schema=SCHEMA)
    with pytest.raises(TableAlreadyExistsError, match="already exists"):
        catalog.create_table(("lake", "t"), schema=SCHEMA)
    table.append(_rows(1, 1))
    table.append(_rows(1, 2))
    loaded = catalog.load_table(("lake", "t"))
    assert loaded.metadata_location == table.metadata_location
    assert sorted(loaded.scan().to_arrow().column("seq").to_pylist()) == [1, 2]
    assert len(loaded.metadata.snapshots) == 2
    assert catalog.list_tables("lake") == [("lake", "t")]
    with pytest.raises(NamespaceNotEmptyError, match="not empty"):
        catalog.drop_namespace("lake")

    renamed = catalog.rename_table(("lake", "t"), ("lake", "u"))
    assert renamed.scan().to_arrow().num_rows == 2
    assert catalog.list_tables("lake") == [("lake", "u")]
    with pytest.raises(NoSuchTableError, match="does not exist"):
        catalog.load_table(("lake", "t"))

    catalog.drop_table(("lake", "u"))
    assert catalog.list_tables("lake") == []
    with pytest.raises(NoSuchTableError, match="does not exist"):
        catalog.drop_table(("lake", "u"))
    registered = catalog.register_table(("lake", "again"), renamed.metadata_location)
    assert registered.scan().to_arrow().num_rows == 2


def test_a_stale_committer_is_refused_not_lost(properties: dict[str, str]) -> None:
    """Two handles read version N; the first creates N+1, the second's create of N+1 is refused."""
    versions = Versions(open_version_store(properties["warehouse"], properties))
    first = versions.put_next("tables/x/y/", None, {"metadata-location": "a"})
    assert first is not None and first.number == 1
    assert versions.put_next("tables/x/y/", None, {"metadata-location": "b"}) is None
    second = versions.put_next("tables/x/y/", first, {"metadata-location": "c"})
    assert second is not None
    latest = Versions(open_version_store(properties["warehouse"], properties)).latest("tables/x/y/")
    assert latest is not None and latest.number == 2 and latest.body["metadata-location"] == "c"


def test_equal_bodies_from_two_writers_still_make_one_winner(properties: dict[str, str]) -> None:
    """Two creators of the same namespace with the same properties: exactly one creates version 1."""
    versions = Versions(open_version_store(properties["warehouse"], properties))
    body = {"namespace": ["lake"], "properties": {"exists": "true"}}
    results = [versions.put_next("namespaces/lake/", None, body) for _ in range(2)]
    assert [r is not None for r in results] == [True, False]


@pytest.mark.s3
def test_a_repeated_create_of_our_own_bytes_counts_as_created(s3_server: S3Target, tmp_path: Path) -> None:
    """What minio's retry of a create whose answer was lost meets on S3: the object it wrote itself.

    (S3 only: a local create is one link(2), with no request to retry.)
    """
    properties = _properties("s3", tmp_path, s3_server)
    store = open_version_store(properties["warehouse"], properties)
    assert store.create("wal/w1/0001.log", b"segment one")
    assert store.create("wal/w1/0001.log", b"segment one")  # the retry: ours, not another writer's
    assert not store.create("wal/w1/0001.log", b"segment from another writer")
    assert store.get("wal/w1/0001.log") == b"segment one"
    # an uncontended key (a log segment only its writer writes) skips the check after a success, not the one after a refusal
    assert store.create("wal/w1/0002.log", b"segment two", contended=False)
    assert store.create("wal/w1/0002.log", b"segment two", contended=False)
    assert not store.create("wal/w1/0002.log", b"segment from another writer", contended=False)


def test_a_commit_on_a_stale_table_fails_and_succeeds_after_reload(catalog: Catalog) -> None:
    catalog.create_namespace("lake")
    catalog.create_table(("lake", "t"), schema=SCHEMA, properties={"commit.retry.num-retries": "0"})
    first, second = catalog.load_table(("lake", "t")), catalog.load_table(("lake", "t"))
    first.append(_rows(1, 1))
    with pytest.raises(CommitFailedException, match="branch main"):
        second.append(_rows(2, 1))
    second = catalog.load_table(("lake", "t"))
    second.append(_rows(2, 1))
    rows = catalog.load_table(("lake", "t")).scan().to_arrow().to_pylist()
    assert sorted((r["writer"], r["seq"]) for r in rows) == [(1, 1), (2, 1)]


def test_pointer_reader_tells_which_tables_moved(catalog: Catalog) -> None:
    catalog.create_namespace("lake")
    a = catalog.create_table(("lake", "a"), schema=SCHEMA)
    b = catalog.create_table(("lake", "b"), schema=SCHEMA)
    reader = open_pointer_reader(catalog.properties, catalog_name="lakeops")
    assert reader is not None
    before = reader.read("lake")
    assert before == {"a": a.metadata_location, "b": b.metadata_location}
    a.append(_rows(1, 1))
    after = reader.read("lake")
    assert after["a"] == catalog.load_table(("lake", "a")).metadata_location != before["a"]
    assert after["b"] == before["b"]


def test_old_pointer_versions_are_pruned(catalog: Catalog, properties: dict[str, str]) -> None:
    catalog.create_namespace("lake")
    table = catalog.create_table(("lake", "t"), schema=SCHEMA)
    for seq in range(24):  # pointer versions 2..25; the commit of version 16 prunes 1..12
        table.append(_rows(1, seq))
    store = open_version_store(properties["warehouse"], properties)
    kept = store.list("tables/lake/t/")
    assert 1 <= len(kept) <= 13
    assert catalog.load_table(("lake", "t")).scan().to_arrow().num_rows == 24


_COMMITTER = """
import json, sys, time
from pathlib import Path
import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from catalog.connection import open_catalog
props, writer, commits, go = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
catalog = open_catalog("lakeops", props)
table = catalog.load_table(("lake", "t"))
schema = pa.schema([pa.field("writer", pa.int32()), pa.field("seq", pa.int32())])
while not go.exists():
    time.sleep(0.01)
conflicts = 0
for seq in range(commits):
    while True:
        try:
            table.append(pa.table({"writer": [writer], "seq": [seq]}, schema=schema))
            break
        except CommitFailedException:
            conflicts += 1
            table = catalog.load_table(("lake", "t"))
    print(json.dumps({"committed": seq}), flush=True)
print(json.dumps({"conflicts": conflicts}))
"""


@pytest.mark.slow
def test_concurrent_committers_in_several_processes_lose_nothing(
    catalog: Catalog, properties: dict[str, str], tmp_path: Path
) -> None:
    """4 processes commit to one table; a 5th is killed with SIGKILL while it commits in a loop."""
    writers, commits, victim = 4, 6, 4
    catalog.create_namespace("lake")
    # pyiceberg's own retries off: every conflict reaches the committer, which reloads and retries.
    catalog.create_table(("lake", "t"), schema=SCHEMA, properties={"commit.retry.num-retries": "0"})
    go = tmp_path / "go"

    def committer(writer: int, count: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", _COMMITTER, json.dumps(properties), str(writer), str(count), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [committer(w, commits) for w in range(writers)]
    doomed = committer(victim, 1_000)
    time.sleep(0.5)  # not a timing assertion: lets the interpreters start so the commits overlap more
    go.touch()
    assert doomed.stdout is not None
    acknowledged = [json.loads(doomed.stdout.readline())["committed"] for _ in range(3)]
    doomed.send_signal(signal.SIGKILL)  # it is committing its next row right now
    doomed.wait()
    acknowledged += [json.loads(line)["committed"] for line in doomed.stdout.read().splitlines()]  # printed before
    outputs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _out, err in outputs]
    assert all("conflicts" in out for out, _err in outputs)

    table = catalog.load_table(("lake", "t"))
    rows = sorted((r["writer"], r["seq"]) for r in table.scan().to_arrow().to_pylist())
    survivors = [r for r in rows if r[0] != victim]
    assert survivors == [(w, s) for w in range(writers) for s in range(commits)]  # none lost, none twice
    killed = [s for w, s in rows if w == victim]
    # every commit it saw succeed is there once; the one it was killed in landed whole or not at all
    assert killed in ([*range(len(acknowledged))], [*range(len(acknowledged) + 1)]), killed
    assert len(table.metadata.snapshots) == len(rows)
    table.append(_rows(9, 0))  # the table takes commits after the kill
    assert catalog.load_table(("lake", "t")).scan().to_arrow().num_rows == len(rows) + 1


@pytest.mark.s3
def test_without_keys_in_the_settings_the_aws_chain_is_used(
    s3_server: S3Target, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As on AWS with an instance or pod role: no keys configured, the environment's credentials apply."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    properties = _properties("s3", tmp_path, s3_server)
    del properties["s3.access-key-id"], properties["s3.secret-access-key"]
    catalog = open_catalog("lakeops", properties)
    catalog.create_namespace("lake")
    catalog.create_table(("lake", "t"), schema=SCHEMA).append(_rows(1, 1))
    assert open_catalog("lakeops", properties).load_table(("lake", "t")).scan().to_arrow().num_rows == 1
