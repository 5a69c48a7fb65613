"""Replicas launched by serve-bench: each gets its own share of the machine (GPUs by the tensor-parallel size,
or physical cores), a plan asking for more than there is is refused before anything starts, and the study
refuses replicas of a server it does not launch."""

from __future__ import annotations

import pytest

from serve_bench.errors import ConfigError
from serve_bench.serve.fleet import Share, physical_cores, shares
from serve_bench.study import ServerSettings
from serve_bench.validate.judge import wilson

pytestmark = pytest.mark.unit

CORES = [[0, 4], [1, 5], [2, 6], [3, 7]]  # four cores, two threads each


def test_cpu_replicas_get_disjoint_physical_cores_one_thread_each_bound_for_vllm():
    two = shares(2, "cpu", [], {}, cores=CORES)
    assert [s.cpus for s in two] == [(0, 1), (2, 3)]
    assert two[0].env() == {"VLLM_CPU_OMP_THREADS_BIND": "0,1"} and two[1].describe() == "CPU 2-3"
    three = shares(3, "cpu", [], {}, cores=CORES)  # the fourth core is left to the load generator
    assert [s.cpus for s in three] == [(0,), (1,), (2,)]
    with pytest.raises(ConfigError, match="5 replicas need a core each at least; serve-bench may use 4"):
        shares(5, "cpu", [], {}, cores=CORES)


def test_gpu_replicas_split_the_visible_gpus_by_the_parallel_size():
    env = {"CUDA_VISIBLE_DEVICES": "2,3,4,5"}
    assert [s.gpus for s in shares(2, "cuda", ["-tp", "2"], env)] == [(2, 3), (4, 5)]
    assert shares(4, "cuda", [], env)[3].env() == {"CUDA_VISIBLE_DEVICES": "5"}
    with pytest.raises(ConfigError, match="3 replicas of 2 GPU\\(s\\) each need 6 GPUs; 4 are visible"):
        shares(3, "cuda", ["--tensor-parallel-size", "2"], env)
    with pytest.raises(ConfigError, match="name GPUs by number"):
        shares(2, "cuda", [], {"CUDA_VISIBLE_DEVICES": "GPU-1234,GPU-5678"})


def test_this_machines_cores_are_the_ones_it_may_run_on():
    import os

    cores = physical_cores()
    assert sorted(c for core in cores for c in core) == sorted(os.sched_getaffinity(0))
    assert Share(0, cpus=(0, 1, 2, 5)).describe() == "CPU 0-2,5"


def test_replicas_are_for_servers_serve_bench_launches():
    with pytest.raises(ValueError, match="replicas are servers serve-bench launches"):
        ServerSettings(url="http://127.0.0.1:8000", replicas=2)
    assert ServerSettings(replicas=2).replicas == 2


@pytest.mark.parametrize("good, n, lo, hi", [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (50, 100, 0.4038, 0.5962)])
def test_wilson_interval_matches_its_closed_forms(good, n, lo, hi):
    # at 0 or n of n the open end is z² / (n + z²) from the share; at 50 of 100, 0.5 ± 1.96 × 0.0510 / 1.0384
    a, b = wilson(good, n)
    assert a == pytest.approx(lo, abs=1e-3) and b == pytest.approx(hi, abs=1e-3)
