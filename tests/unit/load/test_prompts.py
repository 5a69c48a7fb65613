from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_bench.errors import ConfigError
from serve_bench.workload.profiles import JsonlPrompts
from serve_bench.workload.prompt_sources import JsonlPromptSet, build_prompt_set
from serve_bench.workload.prompts import SyntheticPromptSet

# Synthetic prompts load the bundled model's transformers tokenizer (which imports
# torch): those tests are `system`; JSONL prompts need neither and stay `unit`.


@pytest.fixture(scope="module")
def model_path() -> Path:
    from serve_bench.models.resolve import resolve  # imports torch (serve_bench.models.checkpoint)

    return resolve("default").path


@pytest.mark.system
@pytest.mark.parametrize("api", ["chat", "completions"])
@pytest.mark.parametrize("tokens", [40, 64, 257])
def test_synthetic_prompts_have_the_exact_token_count(model_path: Path, api: str, tokens: int) -> None:
    prompts = SyntheticPromptSet(model_path, api, tokens, seed=3)  # type: ignore[arg-type]
    tok = prompts.tokenizer
    for i in range(25):
        text = prompts.text(i)
        if api == "chat":
            rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                               add_generation_prompt=True)
            n = len(tok(rendered, add_special_tokens=False)["input_ids"])
        else:
            n = len(tok(text)["input_ids"])
        assert n == tokens, (i, text)
    payload = prompts.payload(0)
    assert (payload["messages"][0]["content"] if api == "chat" else payload["prompt"]) == prompts.text(0)


@pytest.mark.system
def test_synthetic_prompts_are_deterministic_per_seed_and_distinct(model_path: Path) -> None:
    a = SyntheticPromptSet(model_path, "chat", 64, seed=1)
    b = SyntheticPromptSet(model_path, "chat", 64, seed=1)
    c = SyntheticPromptSet(model_path, "chat", 64, seed=2)
    assert [a.text(i) for i in range(5)] == [b.text(i) for i in range(5)]
    assert a.text(0) != c.text(0)
    assert len({a.text(i).split()[0:3].__repr__() for i in range(20)}) > 15  # distinct prefixes: no cache sharing


@pytest.mark.system
def test_too_few_tokens_for_the_chat_template(model_path: Path) -> None:
    with pytest.raises(ConfigError, match="too small"):
        SyntheticPromptSet(model_path, "chat", 5)


@pytest.mark.unit
def test_jsonl_prompts(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"q": f"question {i}"}) for i in range(3)) + "\n")
    prompts = build_prompt_set(JsonlPrompts(kind="jsonl", path=path, field="q"), model_path="", api="completions",
                               input_tokens=1)
    assert [prompts.payload(i)["prompt"] for i in range(4)] == ["question 0", "question 1", "question 2", "question 0"]
    with pytest.raises(ConfigError, match=r"p.jsonl:1: not a JSON object with a 'prompt' field"):
        JsonlPromptSet(path, "chat")


@pytest.mark.system  # the feed is a child process that loads the tokenizer
def test_a_feed_builds_the_prompts_this_process_takes_in_order(model_path: Path) -> None:
    from serve_bench.load.prompt_feed import start_feed, stop_feed
    from serve_bench.load.stage_state import index_of

    fed = SyntheticPromptSet(model_path, "chat", 48, seed=5, salt="f")
    direct = SyntheticPromptSet(model_path, "chat", 48, seed=5, salt="f")
    slots, period, offset = [1, 3], 4, 100
    order = [offset + index_of(k, slots, period) for k in range(12)]
    fed.prepare(order[:2])  # built before the stage; the feed starts after them
    start_feed(fed, offset=offset, slots=slots, period=period, start_k=2)
    try:
        assert fed.feed is not None
        got = [fed.payload(i)["messages"][0]["content"] for i in order]
    finally:
        stop_feed(fed)
    assert fed.feed is None
    assert got == [direct.build(i) for i in order]
    assert order[:4] == [101, 103, 105, 107]
