from __future__ import annotations

# Locust, which the load tests import, monkey-patches the process with gevent
# when imported; patching after ssl/requests are loaded ends in ssl recursion
# errors, so patch first, as Locust's own entry point does.
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# tests import their helpers (tiny_models…) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config, items) -> None:
    # marks add up: a module's `pytestmark = pytest.mark.unit` plus a test's own
    # `system` mark would leave that test in `-m unit`; mixed modules mark each test
    both = [item.nodeid for item in items if item.get_closest_marker("unit") and item.get_closest_marker("system")]
    if both:
        raise pytest.UsageError("marked both unit and system (mark each test of a mixed module instead):\n  "
                                + "\n  ".join(both))
