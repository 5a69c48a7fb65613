#!/usr/bin/env python
"""Do the observers disturb the load loop? ITL and TTFT with observers on and off, before and after the split.

A run of serve-bench has observers beside the load generator: the vLLM ``/metrics`` scraper, the energy
sampler (one tick a second), and the Prometheus exporter that folds every record and is scraped itself.
Before issue 17 they were greenlets on the load generator's own event loop; since, the load generator is a
process of its own (``python -m serve_bench.load.driver``) and the observers are threads of the
orchestrating process. This measures what they cost the timestamps of the streams:

    fake server   scripts/fake_openai_server.py, pinned to ``--server-core``, with known timing
                  (``--ttft-ms``, then one content chunk every ``--itl-ms``), serving at /metrics a scrape
                  recorded from vLLM 0.32 (scripts/data/vllm-0.32-cpu-metrics.txt, 374 series)
    client        one closed-loop stage of ``--users`` users, pinned to ``--client-core`` (the orchestrator
                  and, after the split, its load process share it), one warm-up wave first
    observers on  the /metrics scrape every ``--scrape-s`` s, the energy track ticking every second on a
                  fake counter (this machine has no GPU counter; the fake's read costs next to nothing, so
                  what is measured is the tick's scheduling and bookkeeping, not NVML's call), the exporter
                  fed every record and scraped every ``--scrape-s`` s by a process on the server's core
    observers off the same stage with none of them (the records are still written and read back)

``--before DIR`` names a checkout of the code before the split (``git worktree add DIR 4289e7d``); each
condition is run ``--repeats`` times, interleaved (before-off, before-on, after-off, after-on, …), so drift
hits all alike. Per run, from the records (warm-up left out) and the fake server's own timing log:

    ITL p50/p99/p99.9/max   every gap between consecutive content chunks; the truth is ``--itl-ms``
    TTFT error p50/p99      client TTFT minus ``--ttft-ms``
    server late p99         the fake server's own lateness of its first chunk (its noise, not the client's)

    .venv/bin/python scripts/bench_observers.py --before /tmp/sb-before --repeats 4 --out /tmp/sb-observers
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fake_openai_server import running  # noqa: E402 - this directory is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MODEL = "fake"
METRICS_REPLAY = Path(__file__).resolve().parent / "data" / "vllm-0.32-cpu-metrics.txt"
SCRAPE_LOOP = """
import sys, time, urllib.request
while True:
    t = time.monotonic()
    urllib.request.urlopen(sys.argv[1], timeout=5).read()
    time.sleep(max(0.0, float(sys.argv[2]) - (time.monotonic() - t)))
