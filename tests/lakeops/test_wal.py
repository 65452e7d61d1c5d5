"""The write-ahead log on its own: records, torn tails, adoption, trimming, group sync."""

from __future__ import annotations

import threading
from pathlib import Path

from lakeops.wal import WriteAheadLog


def test_records_survive_reopen_in_order(tmp_path: Path) -> None:
    wal = WriteAheadLog.open(tmp_path)
    for i in range(5):
        seq, ticket = wal.append(f"r{i}".encode())
        wal.sync(ticket)
        assert seq == i + 1
    wal.close()
    again = WriteAheadLog.open(tmp_path)
    assert again.writer_id == wal.writer_id  # the orphaned log is adopted, not abandoned
    assert [p for _s, p in again.replay()] == [b"r0", b"r1", b"r2", b"r3", b"r4"]
    assert [s for s, _p in again.replay(after_seq=3)] == [4, 5]
    assert again.append(b"r5")[0] == 6
    again.close()


def test_torn_tail_is_cut(tmp_path: Path) -> None:
    wal = WriteAheadLog.open(tmp_path)
    for i in range(3):
        wal.sync(wal.append(b"x" * 100 + bytes([i]))[1])
    wal.close()
    segment = next((tmp_path / wal.writer_id).glob("*.log"))
    data = segment.read_bytes()
    segment.write_bytes(data[:-40])  # a crash in the middle of the last record
    again = WriteAheadLog.open(tmp_path)
    assert [p[-1] for _s, p in again.replay()] == [0, 1]
    assert again.append(b"next")[0] == 3
    again.close()


def test_live_log_is_not_adopted(tmp_path: Path) -> None:
    first = WriteAheadLog.open(tmp_path)
    second = WriteAheadLog.open(tmp_path)
    assert first.writer_id != second.writer_id
    first.close()
    second.close()


def test_truncate_drops_committed_records(tmp_path: Path) -> None:
    wal = WriteAheadLog.open(tmp_path)
    for i in range(10):
        wal.append(bytes([i]))
    wal.truncate_through(10)
    assert list(wal.replay()) == []
    wal.sync(wal.append(b"after")[1])
    assert [(s, p) for s, p in wal.replay()] == [(11, b"after")]
    wal.close()


def test_concurrent_writers_share_fsyncs(tmp_path: Path) -> None:
    wal = WriteAheadLog.open(tmp_path)

    def writer(k: int) -> None:
        for i in range(200):
            wal.sync(wal.append(f"{k}-{i}".encode())[1])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()
    again = WriteAheadLog.open(tmp_path)
    payloads = [p for _s, p in again.replay()]
    assert len(payloads) == 1600 and len(set(payloads)) == 1600
    assert [s for s, _p in again.replay()] == list(range(1, 1601))
    again.close()
