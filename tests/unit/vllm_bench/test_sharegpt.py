"""ShareGPT files read as vLLM's benchmark reads them: the same conversations kept, in the same order, with the
same answer lengths, checked against vLLM's own ShareGPTDataset on one file."""

from __future__ import annotations

import json

import pytest

from serve_bench.errors import ConfigError
from serve_bench.models.resolve import resolve
from serve_bench.vllm_bench.sharegpt import sharegpt_rows

# loads a tokenizer, and vLLM's benchmark datasets (whose torch import warns of its own deprecations)
pytestmark = [pytest.mark.system, pytest.mark.filterwarnings("ignore:`torch.jit.script_method`:DeprecationWarning")]


def conversations(n):
    out = []
    for i in range(n):
        human = " ".join(["word"] * (2 + (i * 7) % 40))  # some prompts below 4 tokens: filtered out
        reply = " ".join(["answer"] * ((i * 5) % 30))  # some replies below 4 tokens: filtered out
        turns = [{"from": "human", "value": f"q{i} {human}"}, {"from": "gpt", "value": reply}]
        out.append({"id": str(i), "conversations": turns if i % 9 else turns[:1]})  # one-turn entries dropped
    return out


def test_the_same_requests_as_vllms_sharegpt_dataset(tmp_path):
    from transformers import AutoTokenizer
    from vllm.benchmarks.datasets.datasets import ShareGPTDataset

    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(conversations(60)))
    tokenizer = str(resolve("default").path)
    ours = sharegpt_rows(path, tokenizer, 25, seed=3, output_len=None)
    theirs = ShareGPTDataset(dataset_path=str(path), random_seed=3).sample(
        tokenizer=AutoTokenizer.from_pretrained(tokenizer), num_requests=25)
    assert [r["prompt"] for r in ours] == [s.prompt for s in theirs][:len(ours)]
    assert [r["output_tokens"] for r in ours] == [s.expected_output_len for s in theirs][:len(ours)]
    assert 0 < len(ours) <= 25 and all(r["prompt_tokens"] >= 4 and r["output_tokens"] >= 4 for r in ours)
    fixed = sharegpt_rows(path, tokenizer, 25, seed=3, output_len=2)  # a fixed length skips the reply check
    assert {r["output_tokens"] for r in fixed} == {2} and len(fixed) >= len(ours)


def test_a_file_that_is_not_sharegpt_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ConfigError, match="JSON list"):
        sharegpt_rows(path, "unused", 5, 0, None)
