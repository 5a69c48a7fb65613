"""Prompt planning cost: how long it takes to plan and build N synthetic prompts of a log-normal mix.

This is the work done before a stage starts (``PromptSet.prepare``: the seeded
length draws, the shared prefixes, and fitting every prompt to its exact token
count with the model's tokenizer), never inside the measured window. Prints
one JSON line: requests, seconds (tokenizer load apart; wall and this process's CPU time, all
threads), requests per second,
and how many prompts needed the one-by-one search.

    .venv/bin/python scripts/bench_prompt_plan.py --requests 100000
"""

from __future__ import annotations

import argparse
import json
import time

from pydantic import TypeAdapter

from serve_bench.models.resolve import resolve
from serve_bench.workload.lengths import LengthDist
from serve_bench.workload.prefixes import SharedPrefix
from serve_bench.workload.prompts import SyntheticPromptSet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--api", choices=["chat", "completions"], default="chat")
    parser.add_argument("--mean", type=float, default=500.0, help="mean prompt tokens (log-normal)")
    parser.add_argument("--std", type=float, default=250.0)
    parser.add_argument("--prefix-share", type=float, default=0.3, help="share of requests with a 1000-token prefix")
    args = parser.parse_args()
    mix = TypeAdapter(LengthDist).validate_python({"kind": "lognormal", "mean_tokens": args.mean,
                                                   "std_tokens": args.std, "min_tokens": 64, "max_tokens": 2000})
    t0 = time.perf_counter()
    prompts = SyntheticPromptSet(resolve("default").path, args.api, int(args.mean), seed=0, salt="bench",
                                 input_lengths=mix, output_lengths=mix,
                                 shared_prefix=SharedPrefix(tokens=1000, count=2, share=args.prefix_share))
    t1, c1 = time.perf_counter(), time.process_time()
    searched = [0]
    attempt = prompts.attempt

    def counted(index: int) -> object:
        searched[0] += 1
        return attempt(index)

    prompts.attempt = counted  # type: ignore[method-assign]
    prompts.prepare(range(args.requests))
    t2, c2 = time.perf_counter(), time.process_time()
    plan = [prompts.request_fields(i) for i in range(args.requests)]
    t3 = time.perf_counter()
    tokens = sum(p["requested_input_tokens"] for p in plan)
    print(json.dumps({"requests": args.requests, "api": args.api, "prompt_tokens": tokens,
                      "tokenizer_load_s": round(t1 - t0, 2), "build_s": round(t2 - t1, 2),
                      "build_cpu_s": round(c2 - c1, 2),
                      "plan_fields_s": round(t3 - t2, 2), "requests_per_s": round(args.requests / (t2 - t1)),
                      "searched_one_by_one": searched[0]}))


if __name__ == "__main__":
    main()
