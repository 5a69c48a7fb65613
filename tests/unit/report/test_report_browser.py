"""The HTML report in a real headless Chromium (Debian's package, driven by Playwright), offline: no
network request but the file itself, no console error, every plot and table rendered, a screenshot that
is not blank."""

from __future__ import annotations

import numpy as np
import pytest
from report_browser import find_chromium, open_offline
from report_fixtures import measured_energy, write_run

from serve_bench.report import build_report

pytestmark = pytest.mark.system  # starts a browser


def test_report_opens_offline_and_renders(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.fail("no chromium: scripts/test.sh installs Debian's package (or set SERVE_BENCH_CHROMIUM)")

    def ladder(scale_s, j_per_token):
        return [(f"c{x}", x, [scale_s * x] * 12,
                 {"energy": measured_energy(j_per_token / x) if x < 8 else None, "stopped_early": x == 16})
                for x in (1, 2, 4, 8, 16)]

    run = write_run(tmp_path / "run", {
        "base": {"label": "base", "stages": ladder(0.1, 2.0), "accuracy": {"mmlu": (0.42, 0.01)}},
        "p20": {"label": "p20", "base": "base", "prune": 0.2, "stages": ladder(0.08, 1.7),
                "accuracy": {"mmlu": (0.39, 0.01)}},
        "p40": {"label": "p40", "base": "base", "prune": 0.4, "stages": ladder(0.05, 1.4),
                "accuracy": {"mmlu": (0.30, 0.01)}},
    }, study={"report": {"slo_ms": {"ttft_ms": 300, "tpot_ms": 100}, "bootstrap_resamples": 100}})
    files = build_report([run], tmp_path / "out")
    shot = tmp_path / "shot.png"
    page = open_offline(files.html, shot, chromium)
    assert page.requests == [files.html.resolve().as_uri()]
    assert page.console_errors == []
    assert page.plots == 5 and page.svgs >= 5 and page.tables >= 5
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] > 2000  # the whole page, every figure
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.01, "the screenshot is (nearly) blank"
