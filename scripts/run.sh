#!/usr/bin/env bash
# Set up (idempotent), then run the default study: the bundled model and
# pruned copies of it, each served by vLLM, loaded with the quick profile and
# evaluated (a quick subset of each task), then the capacity report.
# Extra arguments go to `serve-bench run`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
# Evaluation data: the hub by default; an offline copy laid out as shared/datasets beside this checkout
# is used when there is one (air-gapped machines, this project's own).
if [ -z "${SERVE_BENCH_DATA_DIR:-}" ] && [ -d "$root/../shared/datasets/arc" ]; then
  export SERVE_BENCH_DATA_DIR=$(cd "$root/../shared/datasets" && pwd)
fi
venv=${SERVE_BENCH_VENV:-$root/.venv}
cd "$root"
exec "$venv/bin/serve-bench" run "$@"
