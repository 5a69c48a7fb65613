#!/usr/bin/env bash
# Set up (idempotent), then run the test suite: unit tests and integration
# tests against a real vLLM CPU server on the bundled model. Extra arguments go
# to pytest, e.g. `scripts/test.sh -m unit`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
venv=${SERVE_BENCH_VENV:-$root/.venv}
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
