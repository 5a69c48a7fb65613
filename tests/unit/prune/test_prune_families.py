"""Pruning tiny random models of every supported family, checked against the
original model with the removed neurons' down-projection columns zeroed."""

import json

import pytest
import tiny_models
import torch
from safetensors import safe_open

from serve_bench.errors import UnsupportedModelError
from serve_bench.models.resolve import ResolvedModel
from serve_bench.prune import MANIFEST, Target, criteria, indices_sha256, prune

pytestmark = pytest.mark.system  # imports torch and transformers; builds tiny checkpoints


def _local(path):
    return ResolvedModel(path.name, path, "local")


def _kept_rows(original: torch.Tensor, pruned: torch.Tensor) -> list[int]:
    """Which original rows the pruned tensor holds (rows are random, so unique)."""
    return [int((original == row).all(dim=1).nonzero()[0]) for row in pruned]


@pytest.mark.parametrize("family", tiny_models.FAMILIES)
def test_pruned_logits_equal_zeroed_original(tmp_path, family):
    from transformers import AutoModelForCausalLM

    src = tmp_path / family
    original = tiny_models.build(family, src)
    [result] = prune(_local(src), [Target(prune=0.4)], out=tmp_path / "out", divisor=0)
    k = result.plan.k
    assert k == 96 - 38
    pruned = AutoModelForCausalLM.from_pretrained(result.path, dtype=torch.float32).eval()
    assert pruned.config.intermediate_size == k

    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    manifest = json.loads((result.path / MANIFEST).read_text())
    with torch.no_grad():
        for i, layer in enumerate(original.model.layers):
            gate = layer.mlp.gate_proj.weight
            keep = torch.tensor(_kept_rows(gate, pruned.model.layers[i].mlp.gate_proj.weight))
            assert keep.tolist() == sorted(keep.tolist()), "kept neurons must stay in original order"
            expected = criteria.keep_indices(criteria.ppm(gate, layer.mlp.up_proj.weight), k)
            assert keep.tolist() == expected.tolist(), "kept neurons are the top k by PPM"
            assert manifest["kept_indices_sha256"][str(i)] == indices_sha256(keep)
            removed = torch.ones(96, dtype=torch.bool)
            removed[keep] = False
            layer.mlp.down_proj.weight[:, removed] = 0
        want = original(ids).logits
        got = pruned(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_zero_pruning_changes_no_weight(tmp_path):
    src = tmp_path / "llama"
    tiny_models.build("llama", src)
    [result] = prune(_local(src), [Target(prune=0.0)], out=tmp_path / "out", divisor=0)
    with safe_open(src / "model.safetensors", "pt") as a, safe_open(result.path / "model.safetensors", "pt") as b:
        assert set(a.keys()) == set(b.keys())
        for name in a.keys():
            assert torch.equal(a.get_tensor(name), b.get_tensor(name)), name


def test_sharded_bf16_input_keeps_shards_and_index(tmp_path):
    src = tmp_path / "qwen3"
    tiny_models.build("qwen3", src, dtype=torch.bfloat16, max_shard_size="20KB")
    shards = sorted(p.name for p in src.glob("*.safetensors"))
    assert len(shards) > 1
    [r40, r70] = prune(_local(src), [Target(prune=0.4), Target(prune=0.7)], out=tmp_path / "out", divisor=32)
    assert (r40.plan.k_unrounded, r40.plan.k, r70.plan.k_unrounded, r70.plan.k) == (58, 64, 29, 32)
    for r in (r40, r70):
        assert sorted(p.name for p in r.path.glob("*.safetensors")) == shards
        index = json.loads((r.path / "model.safetensors.index.json").read_text())
        assert index["metadata"]["total_size"] == r.manifest["weights_bytes"]
        with safe_open(r.path / index["weight_map"]["model.layers.1.mlp.down_proj.weight"], "pt") as f:
            t = f.get_tensor("model.layers.1.mlp.down_proj.weight")
        assert t.dtype == torch.bfloat16 and t.shape == (32, r.plan.k)


def test_progress_counts_every_byte_read_once_per_pass(tmp_path):
    src = tmp_path / "qwen3"
    tiny_models.build("qwen3", src, dtype=torch.bfloat16, max_shard_size="20KB")
    seen: list[tuple[int, int]] = []
    prune(_local(src), [Target(prune=0.4), Target(prune=0.7)], out=tmp_path / "out", divisor=32,
          progress=lambda done, total: seen.append((done, total)))
    tensors = 0
    for shard in src.glob("*.safetensors"):
        with safe_open(shard, "pt") as f:
            tensors += sum(f.get_tensor(n).numel() * 2 for n in f.keys())  # bf16: 2 bytes
    gate_up = 2 * 2 * 96 * 32 * 2  # 2 layers × (gate, up), 96×32 each, bf16
    # the scoring pass reads gate and up, the rewrite every tensor
    assert {t for _, t in seen} == {gate_up + tensors}
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[-1] == gate_up + tensors and dones[0] > 0


def test_manifest_contents(tmp_path):
    src = tmp_path / "gemma2"
    tiny_models.build("gemma2", src)
    [r] = prune(_local(src), [Target(expansion_ratio=2.0)], out=tmp_path / "out", criterion="maw", divisor=0)
    m = json.loads((r.path / MANIFEST).read_text())
    assert m["criterion"] == "ppm" and m["k"] == 64 and m["requested"]["expansion_ratio"] == 2.0
    assert m["realised_prune"] == pytest.approx(1 - 64 / 96)
    per_layer_removed = 3 * 32 * (96 - 64)
    assert m["parameters_before"] - m["parameters_after"] == 2 * per_layer_removed
    assert len(m["source"]["weights_sha256"]) == 64 and len(m["kept_indices_sha256"]) == 2
    cfg = json.loads((r.path / "config.json").read_text())
    before = json.loads((src / "config.json").read_text())
    assert cfg == {**before, "intermediate_size": 64}
    assert (r.path / "generation_config.json").is_file()


def test_gemma3_multimodal_wrapper_prunes_text_config(tmp_path):
    """A checkpoint whose width sits in config.text_config (the Gemma 3 wrapper)."""
    src = tmp_path / "gemma3"
    tiny_models.build("llama", src)
    cfg = json.loads((src / "config.json").read_text())
    text = {k: cfg.pop(k) for k in ("intermediate_size", "hidden_size")}
    text["model_type"] = "gemma3_text"
    cfg.update(model_type="gemma3", text_config=text)
    (src / "config.json").write_text(json.dumps(cfg))
    [r] = prune(_local(src), [Target(prune=0.5)], out=tmp_path / "out", divisor=0)
    out = json.loads((r.path / "config.json").read_text())
    assert out["text_config"]["intermediate_size"] == 48 and "intermediate_size" not in out


@pytest.mark.parametrize("family,match", [("mixtral", "mixture-of-experts"), ("phi3", "fuses its gate and up")])
def test_unsupported_families_are_refused(tmp_path, family, match):
    src = tmp_path / family
    tiny_models.build(family, src)
    with pytest.raises(UnsupportedModelError, match=match):
        prune(_local(src), [Target(prune=0.4)], out=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("name", sorted(criteria.CRITERIA))
def test_every_criterion_keeps_its_top_k(tmp_path, name):
    src = tmp_path / "llama"
    original = tiny_models.build("llama", src)
    [r] = prune(_local(src), [Target(prune=0.5)], out=tmp_path / "out", criterion=name, divisor=0)
    from transformers import AutoModelForCausalLM

    pruned = AutoModelForCausalLM.from_pretrained(r.path, dtype=torch.float32)
    mlp = original.model.layers[0].mlp
    kept = _kept_rows(mlp.gate_proj.weight, pruned.model.layers[0].mlp.gate_proj.weight)
    want = criteria.keep_indices(criteria.CRITERIA[name](mlp.gate_proj.weight, mlp.up_proj.weight), 48)
    assert kept == want.tolist()
