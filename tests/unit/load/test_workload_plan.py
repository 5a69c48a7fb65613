"""Workloads on the request plan alone: profile fields, shared prefixes, file prompt sets, traces, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from shared_data import datasets_dir

from serve_bench.errors import ConfigError
from serve_bench.load.stage_plan import plan_stage
from serve_bench.load.stage_state import StageConfig, StageState
from serve_bench.workload.datasets import FilePromptSet
from serve_bench.workload.prefixes import PrefixPlan, SharedPrefix
from serve_bench.workload.profiles import load_profile, profile_from_data
from serve_bench.workload.traces import load_trace

pytestmark = pytest.mark.unit

BASE = {"name": "w", "input_tokens": 64, "output_tokens": 16, "stages": [{"kind": "concurrency", "users": 1,
                                                                          "requests": 4}]}


def error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        profile_from_data(data, "w.yaml")
    return str(info.value)


def test_length_fields_fill_the_nominal_tokens() -> None:
    p = profile_from_data({**BASE, "input_tokens": None, "output_tokens": None,
                           "input_lengths": {"kind": "lognormal", "mean_tokens": 500, "std_tokens": 200,
                                             "max_tokens": 1500},
                           "output_lengths": {"kind": "uniform", "min_tokens": 100, "max_tokens": 300}})
    assert (p.input_tokens, p.output_tokens) == (500, 200)
    again = profile_from_data(p.model_dump(mode="json"))  # what a load worker receives
    assert again.input_lengths == p.input_lengths and again.input_tokens == 500


def test_profile_errors_name_the_field_and_list_the_kinds() -> None:
    assert "w.yaml: output_tokens: Field required (or give output_lengths" in error({**BASE, "output_tokens": None})
    msg = error({**BASE, "input_lengths": {"kind": "zipf"}})
    assert "w.yaml: input_lengths" in msg and "valid length kinds: fixed, uniform, normal, lognormal, empirical" in msg
    msg = error({**BASE, "input_lengths": {"kind": "lognormal", "mean_tokens": 5, "std_tokens": 1}})
    assert "w.yaml: input_lengths.max_tokens: Field required" in msg
    assert "valid prompt source kinds" in error({**BASE, "prompts": {"kind": "sharegpt"}})
    assert "shared_prefix.share" in error({**BASE, "shared_prefix": {"tokens": 10, "share": 1.5}})
    assert "replay stage needs the profile's prompts from a trace" in error(
        {**BASE, "stages": [{"kind": "replay", "speed": 2}]})


def test_prefix_plan_shares_and_texts() -> None:
    plan = PrefixPlan(SharedPrefix(tokens=5, count=3, share=0.3), seed=1, salt="p")
    ids = [plan.prefix_of(i) for i in range(20000)]
    carried = [i for i in ids if i is not None]
    assert len(carried) / len(ids) == pytest.approx(0.3, abs=0.015)
    assert set(carried) == {0, 1, 2}
    assert np.bincount(carried).min() / len(carried) > 0.3  # each prefix about equally likely
    assert ids == [PrefixPlan(SharedPrefix(tokens=5, count=3, share=0.3), seed=1, salt="p").prefix_of(i)
                   for i in range(20000)]
    words = [" alpha", " beta", " gamma", " delta"]
    fresh = PrefixPlan(SharedPrefix(tokens=5, count=3, share=0.3), seed=1, salt="p")  # nothing cached
    assert plan.text(1, words) == fresh.text(1, words) and len(plan.text(1, words).split()) == 5
    assert PrefixPlan(SharedPrefix(tokens=5, share=0.0)).prefix_of(3) is None
    assert all(PrefixPlan(SharedPrefix(tokens=5)).prefix_of(i) == 0 for i in range(50))


def test_gsm8k_questions_with_a_field_mapping() -> None:
    path = datasets_dir() / "gsm8k" / "test.jsonl"
    prompts = FilePromptSet(path, "chat", "question")
    assert prompts.limit == 1319
    assert prompts.payload(0)["messages"][0]["content"].startswith("Janet")
    assert prompts.text(1319) == prompts.text(0)  # cycles
    assert prompts.describe() == {"kind": "jsonl", "distinct": 1319, "exhaust": "cycle"}


def test_csv_prompts_with_output_lengths_and_stop(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("q,n\nfirst,5\nsecond,\nthird,7\n")
    p = profile_from_data({**BASE, "prompts": {"kind": "csv", "path": str(path), "field": "q",
                                               "output_tokens_field": "n", "exhaust": "stop"}})
    from serve_bench.workload.prompt_sources import profile_prompt_set

    prompts = profile_prompt_set(p, "")
    assert [prompts.text(i) for i in range(3)] == ["first", "second", "third"]
    assert [prompts.request_fields(i).get("requested_output_tokens") for i in range(3)] == [5, None, 7]
    state = StageState(StageConfig(stage="s", api="chat", model="m", max_tokens=16, ignore_eos=True, timeout_s=1,
                                   prompts=prompts, sink=lambda r: None, requests=10))
    taken = []
    while (slot := state.take()) is not None:
        taken.append(slot[0])
    assert taken == [0, 1, 2]  # used up: the stage stops there


def test_bad_prompt_files_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"q": "a", "n": 3}) + "\n" + json.dumps({"x": "b"}) + "\n")
    with pytest.raises(ConfigError, match=r"p.jsonl:2: not a JSON object with a 'q' field"):
        FilePromptSet(path, "chat", "q")
    path.write_text(json.dumps({"q": "a", "n": "many"}) + "\n")
    with pytest.raises(ConfigError, match=r"p.jsonl:1: 'n' is 'many', not a whole number"):
        FilePromptSet(path, "chat", "q", output_tokens_field="n")
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match=r"p.csv:2: no 'q' value \(columns: a, b\)"):
        FilePromptSet(csv_path, "chat", "q")
    with pytest.raises(ConfigError, match="SERVE_BENCH_NOT_SET_X"):
        FilePromptSet("${SERVE_BENCH_NOT_SET_X}/a.jsonl", "chat")


def write_azure(path: Path, rows: list[tuple[str, int, int]]) -> Path:
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{t},{i},{o}\n" for t, i, o in rows))
    return path


def test_profile_files_beside_the_profile_and_unreadable_ones(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the profile's directory is elsewhere: its relative paths are found beside it
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "lens.txt").write_text("10\n20\n30\n")
    (d / "turns.txt").write_text("2\n3\n")
    profile = {"name": "p", "api": "chat", "output_tokens": 4,
               "stages": [{"kind": "concurrency", "users": 1, "requests": 2}],
               "input_lengths": {"kind": "empirical", "path": "lens.txt"},
               "conversation": {"turns": {"kind": "empirical", "path": "turns.txt"}}}
    (d / "p.yaml").write_text(json.dumps(profile))
    loaded = load_profile(d / "p.yaml")
    assert loaded.input_tokens == 20 and loaded.conversation.turns.mean() == 2.5
    (d / "lens.txt").write_bytes(b"\xff\xfe1\n")
    with pytest.raises(ConfigError, match="lens.txt is not UTF-8 text"):
        load_profile(d / "p.yaml")
    (d / "q.yaml").write_text(json.dumps({**profile, "input_lengths": None, "input_tokens": 8,
                                          "prompts": {"kind": "jsonl", "path": "missing.jsonl", "field": "q"}}))
    with pytest.raises(ConfigError, match="prompts.path: missing.jsonl is not a file"):
        load_profile(d / "q.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_trace(d, "azure")  # a directory


def test_azure_trace_times_and_lengths(tmp_path: Path) -> None:
    path = write_azure(tmp_path / "a.csv", [("2023-11-16 18:15:46.6805900", 100, 20),
                                            ("2023-11-16 18:15:46.9805900", 300, 5),
                                            ("2023-11-16 18:15:48.1805900", 50, 1)])
    trace = load_trace(path, "azure")
    assert trace.offsets_s() == pytest.approx([0.0, 0.3, 1.5])
    assert trace.offsets_s(2.0) == pytest.approx([0.0, 0.15, 0.75])
    assert list(trace.input_tokens) == [100, 300, 50] and list(trace.output_tokens) == [20, 5, 1]


def test_replay_plan_keeps_the_trace_send_times(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.exponential(0.05, 200))
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"timestamp": int(t * 1000), "input_length": 40, "output_length": 4,
                                        "hash_ids": [1, 2]}) + "\n" for t in times))
    p = profile_from_data({**BASE, "prompts": {"kind": "trace", "path": str(path), "format": "mooncake"},
                           "stages": [{"kind": "replay", "speed": 2.0}, {"kind": "replay", "requests": 50}]})
    fast, first50 = p.expanded_stages()
    plan = plan_stage(fast, p, 0)  # type: ignore[arg-type]
    expected = (np.floor(times * 1000) / 1000 - np.floor(times[0] * 1000) / 1000) / 2.0
    assert plan.open_loop and plan.offsets_s == pytest.approx(list(expected), abs=1e-9)
    assert plan.target["speed"] == 2.0 and plan.target["scheduled"] == 200 and plan.name == "replay2x"
    assert len(plan_stage(first50, p, 0).offsets_s or []) == 50  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "text", "message"), [
    ("azure", "TIMESTAMP,ContextTokens\n1,2\n", r"t:1: no column\(s\) GeneratedTokens"),
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n1,10,2\n0.5,10,2\n",
     r"t:3: timestamp earlier than line 2's"),
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n1,10,\n", r"t:2: no 'GeneratedTokens' field"),
    ("mooncake", '{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"input_length": 5}\n',
     r"t:2: no 'timestamp' field"),
    ("mooncake", '{"timestamp": 0, "input_length": 0, "output_length": 1}\n', r"t:1: input_length is 0"),
])
def test_bad_traces_name_the_file_and_line(tmp_path: Path, fmt: str, text: str, message: str) -> None:
    path = tmp_path / "t"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_trace(path, fmt)


def test_shipped_workload_profiles_validate() -> None:
    for name in ("workload-mix", "replay-example"):
        assert load_profile(name).expanded_stages()


def test_old_records_stay_readable_and_summarised(tmp_path: Path) -> None:
    from serve_bench.measure.metrics import summarize
    from serve_bench.measure.records import read_records

    old = {"request_id": "s-0", "stage": "s", "worker_id": "w0/u0", "send_s": 1.0, "first_token_s": 1.1,
           "chunk_times_s": [1.1, 1.2], "last_token_s": 1.2, "end_s": 1.2, "prompt_tokens": 9, "output_tokens": 2,
           "max_tokens": 2, "status": 200, "ok": True}  # a record written before workloads
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(old) + "\n")
    (r,) = read_records(path)
    assert r.requested_input_tokens is None and r.turn_index is None and r.prefix_id is None
    s = summarize([r])
    assert s["requested_output_tokens"]["mean"] == 2 and s["realised_input_tokens"]["mean"] == 9
    assert s["requested_input_tokens"]["n"] == 0 and s["output_exact"] and "turns" not in s


def test_prefix_cache_hit_rate_from_the_server_counters() -> None:
    from serve_bench.observe.server_metrics import parse, prefix_cache

    def text(hits: float, queries: float) -> str:
        return ("# TYPE vllm:prefix_cache_hits counter\n"
                f'vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} {hits}\n'
                "# TYPE vllm:prefix_cache_queries counter\n"
                f'vllm:prefix_cache_queries_total{{engine="0",model_name="m"}} {queries}\n')

    got = prefix_cache(parse(text(100, 1000)), parse(text(400, 1400)))
    assert got == {"hit_rate": 0.75, "hits_tokens": 300, "queries_tokens": 400}
    assert prefix_cache(parse(text(1, 1)), parse(text(1, 1)))["hit_rate"] is None  # no query: not measured
    assert prefix_cache({}, {})["hit_rate"] is None
