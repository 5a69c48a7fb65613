#!/usr/bin/env python
"""What one request costs the live exporter: records folded into its counters and histograms, per record.

    .venv/bin/python scripts/bench_exporter.py [--records 2000] [--chunks 64] [--repeats 5]

Builds completed records with ``--chunks`` content chunks each, hands them to an Exporter
(with one SLO, so the good-request mask runs too) and times ``fold()``; prints µs per record
(best of the repeats). Compare with the load generator's CPU per request (bench_loadgen.py).
"""

from __future__ import annotations

import argparse
import time

from synthetic import streamed

from serve_bench.load.live import LiveStage
from serve_bench.observe.exporter import Exporter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    t0 = time.time()
    records = [streamed(i, "s", t0, chunks=a.chunks) for i in range(a.records)]
    exporter = Exporter(LiveStage(checkpoint="bench"), {"ttft_ms": 1000})
    best = float("inf")
    for _ in range(a.repeats):
        for r in records:
            exporter.observe(r, "bench")
        start = time.perf_counter()
        exporter.fold()
        best = min(best, time.perf_counter() - start)
    print(f"fold: {best / a.records * 1e6:.1f} µs per record ({a.records} records of {a.chunks} chunks, "
          f"best of {a.repeats})")


if __name__ == "__main__":
    main()
