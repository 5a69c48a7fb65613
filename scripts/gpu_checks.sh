#!/usr/bin/env bash
# The GPU checks (issue 20) on a machine with an NVIDIA GPU, PyTorch and nvidia-ml-py but perhaps no zeus and
# no internet: zeus and its dependencies come from a wheel directory carried beside the tree
# (scripts/fetch_gpu_wheels.sh fills one), installed into a scratch directory, never into the system.
#   bash scripts/gpu_checks.sh [--out DIR] [--quick]          (SERVE_BENCH_GPU_WHEELS: the wheels, default gpu-wheels/)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
if ! "$py" -c "import zeus.monitor.energy" 2>/dev/null; then
  wheels=${SERVE_BENCH_GPU_WHEELS:-$root/gpu-wheels}
  [ -d "$wheels" ] || { echo "zeus is not installed and no wheels at $wheels: run scripts/fetch_gpu_wheels.sh" >&2; exit 2; }
  deps=$(mktemp -d)
  "$py" -m pip install -q --no-index --find-links "$wheels" --target "$deps" --no-deps "$wheels"/*.whl
  export PYTHONPATH="$deps${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$py" "$root/scripts/gpu_checks.py" "$@"
