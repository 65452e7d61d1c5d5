"""A child process for the crash and two-writer tests.

Usage: writer.py SETTINGS_JSON RUN_ID BATCHES BATCH_SIZE FIRST_BATCH [COMMIT_AFTER]
Logs BATCHES batches of BATCH_SIZE points of metric ``m`` to RUN_ID; batch ``b`` holds steps
``b*BATCH_SIZE ... b*BATCH_SIZE + BATCH_SIZE - 1``. Prints ``ACK b`` after each call returns,
and ``DONE`` after closing the store cleanly. With COMMIT_AFTER, commits once right after that
batch is acknowledged (and prints ``COMMITTED``), whatever the commit interval.
"""

from __future__ import annotations

import json
import sys

from lakeops.settings import LakeopsSettings
from lakeops.stores import open_store
from lakeops.tracking import TrackingService


def main() -> None:
    settings = LakeopsSettings.model_validate(json.loads(sys.argv[1]))
    run_id, batches, size, first = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    commit_after = int(sys.argv[6]) if len(sys.argv) > 6 else None
    store = open_store(settings)
    tracking = TrackingService(store)
    print("READY", flush=True)
    for b in range(first, first + batches):
        tracking.log_batch(run_id, metrics=[("m", float(b), 1_000 + b, b * size + i) for i in range(size)])
        print(f"ACK {b}", flush=True)
        if b == commit_after:
            store.commit()
            print("COMMITTED", flush=True)
    store.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
