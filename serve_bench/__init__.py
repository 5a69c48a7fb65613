"""serve-bench: is a width-pruned model worth serving, and on how much hardware?"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from serve_bench.errors import ServeBenchError

try:
    __version__ = version("serve-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["ServeBenchError", "__version__"]
