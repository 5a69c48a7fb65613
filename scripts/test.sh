#!/usr/bin/env bash
# Set up (idempotent), then run the test suite: unit tests and integration
# tests against a real vLLM CPU server on the bundled model. Extra arguments go
# to pytest, e.g. `scripts/test.sh -m unit`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
# Debian packages some tests drive for real, installed where missing (root and apt-get needed).
debian_package() {  # NAME WHY
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing Debian's $1 for $2" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
  else
    echo "test: $1 is missing and cannot be installed here (needs root and apt-get); install it, or $2 fails" >&2
  fi
}
# every dashboard panel query runs against a real Prometheus
command -v prometheus >/dev/null 2>&1 || debian_package prometheus "the dashboards test"
# the report's HTML page opens in a real headless browser (Playwright drives it; SERVE_BENCH_CHROMIUM: another)
if [ -z "${SERVE_BENCH_CHROMIUM:-}" ]; then
  command -v chromium >/dev/null 2>&1 || debian_package chromium "the report's browser test"
fi
# The accuracy tests read the project's offline evaluation data: shared/datasets beside this checkout (or
# beside one of its parent directories), or beside the repository a clone was made from (CI tests a clean
# clone made elsewhere).
if [ -z "${SERVE_BENCH_DATA_DIR:-}" ]; then
  origin=$(git -C "$root" remote get-url origin 2>/dev/null || true)
  candidates=()
  d=$root
  while [ "$d" != / ]; do d=$(dirname "$d"); candidates+=("$d/shared/datasets"); done  # nearest first
  candidates+=("${origin%/}/../shared/datasets")
  for d in "${candidates[@]}"; do
    if [ -d "$d/arc" ]; then export SERVE_BENCH_DATA_DIR=$(cd "$d" && pwd); break; fi
  done
fi
venv=${SERVE_BENCH_VENV:-$root/.venv}
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
