"""The one home of what is measured and how it is defined: every module that reports a latency, a throughput or
a stage's flags (the report, the exporter, summaries, the plan) reads them from here.

    records       RequestRecord (raw timestamps per request), the JSONL writer and reader
    clock         wall-clock seconds from one perf_counter anchor, shared by every process of a run
    metrics       every metric definition (ttft, tpot, itl, e2el, ntpot, throughput, goodput, send lag)
    stage_result  what a stage hands back (StageResult), its flags, the sweep's rates

Nothing here imports Locust or gevent.
"""

from __future__ import annotations

from serve_bench.measure.metrics import summarize
from serve_bench.measure.records import RecordWriter, RequestRecord, read_records

__all__ = ["RecordWriter", "RequestRecord", "read_records", "summarize"]
