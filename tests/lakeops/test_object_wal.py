"""The write-ahead log in the object store: stateless replicas lose no acknowledged write.

The log's contract on file:// and SeaweedFS (append, group-committed sync, replay after reopen,
truncation that keeps the position, fencing of a second writer of one log), then the property it
exists for: a writer killed with SIGKILL is replaced by a process with the same log name on an
*empty* home directory, and every batch the first one acknowledged is there, exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from lakes import make_settings, settings_json
from s3server import pyiceberg_s3_properties
from serve_process import ServeProcess

from catalog.versions import Versions, VersionStore, open_version_store
from lakeops.object_wal import LEASE_DIR, WAL_DIR, LogFencedError, ObjectWriteAheadLog
from lakeops.settings import LakeopsSettings, LocalStorageConfig
from lakeops.stores import open_store
from lakeops.tracking import TrackingService

WRITER = Path(__file__).parent / "procs" / "writer.py"
BATCH = 10
KINDS = [pytest.param("file", id="file"), pytest.param("s3", id="s3", marks=pytest.mark.s3)]


@pytest.fixture(params=KINDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A warehouse and its storage properties, on file:// or SeaweedFS."""
    if request.param == "file":
        return (tmp_path / "wh").as_uri(), {}
    s3 = request.getfixturevalue("s3_server")
    return f"s3://{s3.bucket}/wal-{uuid.uuid4().hex[:8]}", pyiceberg_s3_properties(s3)


@pytest.fixture
def objects(location: tuple[str, dict[str, str]]) -> VersionStore:
    return open_version_store(location[0], location[1], directory=WAL_DIR)


def test_records_survive_a_reopen_and_the_position_survives_truncation(objects: VersionStore) -> None:
    log = ObjectWriteAheadLog.open(objects, "replica-1")
    tickets = [log.append(f"r{i}".encode()) for i in range(3)]
    log.sync(tickets[-1][1])  # one segment for all three
    assert [seq for seq, _t in tickets] == [1, 2, 3]
    log.close(committed=True)  # a clean stop releases the lease: the next process of this name starts at once
    again = ObjectWriteAheadLog.open(objects, "replica-1")
    assert list(again.replay()) == [(1, b"r0"), (2, b"r1"), (3, b"r2")]
    assert list(again.replay(after_seq=2)) == [(3, b"r2")]
    other = ObjectWriteAheadLog.open(objects, "replica-2")
    assert list(other.replay()) == []  # another name, another log
    other.close()

    seq, ticket = again.append(b"r3")
    again.sync(ticket)
    assert seq == 4
    assert again.truncate_through(4) == 1  # the newest segment stays: it carries the position
    again.close(committed=True)
    reopened = ObjectWriteAheadLog.open(objects, "replica-1")
    assert reopened.last_seq == 4
    assert list(reopened.replay(after_seq=4)) == []
    reopened.close(committed=True)


def test_concurrent_callers_share_one_segment_or_few(objects: VersionStore) -> None:
    log = ObjectWriteAheadLog.open(objects, "busy")
    barrier = threading.Barrier(8)

    def write(i: int) -> None:
        barrier.wait()
        for j in range(5):
            _seq, ticket = log.append(f"{i}-{j}".encode())
            log.sync(ticket)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close(committed=True)
    replayed = list(ObjectWriteAheadLog.open(objects, "busy").replay())
    assert [seq for seq, _p in replayed] == list(range(1, 41))
    assert sorted(p for _s, p in replayed) == sorted(f"{i}-{j}".encode() for i in range(8) for j in range(5))
    assert len(objects.list("busy/")) < 40  # group commit: waiting callers shared segments


def test_a_second_live_process_of_one_log_is_refused(objects: VersionStore) -> None:
    first = ObjectWriteAheadLog.open(objects, "replica-1", lease_s=0.6)
    with pytest.raises(LogFencedError, match="another live process holds the write-ahead log 'replica-1'"):
        ObjectWriteAheadLog.open(objects, "replica-1", lease_s=0.6)  # a mistaken second process: it sees renewals
    _s, ticket = first.append(b"from the first")
    first.sync(ticket)
    first.close(committed=True)
    again = ObjectWriteAheadLog.open(objects, "replica-1")
    assert list(again.replay()) == [(1, b"from the first")]
    again.close(committed=True)


_PAUSED_HOLDER = """
import json, sys
from catalog.versions import open_version_store
from lakeops.object_wal import WAL_DIR, ObjectWriteAheadLog
log = ObjectWriteAheadLog.open(open_version_store(sys.argv[1], json.loads(sys.argv[2]), directory=WAL_DIR), "replica-1", lease_s=1.0)
for line in sys.stdin:
    try:
        log.sync(log.append(line.strip().encode())[1])
        print("ACK", flush=True)
    except Exception as exc:
        print("REFUSED", type(exc).__name__, exc, flush=True)
"""


