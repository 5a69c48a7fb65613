from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
# The load generator's own tests run Locust in the test process, and Locust monkey-patches it with gevent;
# patching after ssl/requests are loaded ends in ssl recursion errors, so they run in a session of their
# own that patches first, as Locust's entry point does (scripts/test.sh runs both sessions). Every other
# test runs unpatched, as serve-bench's orchestrating process does.
LOADGEN_ENV = "SERVE_BENCH_TEST_LOADGEN"
LOADGEN_TESTS = ("unit/load", "integration/test_load.py", "integration/test_workloads.py")
LOADGEN_SESSION = os.environ.get(LOADGEN_ENV) == "1"

if LOADGEN_SESSION:
    from gevent import monkey

    monkey.patch_all()

import pytest  # noqa: E402

# tests import their helpers (tiny_models…) as top-level modules
sys.path.insert(0, str(HERE))
_left_out: list[str] = []


def is_loadgen_test(path: Path) -> bool:
    rel = path.resolve().relative_to(HERE.resolve()).as_posix()
    return any(rel == p or rel.startswith(p + "/") for p in LOADGEN_TESTS)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    try:
        loadgen = is_loadgen_test(collection_path)
    except ValueError:  # outside tests/
        return None
    if loadgen != LOADGEN_SESSION:
        _left_out.append(collection_path.name)
        return True
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _left_out and not LOADGEN_SESSION and os.environ.get(LOADGEN_ENV) != "0":
        terminalreporter.write_line(f"the load generator's tests ({len(_left_out)} files) run in a session of their "
                                    f"own, gevent-patched: scripts/test.sh runs both; alone: {LOADGEN_ENV}=1 pytest")


def pytest_collection_modifyitems(config, items) -> None:
    # marks add up: a module's `pytestmark = pytest.mark.unit` plus a test's own
    # `system` mark would leave that test in `-m unit`; mixed modules mark each test
    both = [item.nodeid for item in items if item.get_closest_marker("unit") and item.get_closest_marker("system")]
    if both:
        raise pytest.UsageError("marked both unit and system (mark each test of a mixed module instead):\n  "
                                + "\n  ".join(both))
