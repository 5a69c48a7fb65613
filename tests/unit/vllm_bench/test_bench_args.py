"""`serve-bench bench` reads vllm bench serve's command line: vLLM's flags and defaults, the ones it does not take
refused by name, and each translated into the requests vLLM would send."""

from __future__ import annotations

import json
import math

import pytest

from serve_bench.errors import ConfigError
from serve_bench.vllm_bench.args import parse
from serve_bench.vllm_bench.result import default_filename
from serve_bench.vllm_bench.translate import profile_data, study_data
from serve_bench.workload.profiles import profile_from_data

pytestmark = pytest.mark.unit


def test_vllms_defaults():
    a = parse([])
    assert (a.backend, a.url, a.dataset_name, a.num_prompts, a.random_input_len, a.random_output_len) == (
        "openai", "http://127.0.0.1:8000", "random", 1000, 1024, 128)
    assert math.isinf(a.request_rate) and a.max_concurrency is None and a.metric_percentiles == [99.0]
    assert a.percentile_metrics == ["ttft", "tpot", "itl"] and a.api == "completions"


@pytest.mark.parametrize("argv, says", [
    (["--num-warmups", "3"], "does not support --num-warmups"),
    (["--lora-modules=a", "--insecure"], "does not support --insecure, --lora-modules"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--backend", "tgi"], "invalid choice: 'tgi'"),
    (["--percentile-metrics", "ttft,goodness"], "goodness not supported"),
    (["--metric-percentiles", "50,abc"], "comma-separated numbers"),
    (["--request-rate", "0"], "--request-rate must be positive"),
    (["--backend", "openai-chat", "--endpoint", "/v1/completions"], "serve-bench sends /v1/chat/completions"),
    (["--dataset-name", "sharegpt"], "needs --dataset-path"),
    (["--random-range-ratio", "1.5"], "must be in [0, 1)"),
])
def test_what_it_does_not_take_is_refused_by_name(argv, says):
    with pytest.raises(ConfigError, match=None) as err:
        parse(argv)
    assert says in str(err.value)


def test_every_request_at_once_under_a_cap_is_a_closed_loop_and_a_rate_an_open_one(tmp_path):
    a = parse(["--max-concurrency", "4", "--num-prompts", "40", "--random-input-len", "100", "--random-range-ratio",
               "0.5", "--random-prefix-len", "16", "--ignore-eos", "--temperature", "0", "--top-k", "5"])
    p = profile_from_data(profile_data(a, tmp_path, None))
    [stage] = p.expanded_stages()
    assert (stage.kind, stage.users, stage.requests) == ("concurrency", 4, 40)
    assert p.input_lengths.bounds() == (50, 150) and p.output_lengths.bounds() == (64, 192)
    assert p.shared_prefix.tokens == 16 and p.ignore_eos and p.api == "completions"
    assert p.sampling.body() == {"temperature": 0.0, "top_k": 5}
    gamma = profile_from_data(profile_data(parse(["--request-rate", "8", "--burstiness", "0.5", "--num-prompts", "30"]),
                                           tmp_path, None)).expanded_stages()[0]
    assert (gamma.kind, gamma.rate_rps, gamma.arrivals, gamma.burstiness, gamma.requests, gamma.max_concurrency) == (
        "rate", 8.0, "gamma", 0.5, 30, 30)
    everyone = profile_from_data(profile_data(parse(["--num-prompts", "12"]), tmp_path, None)).expanded_stages()[0]
    assert everyone.users == 12  # no cap: every request in flight at once, as vLLM sends them


def test_custom_jsonl_rows_become_the_prompts_with_vllms_output_length(tmp_path):
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"question {i} here"}) + "\n" for i in range(5)))
    a = parse(["--dataset-name", "custom", "--dataset-path", str(data), "--num-prompts", "3",
               "--custom-output-len", "7", "--backend", "openai-chat"])
    p = profile_from_data(profile_data(a, tmp_path, None))
    rows = [json.loads(x) for x in (tmp_path / "custom-prompts.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["question 0 here", "question 1 here", "question 2 here"]
    assert {r["output_tokens"] for r in rows} == {7} and p.api == "chat" and p.prompts.output_tokens_field


def test_the_study_loads_the_server_with_the_goodput_as_its_slo_and_labels(tmp_path):
    a = parse(["--base-url", "http://h:9/", "--model", "m", "--goodput", "ttft:500", "tpot:50", "--label", "x",
               "--metadata", "gpu=h100", "build=3"])
    s = study_data(a, tmp_path / "p.yaml", tmp_path)
    assert s["server"] == {"url": "http://h:9", "served_model": "m"} and s["slo"] == {"ttft_ms": 500, "tpot_ms": 50}
    assert s["labels"] == {"label": "x", "gpu": "h100", "build": "3"} and s["eval"] == {"enabled": False}
    assert s["percentiles"] == [99.0]  # --metric-percentiles: the run directory's stage summaries give them too
    assert default_filename(a, "org/m", "20261207-1") == "x-infqps-m-20261207-1.json"
    assert default_filename(parse(["--request-rate", "4", "--max-concurrency", "2"]), "m", "d") == (
        "openai-4.0qps-concurrency2-m-d.json")


def test_prefix_repetition_sends_each_prefix_as_often_as_vllm_does(tmp_path):
    from serve_bench.workload.prefixes import PrefixPlan

    a = parse(["--dataset-name", "prefix_repetition", "--num-prompts", "25", "--prefix-repetition-num-prefixes", "4",
               "--prefix-repetition-prefix-len", "64", "--prefix-repetition-suffix-len", "16",
               "--prefix-repetition-output-len", "8", "--max-concurrency", "2"])
    p = profile_from_data(profile_data(a, tmp_path, None))
    [stage] = p.expanded_stages()
    assert stage.requests == 24  # vLLM makes num_prompts // num_prefixes per prefix: 6 × 4
    assert p.input_lengths.bounds() == (16, 16) and p.output_lengths.bounds() == (8, 8)
    assert (p.shared_prefix.tokens, p.shared_prefix.count, p.shared_prefix.assignment) == (64, 4, "balanced")
    plan = PrefixPlan(p.shared_prefix, seed=a.seed)
    carried = [plan.prefix_of(i) for i in range(24)]
    assert all(sorted(carried[r:r + 4]) == [0, 1, 2, 3] for r in range(0, 24, 4)), carried
    assert carried[:4] != carried[4:8] or carried[4:8] != carried[8:12], "each round in its own seeded order"
    assert carried == [PrefixPlan(p.shared_prefix, seed=a.seed).prefix_of(i) for i in range(24)]
    with pytest.raises(ConfigError, match="fewer than --prefix-repetition-num-prefixes 10"):
        parse(["--dataset-name", "prefix_repetition", "--num-prompts", "5"])
    with pytest.raises(ConfigError, match="needs share: 1"):
        profile_from_data({**profile_data(a, tmp_path, None),
                           "shared_prefix": {"tokens": 4, "count": 2, "share": 0.5, "assignment": "balanced"}})
