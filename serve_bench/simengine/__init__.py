"""A known-capacity engine: continuous batching with stated step costs, so the load generator's and the
capacity report's errors can be measured against an exact truth (``serve-bench selfcheck``, the tests).

    params     EngineParams: step cost (fixed, per sequence, per prefill token), slots, prefill budget, jitter
    scheduler  the engine's rules, pure (no clock, no I/O): one definition for both modes below
    simulate   virtual time: closed- and open-loop clients with no delay of their own, as RequestRecords
    truth      the SLO capacity of a closed loop, exactly, from long simulations
    server     real time: an OpenAI-compatible streaming server running the scheduler on an absolute clock,
               logging its own per-request timings
"""
