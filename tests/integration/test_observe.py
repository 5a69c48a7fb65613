"""Live observability against the real thing: a real run on the bundled model, scraped by a real Prometheus;
every panel query of every shipped dashboard must return data from it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_run import only_run_dir, serve_bench

from serve_bench.observe.dashboards import DASHBOARDS, panel_queries
from serve_bench.serve.server import free_port

pytestmark = pytest.mark.integration


def get_json(url: str, timeout: float = 10.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def prometheus(tmp_path):
    """Start Debian's prometheus on a free loopback port with the given scrape targets."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed; scripts/test.sh installs Debian's package (apt-get install "
                    "prometheus)")
    procs = []

    def start(targets: dict[str, str]) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                               for job, target in targets.items()]}))
        log = open(tmp_path / "prometheus.log", "w")
        procs.append(subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{port}"], stdout=log,
                                      stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 60, "prometheus")
        return url

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=30)


def query_range(prom: str, expr: str, start: float, end: float) -> list:
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 1})
    data = get_json(f"{prom}/api/v1/query_range?{q}")
    assert data["status"] == "success", (expr, data)
    return data["data"]["result"]


def test_every_dashboard_query_returns_data_from_a_real_run(base_server, base_model_path, prometheus, tmp_path):
    metrics_port = free_port()
    exporter = f"127.0.0.1:{metrics_port}"
    vllm = base_server.url.removeprefix("http://")
    prom = prometheus({"serve-bench": exporter, "vllm": vllm})
    profile = tmp_path / "observe.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "observe", "api": "chat", "input_tokens": 64, "output_tokens": 16, "seed": 9,
        "warmup": {"requests": 1}, "timeout_s": 60,
        "stages": [{"kind": "concurrency", "name": "c2", "users": 2, "duration_s": 8},
                   {"kind": "rate", "name": "r2", "rate_rps": 2, "arrivals": "constant", "duration_s": 6,
                    "warmup": {"requests": 0}}]}))
    t0 = time.time()
    proc = serve_bench("run", "--no-eval", "--url", base_server.url, "--tokenizer", str(base_model_path), "--profile",
                       str(profile), "--runs-dir", str(tmp_path / "runs"), "--metrics-port", str(metrics_port),
                       "--slo", "ttft_ms=10000", "--slo", "tpot_ms=1000")
    # while it runs, the exporter answers with live serve_bench_ metrics (what `curl` would show)
    live = {}

    def live_metrics() -> bool:
        text = urllib.request.urlopen(f"http://{exporter}/metrics", timeout=2).read().decode()
        live["text"] = text
        return 'serve_bench_requests_total{checkpoint="default"' in text and "serve_bench_stage_info" in text

    wait_until(live_metrics, 240, "live metrics from the exporter")
    assert proc.poll() is None, "the run ended before its metrics were seen live"
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert f"live metrics: http://{exporter}/metrics" in out
    time.sleep(2)  # Prometheus's last scrapes land
    t1 = time.time()
    run = only_run_dir(tmp_path / "runs")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["metrics_url"] == f"http://{exporter}/metrics"

    missing = []
    for dashboard in DASHBOARDS:
        for title, expr in panel_queries(dashboard):
            if not query_range(prom, expr, t0, t1):
                missing.append(f"{Path(dashboard).name}: {title}: {expr}")
    assert not missing, "panel queries without data:\n" + "\n".join(missing)
    # the check can fail: a metric nobody exports has no data
    assert query_range(prom, "rate(serve_bench_no_such_metric_total[30s])", t0, t1) == []

    # the server's time series and the reconciliation are in the run directory
    series = (run / "default" / "server_metrics" / "timeseries.jsonl").read_text().splitlines()
    assert len(series) >= 3
    assert any(k.startswith("vllm:generation_tokens_total{") for k in json.loads(series[-1])["samples"])
    stages = {json.loads(p.read_text())["stage"]: json.loads(p.read_text())
              for p in (run / "default" / "stages").glob("*.json")}
    for stage in stages.values():
        server = stage["server"]
        assert server["available"] and server["requests"]["difference"] == 0, server
        assert server["generation_tokens"]["difference"] == 0 and server["prompt_tokens"]["difference"] == 0
        assert server["median_ttft_ms"]["server"] is not None
