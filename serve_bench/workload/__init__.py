"""What to send: the load profiles and the requests they describe.

    profiles         YAML load profiles (stages: concurrency, rate, ramp, sweep, ladder, replay) and their lookup
    lengths          token-length distributions (fixed, uniform, normal, lognormal, empirical), drawn per request
    prefixes         shared prompt prefixes (how many, how long, which request gets which)
    prompts          the prompt-set base and synthetic prompts of an exact token length
    datasets         prompts from a JSONL or CSV file (field mapping, cycle or stop when used up)
    traces           a trace's send times and token counts (Mooncake, Azure), replayed
    conversations    multi-turn conversations over any prompt set
    prompt_sources   the prompt set a profile names, built, or rebuilt from its spec in another process
    tokenizer_words  the model's one-token words, for synthetic prompts
    schedule         precomputed open-loop send times (poisson, gamma, constant)

Nothing here imports Locust or gevent: the orchestrator, the dry run and the report read profiles too.
"""

from __future__ import annotations

from serve_bench.workload.profiles import LoadProfile, find_profile, list_profiles, load_profile

__all__ = ["LoadProfile", "find_profile", "list_profiles", "load_profile"]
