"""`serve-bench dashboards` in-process: what it writes and says, and bad input as a message with exit code 2."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from serve_bench.observe.dashboards import TREE

# the command group imports every command, and `prune` imports torch: by this project's markers that makes
# these tests "system", though they start no subprocess
pytestmark = pytest.mark.system


def sb(*args: str):
    from serve_bench.cli.main import cli

    return CliRunner().invoke(cli, ["dashboards", *args])


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_writes_the_tree_and_says_what_next(tmp_path):
    result = sb("--out", str(tmp_path / "obs"), "--exporter", "127.0.0.1:9500", "--vllm", "127.0.0.1:8123")
    assert result.exit_code == 0, result.output
    assert all(rel in result.output for rel in TREE) and "docker compose up -d" in result.output
    prom = yaml.safe_load((tmp_path / "obs/prometheus/prometheus.yml").read_text())
    assert [j["static_configs"][0]["targets"] for j in prom["scrape_configs"]] == [["127.0.0.1:9500"],
                                                                                 ["127.0.0.1:8123"]]


def test_a_directory_with_files_needs_force(tmp_path):
    (tmp_path / "keep.txt").write_text("")
    assert_clean_error(sb("--out", str(tmp_path)), "not empty", "--force")
    assert not (tmp_path / "compose.yaml").exists()
    assert sb("--out", str(tmp_path), "--force").exit_code == 0
    assert (tmp_path / "compose.yaml").exists() and (tmp_path / "keep.txt").exists()


def test_an_unwritable_out(tmp_path):
    (tmp_path / "file").write_text("")
    assert_clean_error(sb("--out", str(tmp_path / "file")), "not a directory")
    assert_clean_error(sb("--out", str(tmp_path / "file" / "obs")), "cannot write")


@pytest.mark.parametrize("flag", ["--exporter", "--vllm"])
@pytest.mark.parametrize("bad", ["9464", "http://127.0.0.1:9464", "host:99999"])
def test_a_malformed_host_port(tmp_path, flag, bad):
    assert_clean_error(sb("--out", str(tmp_path / "obs"), flag, bad), flag, "HOST:PORT")
    assert not (tmp_path / "obs").exists()


def test_out_is_required():
    result = sb()
    assert result.exit_code == 2 and "--out" in result.output and "Traceback" not in result.output