"""


# -- inner: one measurement, run pinned, with the code under test first on the path -------------------------------

def inner(a: argparse.Namespace) -> dict:
    split = (Path(a.code) / "serve_bench" / "load" / "process.py").exists()
    if not split:
        import serve_bench.load.runner as runner  # before the split: Locust, and its gevent patch, first
    import serve_bench
    from serve_bench.load.live import LiveStage
    try:  # load/ split by job (issue 17): what to send in workload/, the records in measure/
        from serve_bench.measure.records import RecordWriter, read_records
        from serve_bench.workload.profiles import profile_from_data
    except ImportError:
        from serve_bench.load.profiles import profile_from_data
        from serve_bench.load.records import RecordWriter, read_records
    from serve_bench.observe.energy import EnergyMeter, EnergyWindow
    from serve_bench.observe.energy_track import EnergyTrack
    from serve_bench.observe.exporter import Exporter
    from serve_bench.observe.server_metrics import ServerScraper

    class FakeCounter(EnergyMeter):
        """A GPU energy counter at a constant 300 W (the hardware boundary this machine lacks)."""

        def __init__(self) -> None:
            self.available, self.reason, self.devices, self.unmeasured = True, None, ["gpu0"], []
            self._open: dict[str, float] = {}

        def begin_window(self, key: str) -> None:
            self._open[key] = time.monotonic()

        def end_window(self, key: str) -> EnergyWindow:
            d = time.monotonic() - self._open.pop(key)
            return EnergyWindow(d, {"gpu0": 300.0 * d})

    tmp = Path(a.tmp)
    profile = profile_from_data({
        "name": "observers", "api": "chat", "input_tokens": 128, "output_tokens": a.output_len, "ignore_eos": True,
        "warmup": {"requests": a.users}, "timeout_s": 300,
        "stages": [{"kind": "concurrency", "users": a.users, "requests": a.requests + a.users}]})
    records_path = tmp / "records.jsonl"
    records_path.unlink(missing_ok=True)
    exporter = track = scraper = outside = None
    observe = None
    if a.observers == "on":
        exporter = Exporter(LiveStage(), {"ttft_ms": 1000})
        outside = subprocess.Popen(["taskset", "-c", a.server_core, PY, "-c", SCRAPE_LOOP,
                                    exporter.start("127.0.0.1", 0), str(a.scrape_s)])
        track = EnergyTrack(FakeCounter(), exporter)
        scraper = ServerScraper(a.url, None, tmp / "timeseries.jsonl", interval_s=a.scrape_s)
        (tmp / "timeseries.jsonl").unlink(missing_ok=True)
        track.start()
        scraper.start()

        def observe(r) -> None:
            exporter.observe(r, "fake")
    cpu0, kids0 = time.process_time(), _children_cpu_s()
    if split:
        from serve_bench.load.process import run_profile

        [result] = run_profile(profile, url=a.url, model=MODEL, records_path=records_path,
                               log_path=tmp / "loadgen.log", model_path=a.model_path, on_record=observe)
    else:
        writer = RecordWriter(records_path).open()

        def sink(r) -> None:
            writer.write(r)
            if observe is not None:
                observe(r)
        [result] = runner.run_profile(profile, url=a.url, model=MODEL, model_path=a.model_path, sink=sink)
        writer.close()
    cpu = time.process_time() - cpu0 + _children_cpu_s() - kids0
    scrapes = ticks = 0
    if a.observers == "on":
        scraper.stop()
        track.stop()
        outside.kill()
        exporter.close()
        scrapes, ticks = scraper.scrapes, len(track.times) - 1
    records = [r for r in read_records(records_path) if r.ok and not r.warmup]
    gaps = [(b - c) * 1000 for r in records for c, b in zip(r.chunk_times_s, r.chunk_times_s[1:])]
    ttft = [(r.first_token_s - r.send_s) * 1000 - a.ttft_ms for r in records if r.first_token_s is not None]
    return {"code": serve_bench.__file__, "split": split, "observers": a.observers, "requests": len(records),
            "gaps": len(gaps), "itl_ms": _quantiles(gaps), "ttft_error_ms": _quantiles(ttft),
            "duration_s": result.summary["duration"], "cpu_s": cpu, "scrapes": scrapes, "energy_ticks": ticks}


def _children_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _quantiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    v = np.asarray(values)
    return {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
            "p99.9": float(np.percentile(v, 99.9)), "max": float(v.max())}


# -- outer ----------------------------------------------------------------------------------------------------------

def measure(code: Path, observers: str, a: argparse.Namespace, url: str, timing_log: Path, tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "result.json"
    seen = _timing_lines(timing_log)
    cmd = ["taskset", "-c", a.client_core, PY, __file__, "--inner", "--code", str(code), "--observers", observers,
           "--url", url, "--users", str(a.users), "--requests", str(a.requests), "--output-len", str(a.output_len),
           "--ttft-ms", str(a.ttft_ms), "--scrape-s", str(a.scrape_s), "--server-core", a.server_core,
           "--model-path", a.model_path, "--tmp", str(tmp), "--result", str(out)]
    env = {**os.environ, "PYTHONPATH": str(code)}  # the checkout under test ahead of the editable install
    with open(tmp / "inner.log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=code, env=env)
    r = json.loads(out.read_text())
    lines = _timing_lines(timing_log)[len(seen):]
    late = [(t["first"] - t["recv"]) * 1000 - a.ttft_ms for t in lines]
    r["server_late_ms"] = _quantiles(late) if late else None
    return r


def _timing_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--requests", type=int, default=768, help="measured requests per run (a warm-up wave first)")
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--ttft-ms", type=float, default=100.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--scrape-s", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--before", type=Path, default=None, help="a checkout of the code before the split")
    ap.add_argument("--client-core", default="0")
    ap.add_argument("--server-core", default="1")
    ap.add_argument("--model-path", default=None, help="tokenizer for prompts (default: the bundled model)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sb-observers"))
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--code", help=argparse.SUPPRESS)
    ap.add_argument("--observers", choices=["on", "off"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inner:
        Path(a.result).write_text(json.dumps(inner(a)))
        return
    if a.model_path is None:
        from serve_bench.models.resolve import resolve

        a.model_path = str(resolve("default").path)
    a.out.mkdir(parents=True, exist_ok=True)
    codes = [("before", a.before.resolve())] if a.before else []
    codes.append(("after", ROOT))
    timing_log = a.out / "fake-timing.jsonl"
    timing_log.unlink(missing_ok=True)
    extra = ["--ttft-ms", str(a.ttft_ms), "--itl-ms", str(a.itl_ms), "--timing-log", str(timing_log),
             "--metrics-file", str(METRICS_REPLAY)]
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} load average {_loadavg()}", flush=True)
    results = []
    with running(a.out / "fake-server.log", cpus=a.server_core, model=MODEL, extra=extra) as (url, _):
        for rep in range(a.repeats):
            for name, code in codes:
                for observers in ("off", "on"):
                    r = measure(code, observers, a, url, timing_log, a.out / f"{name}-{observers}-{rep}")
                    r.update(code_name=name, repeat=rep, loadavg=_loadavg())
                    results.append(r)
                    print(f"{name:6} observers {observers:3} run {rep}: ITL p50 {r['itl_ms']['p50']:.2f} "
                          f"p99 {r['itl_ms']['p99']:.2f} p99.9 {r['itl_ms']['p99.9']:.2f} max {r['itl_ms']['max']:.1f}"
                          f" ms; TTFT error p50 {r['ttft_error_ms']['p50']:.2f} p99 {r['ttft_error_ms']['p99']:.2f}"
                          f" ms; server late p99 {r['server_late_ms']['p99']:.2f} ms; {r['requests']} requests, "
                          f"{r['scrapes']} scrapes, {r['energy_ticks']} ticks, load {r['loadavg']}", flush=True)
    (a.out / "results.json").write_text(json.dumps(results, indent=1))
    print("\nmean ± sd over runs (ms)")
    print("| code | observers | ITL p50 | ITL p99 | ITL p99.9 | ITL max | TTFT error p50 | TTFT error p99 "
          "| server late p99 | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, _ in codes:
        for observers in ("off", "on"):
            rs = [r for r in results if r["code_name"] == name and r["observers"] == observers]

            def ms(get) -> str:
                v = [get(r) for r in rs]
                return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
            print(f"| {name} | {observers} | {ms(lambda r: r['itl_ms']['p50'])} | {ms(lambda r: r['itl_ms']['p99'])} "
                  f"| {ms(lambda r: r['itl_ms']['p99.9'])} | {ms(lambda r: r['itl_ms']['max'])} "
                  f"| {ms(lambda r: r['ttft_error_ms']['p50'])} | {ms(lambda r: r['ttft_error_ms']['p99'])} "
                  f"| {ms(lambda r: r['server_late_ms']['p99'])} | {len(rs)} |")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
