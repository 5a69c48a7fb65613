"""The default study follows vLLM's build: the CPU build's quick profile and SLO, the CUDA build's gpu profile
(stages long enough for energy) and an interactive GPU SLO; the documented GPU study validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_bench.study import DEFAULT_SLO_MS, GPU_SLO_MS, StudySpec, load_study
from serve_bench.workload.profiles import load_profile

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("build, profile, slo, percentile", [("cpu", "quick", DEFAULT_SLO_MS, 90.0),
                                                             ("cuda", "gpu", GPU_SLO_MS, 99.0)])
def test_the_default_study_follows_the_build(monkeypatch, build, profile, slo, percentile):
    monkeypatch.setattr("serve_bench.serve.server.vllm_build", lambda: build)
    study = StudySpec()
    assert study.profiles == [profile]
    resolved = study.resolved_slo()
    assert resolved.slo_ms == slo and resolved.percentile == percentile
    assert StudySpec(profiles=["ladder"]).profiles == ["ladder"]  # a study's own choice stands


def test_the_gpu_profile_gives_energy_its_30_second_window():
    stages = load_profile("gpu").expanded_stages()
    assert [s.users for s in stages] == [1, 16, 64, 256, 1024]
    assert all(s.duration_s >= 35 for s in stages)  # 30 s steady after warm-up and ramp


def test_the_documented_gpu_study_validates():
    study = load_study(ROOT / "studies" / "llama-3.2-1b-gpu.yaml")
    assert study.prune.prune == [0.1, 0.2, 0.4] and study.profiles == ["gpu"]
    assert "--gpu-memory-utilization" in study.server.launch_args
