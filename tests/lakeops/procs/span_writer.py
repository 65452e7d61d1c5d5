"""A child process for the span crash test.

Usage: span_writer.py SETTINGS_JSON EXPERIMENT_ID BATCHES
Logs BATCHES batches of 10 traces of 3 spans each (traces ``b*10 ... b*10 + 9``, ids ``tr-<t as 32 hex>``)
through ``TraceService.log_spans``, and sets an experiment tag after each (a table every commit round takes,
so the rounds truncate the log up to the oldest row still queued). Prints ``READY``, then ``ACK b`` after
each batch's call returns.
"""

from __future__ import annotations

import json
import sys
import time

from lakeops.services.traces import SpanBatch, SpanRow, TraceService
from lakeops.settings import LakeopsSettings
from lakeops.stores import open_store
from lakeops.tracking import TrackingService

TRACES, SPANS = 10, 3


def batch(b: int) -> SpanBatch:
    spans = SpanBatch()
    for t in range(b * TRACES, (b + 1) * TRACES):
        for s in range(SPANS):
            start = 1_700_000_000_000_000_000 + t * 1_000_000 + s * 1000
            row = SpanRow(
                trace_id=f"tr-{t:032x}",
                span_id=f"{s + 1:016x}",
                parent_span_id=None if s == 0 else f"{1:016x}",
                name=f"s{s}",
                span_type=None,
                status_code="OK",
                status_message=None,
                start_ns=start,
                end_ns=start + 1000,
                attributes_json="{}",
                content_json=json.dumps({"name": f"s{s}"}),
            )
            spans.rows.append(row)
            if s == 0:
                spans.add_root(row, inputs=None, outputs=None)
    return spans


def main() -> None:
    settings = LakeopsSettings.model_validate(json.loads(sys.argv[1]))
    experiment_id, batches = sys.argv[2], int(sys.argv[3])
    store = open_store(settings)
    traces, tracking = TraceService(store, actor="writer"), TrackingService(store)
    print("READY", flush=True)
    for b in range(batches):
        traces.log_spans(experiment_id, batch(b))
        print(f"ACK {b}", flush=True)
        tracking.set_experiment_tag(experiment_id, "batch", str(b))
        time.sleep(0.01)  # a few commit rounds during the test


if __name__ == "__main__":
    main()
