from __future__ import annotations

# Locust, which the load tests import, monkey-patches the process with gevent
# when imported; patching after ssl/requests are loaded ends in ssl recursion
# errors, so patch first, as Locust's own entry point does.
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# tests import their helpers (tiny_models…) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))