def test_a_paused_holder_whose_log_was_taken_over_stops_acknowledging(
    objects: VersionStore, location: tuple[str, dict[str, str]]
) -> None:
    # The holder is paused (SIGSTOP: a long GC pause, a frozen VM) past its lease; another replica takes
    # its log over. Resumed, the holder must refuse to acknowledge rather than write to a taken log.
    holder = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_HOLDER, location[0], json.dumps(location[1])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        holder.stdin.write("before the pause\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "ACK"
        holder.send_signal(signal.SIGSTOP)
        taker = ObjectWriteAheadLog.open(objects, "replica-2", lease_s=5.0)
        taken: list[ObjectWriteAheadLog] = []
        deadline = time.monotonic() + 60  # a bound; taking needs the holder's 1 s lease to go unrenewed
        while not taken and time.monotonic() < deadline:
            taken = taker.orphans()
            time.sleep(0.1)
        assert [log.writer_id for log in taken] == ["replica-1"]
        assert [payload for _s, payload in taken[0].replay()] == [b"before the pause"]
        holder.send_signal(signal.SIGCONT)
        holder.stdin.write("after the pause\n")
        holder.stdin.flush()
        answer = holder.stdout.readline()
        assert answer.startswith("REFUSED LogFencedError"), answer
        taken[0].discard()
        taker.close(committed=True)
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait(timeout=30)


def _start_writer(settings: LakeopsSettings, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), settings_json(settings), run_id, "100000", str(BATCH), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _on_a_new_disk(settings: LakeopsSettings, home: Path) -> LakeopsSettings:
    """The same lake and log name from a process whose home directory is empty."""
    update: dict[str, object] = {"home": home}
    if isinstance(settings.storage, LocalStorageConfig):  # the warehouse stays where it is
        update["storage"] = LocalStorageConfig(root=Path(settings.warehouse().removeprefix("file://")))
    return settings.model_copy(update=update)


@pytest.mark.slow
@pytest.mark.s3  # the log's contract holds on file:// too (above); the replica story is the object store's
def test_a_killed_replica_is_replaced_on_an_empty_disk_and_loses_nothing(s3_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A long commit interval: acknowledged batches live only in the log when the kill lands.
    settings = make_settings(
        "s3-object", tmp_path / "first", s3_server, commit_interval_s=30.0, log="object", log_name="replica-1"
    )
    store = open_store(settings)
    try:
        tracking = TrackingService(store)
        run_id = tracking.create_run(tracking.create_experiment("stateless")).info.run_id
    finally:
        store.close()

    child = _start_writer(settings, run_id)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "READY", child.stderr.read() if child.stderr else ""
    acked: list[int] = []
    while len(acked) < 8:
        line = child.stdout.readline()
        assert line.startswith("ACK"), f"writer died early: {line!r} {child.stderr.read() if child.stderr else ''}"
        acked.append(int(line.split()[1]))
    child.send_signal(signal.SIGKILL)
    acked.extend(int(line.split()[1]) for line in child.stdout.read().splitlines() if line.startswith("ACK"))
    child.wait(timeout=30)

    replacement = open_store(_on_a_new_disk(settings, tmp_path / "replacement"))  # nothing from the first disk
    try:
        replacement.commit()
        steps = [m.step for m in TrackingService(replacement).get_metric_history(run_id, "m").metrics]
    finally:
        replacement.close()
    assert len(steps) == len(set(steps)), "a point was stored twice"
    stored = Counter(step // BATCH for step in steps)
    missing = [b for b in acked if stored.get(b) != BATCH]
    assert not missing, f"acknowledged batches lost or partial: {missing[:10]}"
    assert set(stored) - set(acked) <= {max(acked) + 1}


def _log_keys(settings: LakeopsSettings, name: str) -> list[str]:
    objects = open_version_store(settings.warehouse(), settings.storage.to_properties(), directory=WAL_DIR)
    return objects.list(f"{name}/")


def _lease_holder(settings: LakeopsSettings, name: str) -> dict[str, object]:
    objects = open_version_store(settings.warehouse(), settings.storage.to_properties(), directory=WAL_DIR)
    latest = Versions(objects).latest(f"{name}/{LEASE_DIR}/")
    assert latest is not None
    return latest.body


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind", [pytest.param("file-object", id="file"), pytest.param("s3-object", id="s3", marks=pytest.mark.s3)]
)
def test_a_dead_replicas_log_is_taken_over_and_committed_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Replica A acknowledges batches, commits the first few itself, and is killed before committing
    # the rest (long commit interval); it never comes back. Replicas B and L keep running: one of
    # them takes A's log over once its lease expires, and every acknowledged batch lands exactly once.
    s3 = request.getfixturevalue("s3_server") if kind.startswith("s3") else None
    lease = {"log": "object", "log_lease_s": 1.0}
    dead = make_settings(kind, tmp_path / "a", s3, commit_interval_s=30.0, log_name="replica-a", **lease)
    setup = open_store(
        _on_a_new_disk(dead, tmp_path / "setup").model_copy(
            update={"write": dead.write.model_copy(update={"log_name": "setup"})}
        )
    )
    try:
        tracking = TrackingService(setup)
        run_id = tracking.create_run(tracking.create_experiment("taken over")).info.run_id
    finally:
        setup.close()

    child = subprocess.Popen(
        [sys.executable, str(WRITER), settings_json(dead), run_id, "100000", str(BATCH), "0", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    acked: list[int] = []
    committed = False
    while len(acked) < 12:
        line = child.stdout.readline()
        assert line.startswith(("READY", "ACK", "COMMITTED")), (
            f"writer died early: {line!r} {child.stderr.read() if child.stderr else ''}"
        )
        if line.startswith("ACK"):
            acked.append(int(line.split()[1]))
        committed = committed or line.startswith("COMMITTED")
    assert committed  # batches 0-3 are in the tables already, with A's mark
    child.send_signal(signal.SIGKILL)
    acked.extend(int(line.split()[1]) for line in child.stdout.read().splitlines() if line.startswith("ACK"))
    child.wait(timeout=30)
    assert any(k.endswith(".seg") for k in _log_keys(dead, "replica-a"))

    def replica(name: str) -> LakeopsSettings:
        # The live replicas' own leases are longer than A's (1 s): a renewal delayed on a loaded machine
        # must not look like a death. Observers time A's lease by the duration A recorded in it.
        settings = _on_a_new_disk(dead, tmp_path / name)
        return settings.model_copy(
            update={
                "write": dead.write.model_copy(update={"log_name": name, "commit_interval_s": 0.2, "log_lease_s": 5.0})
            }
        )

    b, live = open_store(replica("replica-b")), open_store(replica("replica-l"))
    try:
        deadline = time.monotonic() + 120  # a generous bound on the takeover; its delay is lease_s and a commit
        while any(k.endswith(".seg") for k in _log_keys(dead, "replica-a")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(k.endswith(".seg") for k in _log_keys(dead, "replica-a")), "nobody took the dead log over"
        body = _lease_holder(dead, "replica-a")
        assert body["state"] == "released" and body["holder"] in ("replica-b", "replica-l")

        # The live replica kept its log: it still acknowledges, and its lease is its own.
        TrackingService(live).log_batch(run_id, metrics=[("alive", 1.0, 1_000, 0)])
        assert _lease_holder(dead, "replica-l")["holder"] == "replica-l"
        assert _lease_holder(dead, "replica-b")["holder"] == "replica-b"
    finally:
        live.close()
        b.close()

    fresh = open_store(replica("reader"))  # only what is committed to the tables (and its own empty log)
    try:
        steps = [m.step for m in TrackingService(fresh).get_metric_history(run_id, "m").metrics]
    finally:
        fresh.close()
    assert len(steps) == len(set(steps)), "a point was committed twice"
    stored = Counter(step // BATCH for step in steps)
    missing = [batch for batch in acked if stored.get(batch) != BATCH]
    assert not missing, f"acknowledged batches lost or partial: {missing[:10]}"
    assert set(stored) - set(acked) <= {max(acked) + 1}  # at most the one in flight at the kill


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind", [pytest.param("file-object", id="file"), pytest.param("s3-object", id="s3", marks=pytest.mark.s3)]
)
def test_a_serving_replica_whose_log_was_taken_reports_unhealthy(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # /health must tell the load balancer at once: a replica without its lease refuses every write.
    s3 = request.getfixturevalue("s3_server") if kind.startswith("s3") else None
    settings = make_settings(kind, tmp_path / "a", s3, log="object", log_name="replica-1", log_lease_s=1.0)
    server = ServeProcess(settings, tmp_path / "serve.log")
    try:
        assert server.proc is not None
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
        server.proc.send_signal(signal.SIGSTOP)
        objects = open_version_store(settings.warehouse(), settings.storage.to_properties(), directory=WAL_DIR)
        taker = ObjectWriteAheadLog.open(objects, "replica-2", lease_s=5.0)
        taken: list[ObjectWriteAheadLog] = []
        deadline = time.monotonic() + 60  # a bound; taking needs the 1 s lease to go unrenewed
        while not taken and time.monotonic() < deadline:
            taken = taker.orphans()
            time.sleep(0.1)
        assert [log.writer_id for log in taken] == ["replica-1"]
        server.proc.send_signal(signal.SIGCONT)
        answer = httpx.get(f"{server.url}/health", timeout=30)
        assert answer.status_code == 503, answer.text
        checks = {r["check"]: r["message"] for r in answer.json()["reasons"]}
        assert "replica-1" in checks.get("log", ""), checks
        taken[0].discard()
        taker.close(committed=True)
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        server.stop()
