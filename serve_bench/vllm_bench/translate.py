"""A `vllm bench serve` command line as a serve-bench profile and study: the same requests, sent the same way.

- ``--request-rate inf`` (vLLM's default) sends every request at once, at most ``--max-concurrency`` in flight:
  a closed loop of that many users (all ``--num-prompts`` when no cap), ``--num-prompts`` requests.
- A finite rate is an open loop on a precomputed schedule: Poisson, or gamma arrivals with ``--burstiness``
  (vLLM's shape parameter), capped at ``--max-concurrency`` in flight.
- ``random``: synthetic prompts of exactly ``--random-input-len`` tokens (uniform in [len × (1 − r),
  len × (1 + r)] with ``--random-range-ratio`` r, as vLLM draws them), one shared prefix of
  ``--random-prefix-len`` tokens on top; answers of ``--random-output-len`` tokens.
- ``prefix_repetition``: ``--prefix-repetition-num-prefixes`` prefixes of ``-prefix-len`` synthetic tokens, each
  followed by a new suffix of ``-suffix-len`` tokens, answers of ``-output-len`` tokens; every prefix carried by
  ``num_prompts // num_prefixes`` requests, as vLLM makes them (vLLM shuffles all requests; serve-bench sends
  each round of ``num_prefixes`` requests with every prefix once, in a seeded order).
- ``custom``: vLLM's JSONL (a ``prompt`` per line), answers of ``--custom-output-len`` tokens.
- ``sharegpt``: the first human turn of each conversation as the prompt and the reply's token count as the
  answer length (``--sharegpt-output-len`` overrides), filtered and shuffled as vLLM does (sharegpt.py).
- Sampling flags are sent with every request; ``--ignore-eos`` as vLLM sends it; no warm-up (vLLM's
  ``--num-warmups`` 0).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from serve_bench.cli.options import parse_goodput
from serve_bench.errors import ConfigError
from serve_bench.vllm_bench.args import BenchArgs
from serve_bench.vllm_bench.sharegpt import sharegpt_rows

STAGE = "bench"
TIMEOUT_S = 6 * 3600.0  # vLLM's client timeout


def _lengths(length: int, ratio: float) -> dict[str, Any]:
    if ratio <= 0:
        return {"kind": "fixed", "tokens": length}
    return {"kind": "uniform", "min_tokens": max(1, math.floor(length * (1 - ratio))),
            "max_tokens": math.ceil(length * (1 + ratio))}


def profile_data(a: BenchArgs, work_dir: Path, tokenizer: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "bench", "description": "vllm bench serve's command line", "api": a.api,
                            "ignore_eos": a.ignore_eos, "seed": a.seed, "timeout_s": TIMEOUT_S}
    sampling = {k: v for k, v in (("temperature", a.temperature), ("top_p", a.top_p), ("top_k", a.top_k))
                if v is not None}
    if sampling:
        data["sampling"] = sampling
    if a.dataset_name == "random":
        data["input_lengths"] = _lengths(a.random_input_len, a.random_range_ratio)
        data["output_lengths"] = _lengths(a.random_output_len, a.random_range_ratio)
        if a.random_prefix_len > 0:
            data["shared_prefix"] = {"tokens": a.random_prefix_len, "count": 1, "share": 1.0}
    elif a.dataset_name == "prefix_repetition":
        data["input_lengths"] = _lengths(a.prefix_repetition_suffix_len, 0.0)
        data["output_lengths"] = _lengths(a.prefix_repetition_output_len, 0.0)
        data["shared_prefix"] = {"tokens": a.prefix_repetition_prefix_len, "count": a.prefix_repetition_num_prefixes,
                                 "share": 1.0, "assignment": "balanced"}
    else:
        rows = _rows(a, tokenizer)
        path = work_dir / f"{a.dataset_name}-prompts.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        mean_out = sum(r["output_tokens"] for r in rows) / len(rows)
        data.update(prompts={"kind": "jsonl", "path": str(path), "field": "prompt",
                             "output_tokens_field": "output_tokens", "exhaust": "cycle"},
                    input_tokens=max(1, round(sum(len(r["prompt"].split()) for r in rows) / len(rows))),
                    output_tokens=max(1, round(mean_out)))
    data["stages"] = [_stage(a)]
    return data


def _rows(a: BenchArgs, tokenizer: str | None) -> list[dict[str, Any]]:
    path = Path(a.dataset_path or "").expanduser()
    if not path.is_file():
        raise ConfigError(f"--dataset-path {a.dataset_path}: not a file")
    if a.dataset_name == "sharegpt":
        if tokenizer is None:
            raise ConfigError("--dataset-name sharegpt needs a tokenizer to measure the replies",
                              hint="pass --tokenizer DIR")
        return sharegpt_rows(path, tokenizer, a.num_prompts, a.seed, a.sharegpt_output_len)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            prompt = json.loads(line)["prompt"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}:{n}: not a JSON object with a \"prompt\" (vLLM's custom format)") from None
        rows.append({"prompt": str(prompt), "output_tokens": a.custom_output_len})
        if len(rows) == a.num_prompts:
            break
    if not rows:
        raise ConfigError(f"{path}: no prompt")
    return rows


def _stage(a: BenchArgs) -> dict[str, Any]:
    n = a.requests
    if math.isinf(a.request_rate):
        users = min(a.max_concurrency or n, n)
        return {"kind": "concurrency", "name": STAGE, "users": users, "requests": n}
    stage = {"kind": "rate", "name": STAGE, "rate_rps": a.request_rate, "requests": n,
             "arrivals": "poisson" if a.burstiness == 1.0 else "gamma",
             "max_concurrency": a.max_concurrency or n}
    if a.burstiness != 1.0:
        stage["burstiness"] = a.burstiness
    return stage


def study_data(a: BenchArgs, profile: Path, out_dir: Path) -> dict[str, Any]:
    server: dict[str, Any] = {"url": a.url}
    name = a.served_model_name or a.model
    if name:
        server["served_model"] = name
    if a.tokenizer:
        server["tokenizer"] = a.tokenizer
    labels = {**({"label": a.label} if a.label else {}), **a.metadata_items()}
    data: dict[str, Any] = {"name": "bench", "profiles": [str(profile)], "server": server, "runs_dir": str(out_dir),
                            "eval": {"enabled": False}, "labels": labels, "percentiles": list(a.metric_percentiles)}
    if a.goodput:
        data["slo"] = parse_goodput(tuple(a.goodput))
    return data
