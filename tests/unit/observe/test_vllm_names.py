"""The dashboards take the vLLM metric names a server exports: an older release's name stands in where the
dashboards' (vLLM 0.32's) is missing, and a name neither matches is a warning, never a silently empty panel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from serve_bench.observe import vllm_names as v

pytestmark = pytest.mark.unit
SCRAPE_032 = Path(__file__).resolve().parents[3] / "scripts" / "data" / "vllm-0.32-cpu-metrics.txt"


def as_older_release(text: str) -> str:
    """0.32's scrape as vLLM 0.10 named it: the renamed series under their old names, and no per-request TPOT
    histogram (0.11 added it)."""
    for new, old in v.OLDER.items():
        text = text.replace(new, old)
    return "\n".join(line for line in text.splitlines() if "request_time_per_output_token" not in line) + "\n"


def test_the_dashboards_match_vllm_032_exactly():
    assert v.check_text(SCRAPE_032.read_text()) == {"renamed": [], "missing": []}


def test_an_older_servers_names_stand_in_and_what_it_lacks_is_named():
    got = v.check_text(as_older_release(SCRAPE_032.read_text()))
    assert any("vllm:kv_cache_usage_perc → vllm:gpu_cache_usage_perc" in r for r in got["renamed"])
    assert any("vllm:inter_token_latency_seconds_bucket → vllm:time_per_output_token_seconds_bucket" in r
               for r in got["renamed"])
    assert got["missing"] and all("request_time_per_output_token_seconds_bucket" in m for m in got["missing"])
    assert v.check_text("# nothing\n") is None


def test_adapt_renames_whole_names_only():
    expr = "rate(vllm:prefix_cache_hits_total[1m]) / rate(vllm:prefix_cache_queries_total[1m])"
    have = {"vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"}
    out, renamed, missing = v.adapt(expr, have, {"vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"})
    assert out == "rate(vllm:gpu_prefix_cache_hits_total[1m]) / rate(vllm:gpu_prefix_cache_queries_total[1m])"
    assert len(renamed) == 2 and missing == []


def test_the_dashboards_command_writes_the_servers_names_and_warns(tmp_path):
    from serve_bench.cli.main import cli

    scrape = tmp_path / "old.txt"
    scrape.write_text(as_older_release(SCRAPE_032.read_text()))
    result = CliRunner().invoke(cli, ["dashboards", "--out", str(tmp_path / "obs"), "--vllm-metrics", str(scrape)])
    assert result.exit_code == 0, result.output
    assert "renamed for this server:" in result.output and "vllm:gpu_cache_usage_perc" in result.output
    assert "warning: this server does not export vllm:request_time_per_output_token_seconds_bucket" in result.output
    board = (tmp_path / "obs" / "grafana" / "dashboards" / "vllm.json").read_text()
    assert "vllm:gpu_cache_usage_perc" in board and "vllm:kv_cache_usage_perc" not in board
    json.loads(board)
    bad = CliRunner().invoke(cli, ["dashboards", "--out", str(tmp_path / "x"), "--vllm-metrics", str(tmp_path)])
    assert bad.exit_code == 2 and "--vllm-metrics" in bad.output
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    gone = CliRunner().invoke(cli, ["dashboards", "--out", str(tmp_path / "y"), "--vllm-metrics",
                                    f"http://127.0.0.1:{closed}/metrics"])
    assert gone.exit_code == 2 and "no /metrics answered there" in gone.output and "Traceback" not in gone.output
