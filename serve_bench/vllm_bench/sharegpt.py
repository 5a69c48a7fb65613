"""ShareGPT-format files as vLLM's benchmark reads them (vllm/benchmarks/datasets/datasets.py, ShareGPTDataset):
entries with at least two turns, shuffled with Python's ``random`` seeded by ``--seed``; the first turn is the
prompt, the second turn's token count the answer length (or ``--sharegpt-output-len``); a pair is kept when
the prompt has 4 to 1,024 tokens, the answer at least 4 (unless fixed) and both together at most 2,048, until
``--num-prompts`` are kept. The same seed and tokenizer give vLLM's requests, in vLLM's order. Written here
because vLLM's loader needs vLLM's whole benchmark package (and its request types) to run."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from serve_bench.errors import ConfigError
from serve_bench.workload.tokenizer_words import load_tokenizer

MIN_LEN, MAX_PROMPT, MAX_TOTAL = 4, 1024, 2048


def valid(prompt_len: int, output_len: int, fixed_output: bool) -> bool:
    return not (prompt_len < MIN_LEN or (not fixed_output and output_len < MIN_LEN) or prompt_len > MAX_PROMPT
                or prompt_len + output_len > MAX_TOTAL)


def sharegpt_rows(path: Path, tokenizer: str, num: int, seed: int, output_len: int | None) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a ShareGPT JSON file ({err})") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: a ShareGPT file is a JSON list of {{\"conversations\": [...]}} entries")
    entries = [e for e in data if isinstance(e, dict) and len(e.get("conversations") or []) >= 2]
    random.seed(seed)  # vLLM seeds the module's generator and shuffles with it: the same order here
    random.shuffle(entries)
    tok = load_tokenizer(tokenizer)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        if len(rows) >= num:
            break
        prompt, reply = entry["conversations"][0]["value"], entry["conversations"][1]["value"]
        prompt_len = len(tok(prompt).input_ids)
        n = len(tok(reply).input_ids) if output_len is None else output_len
        if valid(prompt_len, n, output_len is not None):
            rows.append({"prompt": prompt, "output_tokens": n, "prompt_tokens": prompt_len})
    if not rows:
        raise ConfigError(f"{path}: no conversation passes vLLM's filter (prompt 4–1024 tokens, reply ≥ 4, "
                          "both ≤ 2048)")
    return rows
