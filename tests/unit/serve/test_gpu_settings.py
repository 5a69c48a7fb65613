"""The study's GPU server settings become the launched server's engine arguments and environment, and a setting
said twice (in the setting and in engine_args or env) is refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_bench.errors import ConfigError
from serve_bench.study import ServerSettings, StudySpec

pytestmark = pytest.mark.unit


def test_gpu_settings_reach_the_servers_arguments_and_environment(tmp_path):
    s = ServerSettings(gpus=[2, 3], gpu_memory_utilization=0.5, tensor_parallel_size=2,
                       compile_cache_dir=tmp_path / "cache", engine_args=["--max-model-len", "4096"])
    assert s.launch_args == ["--max-model-len", "4096", "--gpu-memory-utilization", "0.5",
                             "--tensor-parallel-size", "2"]
    assert s.launch_env == {"CUDA_VISIBLE_DEVICES": "2,3", "VLLM_CACHE_ROOT": str((tmp_path / "cache").resolve())}
    plain = ServerSettings()
    assert plain.launch_args == plain.engine_args and plain.launch_env == {}


@pytest.mark.parametrize("server, says", [
    ({"gpu_memory_utilization": 0.5, "engine_args": ["--gpu-memory-utilization=0.8"]}, "say the same thing"),
    ({"tensor_parallel_size": 2, "engine_args": ["-tp", "2"]}, "say the same thing"),
    ({"gpus": [0], "env": {"CUDA_VISIBLE_DEVICES": "1"}}, "CUDA_VISIBLE_DEVICES say the same thing"),
    ({"gpus": [1, 1]}, "distinct GPU numbers"),
    ({"gpu_memory_utilization": 1.5}, "less than or equal to 1"),
])
def test_a_setting_said_twice_or_out_of_range_is_refused(server, says, tmp_path):
    from serve_bench.validation import validate

    with pytest.raises(ConfigError, match=None) as err:
        validate(StudySpec, {"server": server}, Path("study.yaml"))
    assert says in str(err.value)
