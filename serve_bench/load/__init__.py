"""How to send: drive a served model with Locust and keep raw per-request records.

What is sent is :mod:`serve_bench.workload`'s; what a record holds and how it is measured is
:mod:`serve_bench.measure`'s.

    process      the orchestrator's side of the load process: start it, follow its events and records
    driver       the load process itself (python -m serve_bench.load.driver): gevent and Locust live here
    live         the running stage as the live view and the exporter see it (in flight, the load's CPU)
    runner       run_stage / run_profile: Locust as a library, headless
    stage_plan   a validated stage turned into users, budget, schedule and clocks
    stage_state  what one stage's users share: whose turn it is, dealt indices, counters
    prompt_feed  a child process building a time-bound stage's prompts ahead of use
    user         the streaming Locust user
    balance      which of a fleet's endpoints gets each request; a dead endpoint is left out
    barrier      the start barrier: the clock starts when every user is connected
    gc_quiet     no garbage-collector pauses inside a measured stage
    liveness     is the server refusing connections; the load generator's CPU share
    distributed  Locust's master/worker mode: dealing, clock offsets, lost workers
    worker       a worker process (local, or `serve-bench worker` on another host)

Importing this package imports nothing: ``python -m serve_bench.load.driver`` imports it before the driver
patches the process with gevent. ``runner``, ``user``, ``distributed``, ``worker`` and ``driver`` import
Locust, and only the load process and its workers import them: ``serve-bench run`` goes through ``process``.
"""
