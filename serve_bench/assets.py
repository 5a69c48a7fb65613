"""Where the shipped files are: the load profiles and the dashboards.

They live at the top of the repository (``load_profiles/``, ``dashboards/``) and the wheel carries them as
the data packages ``serve_bench.load_profiles`` and ``serve_bench.dashboards`` (pyproject.toml maps the
folders). An installed copy, wheel or editable, finds them through the import system; a checkout put on
``sys.path`` without an install finds them beside the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

LOAD_PROFILES = "load_profiles"
DASHBOARDS = "dashboards"


def asset_dir(name: str) -> Path:
    """The folder of the shipped data package ``serve_bench.<name>``."""
    spec = importlib.util.find_spec(f"serve_bench.{name}")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / name
