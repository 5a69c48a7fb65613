"""Synthetic prompts of a length mix and shared prefixes, with the bundled model's tokenizer (``system``):
the realised prompt lengths (what the server will count) are the planned ones, request by request."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from serve_bench.errors import ConfigError
from serve_bench.workload.lengths import LengthDist
from serve_bench.workload.prefixes import SharedPrefix
from serve_bench.workload.prompt_sources import prompt_set_from_spec
from serve_bench.workload.prompts import SyntheticPromptSet

pytestmark = pytest.mark.system

MIX = TypeAdapter(LengthDist).validate_python({"kind": "lognormal", "mean_tokens": 120, "std_tokens": 60,
                                               "min_tokens": 40, "max_tokens": 400})


@pytest.fixture(scope="module")
def model_path() -> Path:
    from serve_bench.models.resolve import resolve

    return resolve("default").path


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_length_mix_with_shared_prefixes_is_built_exactly(model_path: Path, api: str) -> None:
    prompts = SyntheticPromptSet(model_path, api, 120, seed=4, salt="mix", input_lengths=MIX,  # type: ignore[arg-type]
                                 output_lengths=MIX, shared_prefix=SharedPrefix(tokens=30, count=2, share=0.5))
    indices = list(range(120))
    prompts.prepare(indices)  # the batched path
    texts = [prompts.text(i) for i in indices]
    counted = prompts.count_many(texts)
    plan = [prompts.request_fields(i) for i in indices]
    assert counted == [p["requested_input_tokens"] for p in plan]
    assert len({p["requested_input_tokens"] for p in plan}) > 30
    carried = [i for i, p in enumerate(plan) if "prefix_id" in p]
    assert 30 < len(carried) < 90
    for i in carried:  # the same prefix, the same leading words
        same = [j for j in carried if plan[j]["prefix_id"] == plan[i]["prefix_id"]]
        assert texts[i].split()[:30] == texts[same[0]].split()[:30]
    assert all(p["requested_output_tokens"] >= 40 for p in plan)
    # the batched path and the one-by-one search give the same prompts; so does a rebuilt set (the feed)
    again = prompt_set_from_spec(prompts.spec())
    assert [again.build(i) for i in indices[:20]] == texts[:20]
    assert [again.request_fields(i) for i in indices] == plan


def test_bounds_the_tokenizer_cannot_meet_and_the_context(model_path: Path) -> None:
    tight = TypeAdapter(LengthDist).validate_python({"kind": "uniform", "min_tokens": 3, "max_tokens": 50})
    with pytest.raises(ConfigError, match=r"input_lengths.min_tokens=3 is too small: the chat prompt format alone"):
        SyntheticPromptSet(model_path, "chat", 20, input_lengths=tight)
    prompts = SyntheticPromptSet(model_path, "chat", 120, input_lengths=MIX, output_lengths=MIX,
                                 shared_prefix=SharedPrefix(tokens=100))
    prompts.check_context(2048)
    with pytest.raises(ConfigError, match=r"input_lengths.max_tokens: a prompt of up to 500 tokens plus an answer "
                                          r"of up to 400 does not fit the server's context of 800 tokens"):
        prompts.check_context(800, "p.yaml")


def test_in_a_conversation_only_the_opening_message_carries_the_prefix(model_path: Path) -> None:
    from serve_bench.workload.conversations import SEP, ConversationPromptSet

    inner = SyntheticPromptSet(model_path, "chat", 50, seed=2, salt="c", shared_prefix=SharedPrefix(tokens=20,
                                                                                                       share=0.5))
    turns = TypeAdapter(LengthDist).validate_python({"kind": "fixed", "tokens": 3})
    conv = ConversationPromptSet(inner, turns, seed=2, salt="c")
    conv.prepare(range(40))
    opened = 0
    for i in range(40):
        texts = conv.text(i).split(SEP)
        fields = [conv.turn_fields(i, t, "s") for t in range(3)]
        assert len(texts) == 3 and [f["turn_index"] for f in fields] == [0, 1, 2]
        assert fields[0]["requested_input_tokens"] == inner.count(texts[0])
        assert all("requested_input_tokens" not in f for f in fields[1:])
        assert [inner.count(t) for t in texts[1:]] == [50, 50]  # later messages: no prefix of their own
        if "prefix_id" in fields[0]:
            opened += 1
            assert inner.count(texts[0]) == 70 and all(f["prefix_id"] == 0 for f in fields)
    assert 10 < opened < 30
    # the last turn holds the prefix and every earlier message and reply: 20 + 3 × (50 + 10) = 200 tokens
    conv.check_context(200, answer_tokens=10)
    with pytest.raises(ConfigError, match=r"a conversation of up to 3 turns .* 200 tokens by its last turn"):
        conv.check_context(199, answer_tokens=10)


def test_trace_prompts_have_the_row_lengths_and_share_their_blocks(model_path: Path, tmp_path: Path) -> None:
    import json

    from serve_bench.workload.traces import TracePromptSet

    rows = [(40, 5, [7, 8]), (90, 3, [7, 8, 9]), (60, 4, [1]), (3000, 2, [7])]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"timestamp": 10 * k, "input_length": i, "output_length": o, "hash_ids": h})
                            + "\n" for k, (i, o, h) in enumerate(rows)))
    prompts = TracePromptSet(model_path, "chat", path, "mooncake", block_tokens=16, seed=1, salt="t")
    prompts.prepare(range(3))
    texts = [prompts.text(i) for i in range(3)]
    assert prompts.count_many(texts) == [40, 90, 60]
    assert [prompts.request_fields(i)["requested_output_tokens"] for i in range(3)] == [5, 3, 4]
    assert texts[0].split()[:5] == texts[1].split()[:5]  # hash ids 7, 8: the same opening block
    assert texts[2].split()[:5] != texts[0].split()[:5]
    with pytest.raises(ConfigError, match=r"t.jsonl:4: 3000 prompt \+ 2 answer tokens do not fit the server's "
                                          r"context of 2048 tokens"):
        prompts.check_context(2048)
    path.write_text(json.dumps({"timestamp": 0, "input_length": 4, "output_length": 1}) + "\n")
    with pytest.raises(ConfigError, match=r"t.jsonl:1: input_tokens=4 is too small"):
        TracePromptSet(model_path, "chat", path, "mooncake")


def test_a_wrong_shortcut_is_caught_and_every_prompt_still_exact(model_path: Path) -> None:
    prompts = SyntheticPromptSet(model_path, "chat", 120, seed=9, input_lengths=MIX)
    assert prompts._additive  # byte-level BPE: counts add up word by word
    prompts._extra = {w: 1 for w in prompts._extra}  # a wrong model of the tokenizer: every first guess misses
    prompts.prepare(range(70))
    assert not prompts._additive  # the spot check (index 0) caught it and turned the shortcut off
    texts = [prompts.text(i) for i in range(70)]
    assert prompts.count_many(texts) == [prompts.request_fields(i)["requested_input_tokens"] for i in range(70)]


def test_the_shortest_prompts_the_template_allows_are_exact(model_path: Path) -> None:
    overhead = SyntheticPromptSet(model_path, "chat", 64).count("")
    short = TypeAdapter(LengthDist).validate_python({"kind": "uniform", "min_tokens": overhead + 1,
                                                     "max_tokens": overhead + 3})
    prompts = SyntheticPromptSet(model_path, "chat", 64, input_lengths=short)
    prompts.prepare(range(300))  # some opening words take 2 tokens once stripped: no exact first guess there
    texts = [prompts.text(i) for i in range(300)]
    assert prompts.count_many(texts) == [prompts.request_fields(i)["requested_input_tokens"] for i in range(300)]
