#!/usr/bin/env bash
# Set up (idempotent), then run the default study: the bundled model and
# pruned copies of it, each served by vLLM and loaded with the quick profile.
# Extra arguments go to `serve-bench run`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
venv=${SERVE_BENCH_VENV:-$root/.venv}
cd "$root"
exec "$venv/bin/serve-bench" run "$@"
