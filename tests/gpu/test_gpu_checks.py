"""The GPU checks (issue 20), wherever an NVIDIA GPU is present; skipped, with the reason, where none is.

They need PyTorch with CUDA, nvidia-ml-py and zeus, and nothing else of a GPU host (no vLLM, no internet):
scripts/gpu_checks.sh runs the same checks as one script with zeus brought as wheels."""

from __future__ import annotations

import pytest

from serve_bench.observe.gpu_check import no_gpu_reason

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(no_gpu_reason() is not None, reason=str(no_gpu_reason()))]


def test_energy_through_serve_benchs_own_sampler_matches_nvmls_power_and_idle_repeats(tmp_path):
    from serve_bench.observe.gpu_check import check_energy

    r = check_energy(0, idle_s=10.0, warmup_s=5.0, load_s=15.0, work_dir=str(tmp_path))
    assert "error" not in r, r
    assert r["load"]["within_5pct"], r["load"]
    assert r["idle_within_5pct"], (r["idle_a"], r["idle_b"])
    assert r["load"]["series_samples"] >= 10 and r["sampler"]["median_period_s"] < 0.15
    assert r["stage_energy"]["measured"] and r["stage_energy"]["scope"] == "gpu"


def test_pruned_mlp_widths_are_faster_within_the_weight_bytes_limit():
    from serve_bench.prune.width_timing import check_widths

    r = check_widths(tokens=(1, 4096))
    for row in r["rows"]:
        for k in ("k", "k128"):
            assert row[f"speedup_{k}"] <= row[f"limit_{k}"] * 1.2, row  # no faster than its bytes and flops allow
    big = [row for row in r["rows"] if row["tokens"] == 4096 and row["fraction"] == 0.4]
    assert big and big[0]["speedup_k"] > 1.2, big  # 40% fewer neurons: compute-bound, clearly faster
