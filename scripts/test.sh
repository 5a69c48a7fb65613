#!/usr/bin/env bash
# Set up (idempotent), then run the test suite: unit tests and integration
# tests against a real vLLM CPU server on the bundled model. Extra arguments go
# to pytest, e.g. `scripts/test.sh -m unit`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
# The dashboards test runs every panel query against a real Prometheus: Debian's package.
if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing Debian's prometheus for the dashboards test" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "test: prometheus is missing and cannot be installed here (needs root and apt-get); install it, or" \
         "the dashboards test fails" >&2
  fi
fi
# The report test opens the HTML page in a real headless browser: Debian's chromium (Playwright drives it).
if ! command -v chromium >/dev/null 2>&1 && [ -z "${SERVE_BENCH_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing Debian's chromium for the report's browser test" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "test: chromium is missing and cannot be installed here (needs root and apt-get); install it (or set" \
         "SERVE_BENCH_CHROMIUM to a Chromium binary), or the report's browser test fails" >&2
  fi
fi
# The accuracy tests read the project's offline evaluation data: shared/datasets beside this checkout, or
# beside the repository a clone was made from (CI tests a clean clone made elsewhere).
if [ -z "${SERVE_BENCH_DATA_DIR:-}" ]; then
  origin=$(git -C "$root" remote get-url origin 2>/dev/null || true)
  for d in "$root/../shared/datasets" "${origin%/}/../shared/datasets"; do
    if [ -d "$d/arc" ]; then export SERVE_BENCH_DATA_DIR=$(cd "$d" && pwd); break; fi
  done
fi
venv=${SERVE_BENCH_VENV:-$root/.venv}
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
