#!/usr/bin/env python
"""What the live display costs the process that runs the load: one redraw, timed, times 4 a second.

    .venv/bin/python scripts/bench_live_view.py [--records 5000] [--finished 30] [--redraws 200]

Fills an exporter with ``--records`` finished requests of a running stage and reports ``--finished``
finished stages to the display (each printed once, as a row), then renders the whole display (as
rich's refresh thread does, into a 160-column terminal held in memory) ``--redraws`` times. Prints
ms per redraw and the share of one core that 4 redraws a second take. Each redraw also folds the
records that arrived since the last one into the exporter; that work is the exporter's
(scripts/bench_exporter.py), done once whoever asks first.
"""

from __future__ import annotations

import argparse
import io
import time

from rich.console import Console
from synthetic import streamed

from serve_bench.cli.views import LiveView
from serve_bench.observe.energy import NotMeasured
from serve_bench.observe.observer import Observer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--finished", type=int, default=30)
    ap.add_argument("--redraws", type=int, default=200)
    a = ap.parse_args()
    observer = Observer(slos_ms={"ttft_ms": 1000}, meter=NotMeasured("benchmark"))  # not started: no port
    live, exporter = observer.live, observer.exporter
    live.checkpoint = "base"
    live.begin("p", "c64", "concurrency", {"users": 64, "requests": 2 * a.records}, lambda: 64, lambda: 0.6)
    t0 = time.time()
    for i in range(a.records):
        exporter.observe(streamed(i, "c64", t0), "base")
    exporter.fold()
    console = Console(file=io.StringIO(), width=160, force_terminal=True, color_system="truecolor")
    view = LiveView(console, a.finished + 1, 600.0)
    view.observing(observer)
    view.checkpoint_started("base", 0, 1)
    summary = {"completed": 64, "failed": 0, "output_throughput": 123.4, "median_ttft_ms": 210.0,
               "median_tpot_ms": 30.1, "latency_from": "send"}
    for k in range(a.finished):
        view.stage_done("base", {"stage": f"c{k}", "summary": summary})
    start = time.perf_counter()
    for _ in range(a.redraws):
        console.print(view.render())
    per = (time.perf_counter() - start) / a.redraws
    print(f"one redraw: {per * 1000:.2f} ms ({a.finished} finished stages, a stage of {a.records} records); "
          f"4 redraws/s: {per * 4:.1%} of one core")


if __name__ == "__main__":
    main()
