"""The load stage: drive a served model with Locust and keep raw per-request records.

    records    RequestRecord (raw timestamps per request), JSONL writer/reader
    clock      wall-clock seconds from one perf_counter anchor
    metrics    every metric definition (ttft, tpot, itl, e2el, ntpot, throughput, goodput, send lag)
    prompts    synthetic prompts of an exact token length, or prompts from a JSONL file
    prompt_feed  a child process building a time-bound stage's prompts ahead of use
    profiles   YAML load profiles (stages: concurrency, rate, ramp, sweep, ladder) and their lookup
    schedule   precomputed open-loop send times (poisson, gamma, constant)
    stage_plan a validated stage turned into users, budget, schedule and clocks
    stage_state  what one stage's users share: whose turn it is, dealt indices, counters
    barrier    the start barrier: the clock starts when every user is connected
    gc_quiet   no garbage-collector pauses inside a measured stage
    liveness   is the server refusing connections; the load generator's CPU share
    user       the streaming Locust user (imports Locust, hence gevent: imported lazily)
    runner     run_stage / run_profile: Locust as a library, headless
    stage_result  what a stage hands back (StageResult), free of Locust's imports
    process    the orchestrator's side of the load process: start it, follow its events and records
    driver     the load process itself (python -m serve_bench.load.driver): gevent and Locust live here
    distributed  Locust's master/worker mode: dealing, clock offsets, lost workers
    worker     a worker process (local, or `serve-bench worker` on another host)

Importing this package does not import Locust (which monkey-patches the process
with gevent); ``runner``, ``user``, ``distributed``, ``worker`` and ``driver`` do, and only the load
process and its workers import them: ``serve-bench run`` goes through ``process``.
"""

from __future__ import annotations

from serve_bench.load.metrics import summarize
from serve_bench.load.profiles import LoadProfile, find_profile, list_profiles, load_profile
from serve_bench.load.records import RecordWriter, RequestRecord, read_records

__all__ = [
    "LoadProfile",
    "RecordWriter",
    "RequestRecord",
    "find_profile",
    "list_profiles",
    "load_profile",
    "read_records",
    "summarize",
]
