#!/usr/bin/env bash
# Wheels of zeus and what it imports, for a GPU machine that has PyTorch, numpy, pandas and nvidia-ml-py but no
# internet: into gpu-wheels/ (git-ignored), for that machine's Python (default 3.11), about 50 MB.
#   bash scripts/fetch_gpu_wheels.sh [PYTHON_VERSION]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ver=${1:-3.11}
out=$root/gpu-wheels
mkdir -p "$out"
pip download -q -d "$out" "zeus==0.16.0" --python-version "$ver" --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
# already on the GPU machine (and large): leave them out
rm -f "$out"/numpy-*.whl "$out"/pandas-*.whl "$out"/nvidia_ml_py-*.whl "$out"/tzdata-*.whl
du -sh "$out"
