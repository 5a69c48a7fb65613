"""What the bundled model's "super weight" neuron (layer 0, MLP neuron 1194) does and does not do.

Transformers on CPU, float32, the bundled SmolLM2-135M-Instruct. Pruning is emulated exactly by zeroing
the pruned neurons' gate/up rows and down-projection columns (SwiGLU: silu(0) * 0 = 0, so a zeroed neuron
contributes nothing, as a removed one does); which neurons go is serve-bench's own PPM criterion and k
(serve_bench.prune: criteria.ppm, keep_indices, plan with divisor 128), so the variants match
`serve-bench prune default --prune P`. "+ keep 1194" keeps that neuron in layer 0 in place of the
lowest-scored kept one (same k).

For each variant: WikiText-2 test perplexity over the first 4,096 tokens (rows joined with blank lines,
two windows of 2,048), ARC-Challenge 0-shot acc_norm on the first N test questions (lm-eval's prompt),
and greedy chat answers to a few questions.

    .venv/bin/python scripts/bench_super_weight.py [--data-dir ../shared/datasets] [--arc 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

LAYER, NEURON = 0, 1194
FRACTIONS = (0.1, 0.2, 0.4)
QUESTIONS = ["What is the capital of France?", "Name three primary colours.", "What is 12 plus 7?"]


def variants(model: torch.nn.Module) -> list[tuple[str, dict[int, torch.Tensor]]]:
    """(name, {layer: indices of neurons to zero})."""
    from serve_bench.prune.criteria import keep_indices, ppm
    from serve_bench.prune.plan import Target, plan

    layers = model.model.layers
    width = layers[0].mlp.gate_proj.weight.shape[0]
    hidden = layers[0].mlp.gate_proj.weight.shape[1]
    out: list[tuple[str, dict[int, torch.Tensor]]] = [("base", {}), (f"base - neuron {NEURON}", {
        LAYER: torch.tensor([NEURON])})]
    scores = [ppm(layer.mlp.gate_proj.weight.detach(), layer.mlp.up_proj.weight.detach()) for layer in layers]
    rank = int((scores[LAYER] > scores[LAYER][NEURON]).sum())
    print(f"layer {LAYER} neuron {NEURON}: PPM rank {rank + 1} of {width} (1 = kept first)")
    for p in FRACTIONS:
        k = plan(Target(prune=p), width, hidden).k
        for keep_it in (False, True):
            zero = {}
            for i, s in enumerate(scores):
                keep = keep_indices(s, k)
                if keep_it and i == LAYER and NEURON not in keep.tolist():
                    worst = keep[s[keep].argmin()]
                    keep = torch.sort(torch.cat([keep[keep != worst], torch.tensor([NEURON])])).values
                mask = torch.ones(width, dtype=torch.bool)
                mask[keep] = False
                zero[i] = mask.nonzero().flatten()
            removed = NEURON in zero[LAYER].tolist()
            out.append((f"ppm {p:.0%} (k={k}), neuron {NEURON} {'removed' if removed else 'kept'}", zero))
    return out


def apply(model: torch.nn.Module, original: dict[str, torch.Tensor], zero: dict[int, torch.Tensor]) -> None:
    model.load_state_dict(original, strict=False)
    with torch.no_grad():
        for i, idx in zero.items():
            mlp = model.model.layers[i].mlp
            mlp.gate_proj.weight[idx] = 0
            mlp.up_proj.weight[idx] = 0
            mlp.down_proj.weight[:, idx] = 0


@torch.no_grad()
def perplexity(model: torch.nn.Module, ids: torch.Tensor, window: int = 2048) -> float:
    nll, count = 0.0, 0
    for start in range(0, ids.numel(), window):
        chunk = ids[start:start + window].unsqueeze(0)
        logits = model(chunk).logits[0, :-1].float()
        nll += torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
        count += chunk.numel() - 1
    return math.exp(nll / count)


@torch.no_grad()
def arc_acc_norm(model: torch.nn.Module, tok: object, items: list[dict]) -> float:
    right = 0
    for doc in items:
        q = doc["question"]
        context = f"Question: {q['stem']}\nAnswer:"
        ctx = tok(context, add_special_tokens=False).input_ids
        scores = []
        for c in q["choices"]:
            cont = tok(" " + c["text"], add_special_tokens=False).input_ids
            ids = torch.tensor([ctx + cont])
            logp = model(ids).logits[0, len(ctx) - 1:-1].float().log_softmax(-1)
            ll = logp.gather(1, torch.tensor(cont).unsqueeze(1)).sum().item()
            scores.append(ll / len(" " + c["text"]))
        labels = [c["label"] for c in q["choices"]]
        right += labels[max(range(len(scores)), key=scores.__getitem__)] == doc["answerKey"]
    return right / len(items)


@torch.no_grad()
def answers(model: torch.nn.Module, tok: object) -> list[str]:
    out = []
    for q in QUESTIONS:
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                         return_tensors="pt", return_dict=True)
        gen = model.generate(**prompt, max_new_tokens=32, do_sample=False)
        out.append(tok.decode(gen[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("SERVE_BENCH_DATA_DIR") or str(Path(__file__).resolve().parents[2]
                                                                  / "shared" / "datasets")
    ap.add_argument("--data-dir", type=Path, default=Path(default_data))
    ap.add_argument("--arc", type=int, default=100, help="ARC-Challenge test questions (0: skip)")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from serve_bench.models.resolve import resolve

    path = resolve("default").path
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    original = {k: v.clone() for k, v in model.state_dict().items() if ".mlp." in k}
    rows = [json.loads(line)["text"] for line in (args.data_dir / "wikitext2/wikitext-2-raw-v1_test.jsonl").open()]
    ids = tok("\n\n".join(rows), return_tensors="pt").input_ids[0][:args.tokens]
    arc = [json.loads(line) for line in (args.data_dir / "arc/ARC-Challenge-Test.jsonl").open()][:args.arc]
    results = []
    for name, zero in variants(model):
        t0 = time.perf_counter()
        apply(model, original, zero)
        r = {"variant": name, "wikitext2_ppl": perplexity(model, ids),
             "arc_challenge_acc_norm": arc_acc_norm(model, tok, arc) if arc else None,
             "answers": answers(model, tok), "wall_s": 0.0}
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        results.append(r)
        print(f"{name:45s} ppl {r['wikitext2_ppl']:8.2f}  arc {r['arc_challenge_acc_norm']}  ({r['wall_s']} s)")
        for q, a in zip(QUESTIONS, r["answers"]):
            print(f"    {q!r} -> {a!r}")
    if args.json:
        args.json.write_text(json.dumps({"tokens": int(ids.numel()), "arc_items": len(arc), "results": results},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
