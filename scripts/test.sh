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
# Two sessions: everything but the load generator's own tests, unpatched (as serve-bench's orchestrator
# runs); then those, gevent-patched first (tests/conftest.py says why). One closing line counts both.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
codes=()
for loadgen in 0 1; do
  set +e
  SERVE_BENCH_TEST_LOADGEN=$loadgen "$venv/bin/python" -m pytest "$@" 2>&1 | tee "$logs/$loadgen.log"
  codes+=("${PIPESTATUS[0]}")
  set -e
done
count() {  # WORD: the sum over both sessions' closing lines
  cat "$logs"/*.log | grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)\b.* in [0-9.]+s' | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'
}
echo "tests: $(count passed) passed, $(( $(count failed) + $(count error) )) failed, $(count skipped) skipped"
status=0
for code in "${codes[@]}"; do
  # 5: a session that selected no test (-m unit selects none of one side, say); the other one counts
  if [ "$code" != 0 ] && [ "$code" != 5 ]; then status=$code; fi
done
if [ "${codes[0]}" = 5 ] && [ "${codes[1]}" = 5 ]; then status=5; fi
exit "$status"
