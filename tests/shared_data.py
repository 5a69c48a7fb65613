"""Where the project's offline evaluation data is (shared/datasets, beside the checkout): tests that read it
fail, not skip, when it cannot be found, so a CI run without it cannot pass by skipping them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = "SERVE_BENCH_DATA_DIR"  # scripts/test.sh sets it (it also looks beside the repository a clone came from)


def datasets_dir() -> Path:
    candidates = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    candidates += [parent / "shared" / "datasets" for parent in ROOT.parents]
    for path in candidates:
        if (path / "arc").is_dir() and (path / "gsm8k").is_dir():
            return path
    pytest.fail(f"the offline evaluation data is not at {' nor '.join(map(str, candidates))}: set {ENV} to the "
                "project's shared/datasets")
