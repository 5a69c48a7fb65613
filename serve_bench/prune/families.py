"""Which checkpoints have a prunable GLU MLP, and where its tensors and width live.

Supported: decoders whose MLP is separate gate/up/down projections with one
``intermediate_size`` for every layer (Llama, Mistral, Qwen2, Qwen3, Gemma,
Gemma 2, Gemma 3 text and the Gemma 3 wrapper's language model…).
Refused with a reason: mixture-of-experts, fused gate/up projections,
per-layer widths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from serve_bench.errors import UnsupportedModelError
from serve_bench.models.checkpoint import Checkpoint

KNOWN_FAMILIES = {
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
    "olmo", "olmo2", "granite", "smollm3",
}
_MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size")
MLP_TENSOR = re.compile(
    r"^(?P<prefix>.*\.layers\.(?P<layer>\d+)\.mlp\.)(?P<proj>gate_proj|up_proj|down_proj)\.(?P<kind>weight|bias)$"
)
_FUSED = re.compile(r"\.mlp\.(gate_up_proj|w12|fc1_g)\.")
_EXPERTS = re.compile(r"\.(experts|block_sparse_moe)\.")


@dataclass(frozen=True)
class MlpLayout:
    family: str
    text_config_key: str | None  # "text_config" when the width sits in a nested config
    intermediate_size: int
    hidden_size: int
    num_layers: int
    layers: dict[int, dict[str, str]]  # layer -> {"gate": name, "up": name, "down": name, "*_bias": name}

    def text_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return config[self.text_config_key] if self.text_config_key else config


def detect(ckpt: Checkpoint) -> MlpLayout:
    config = ckpt.config
    nested = "text_config" if isinstance(config.get("text_config"), dict) else None
    text = config[nested] if nested else config
    family = str(text.get("model_type") or config.get("model_type") or "unknown")
    where = f"{ckpt.path} ({family})"

    moe = [k for k in _MOE_KEYS if text.get(k)]
    if moe or any(_EXPERTS.search(n) for n in ckpt.tensors):
        raise UnsupportedModelError(
            f"{where} is a mixture-of-experts model ({', '.join(moe) or 'expert tensors'}); "
            "expansion-ratio pruning applies to dense GLU MLPs only")
    fused = sorted({m.group(1) for n in ckpt.tensors if (m := _FUSED.search(n))})
    if fused:
        raise UnsupportedModelError(
            f"{where} fuses its gate and up projections ({fused[0]}); serve-bench prunes separate "
            "gate_proj/up_proj/down_proj tensors only")
    width = text.get("intermediate_size")
    if isinstance(width, list):
        raise UnsupportedModelError(f"{where} has a different MLP width per layer; not supported")
    if not isinstance(width, int) or "hidden_size" not in text:
        raise UnsupportedModelError(
            f"{where}: config.json has no integer intermediate_size/hidden_size, so it has no GLU MLP "
            "serve-bench can prune")

    layers: dict[int, dict[str, str]] = {}
    for name in ckpt.tensors:
        m = MLP_TENSOR.match(name)
        if m:
            role = m["proj"].removesuffix("_proj") + ("" if m["kind"] == "weight" else "_bias")
            layers.setdefault(int(m["layer"]), {})[role] = name
    incomplete = [i for i, roles in layers.items() if not {"gate", "up", "down"} <= roles.keys()]
    if not layers or incomplete:
        raise UnsupportedModelError(
            f"{where}: no complete gate_proj/up_proj/down_proj MLP found"
            + (f" (layers {incomplete[:5]} incomplete)" if incomplete else "")
            + "; supported families: " + ", ".join(sorted(KNOWN_FAMILIES)))
    for i, roles in layers.items():
        shapes = {r: ckpt.tensors[roles[r]].shape for r in ("gate", "up", "down")}
        if shapes["gate"][0] != width or shapes["up"][0] != width or shapes["down"][1] != width:
            raise UnsupportedModelError(
                f"{where}: layer {i} MLP shapes {shapes} do not match intermediate_size {width} "
                "(quantized or packed weights cannot be pruned; prune the bf16/fp16 checkpoint)")
    return MlpLayout(family, nested, width, int(text["hidden_size"]), len(layers), dict(sorted(layers.items())))
