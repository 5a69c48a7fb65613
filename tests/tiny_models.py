"""Tiny random checkpoints of each supported family, built with transformers."""

from __future__ import annotations

from pathlib import Path

import torch

COMMON = dict(hidden_size=32, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=128, max_position_embeddings=64, head_dim=8)


def family_config(family: str):
    import transformers as t

    if family == "llama":
        return t.LlamaConfig(**COMMON)
    if family == "llama_mlp_bias":
        return t.LlamaConfig(**COMMON, mlp_bias=True)
    if family == "mistral":
        return t.MistralConfig(**COMMON)
    if family == "qwen2":
        return t.Qwen2Config(**COMMON)
    if family == "qwen3":
        return t.Qwen3Config(**COMMON)
    if family == "gemma":
        return t.GemmaConfig(**COMMON)
    if family == "gemma2":
        return t.Gemma2Config(**COMMON)
    if family == "gemma3_text":
        return t.Gemma3TextConfig(**COMMON)
    if family == "mixtral":
        return t.MixtralConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2)
    if family == "phi3":
        c = dict(COMMON)
        c.pop("head_dim")
        return t.Phi3Config(**c, pad_token_id=0)
    raise ValueError(family)


FAMILIES = ["llama", "llama_mlp_bias", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"]


def build(family: str, path: Path, seed: int = 0, dtype: torch.dtype = torch.float32,
          max_shard_size: str | None = None):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(family_config(family), dtype=dtype)
    # transformers initialises biases to zero; random ones make the bias slicing observable
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(0, 0.1)
    model.eval()
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, **kwargs)
    return model
