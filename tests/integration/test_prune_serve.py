"""The bundled model, pruned at 10% and 40%, loads in transformers and is served by vLLM."""

import json

import pytest
import requests
import torch

from serve_bench.models.resolve import resolve
from serve_bench.prune import Target, prune
from serve_bench.serve.server import ServerSpec, VllmServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned")
    return prune(resolve("default"), [Target(prune=0.1), Target(prune=0.4)], out=out)


def test_pruned_bundled_model_loads_in_transformers(pruned):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for r in pruned:
        model = AutoModelForCausalLM.from_pretrained(r.path, dtype=torch.bfloat16)
        assert model.config.intermediate_size == r.plan.k
        assert model.model.layers[0].mlp.down_proj.weight.shape == (576, r.plan.k)
        tok = AutoTokenizer.from_pretrained(r.path)
        assert tok.chat_template, "the chat template must travel with the checkpoint"
        ids = tok("The capital of France is", return_tensors="pt").input_ids
        logits = model(ids).logits
        assert torch.isfinite(logits).all()
    assert [r.plan.k for r in pruned] == [1408, 896]


@pytest.mark.parametrize("which", [0, 1], ids=["p10", "p40"])
def test_vllm_serves_pruned_checkpoint(pruned, which, tmp_path):
    r = pruned[which]
    spec = ServerSpec(model_path=r.path, served_name="pruned", log_path=tmp_path / "vllm.log",
                      engine_args=["--max-model-len", "1024"])
    with VllmServer(spec) as server:
        resp = requests.post(f"{server.url}/v1/chat/completions", timeout=120, json={
            "model": "pruned", "max_tokens": 8, "temperature": 0, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Say hello."}]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        # A 135M model pruned even 10% by any weight criterion loses a "super weight"
        # neuron and answers in whitespace (see README), so only the serving is checked.
        assert body["usage"]["completion_tokens"] == 8
        assert isinstance(body["choices"][0]["message"]["content"], str)
        log = (tmp_path / "vllm.log").read_text()
        assert str(r.path) in log
        assert json.loads((r.path / "config.json").read_text())["intermediate_size"] == r.plan.k
    assert not server.alive()
