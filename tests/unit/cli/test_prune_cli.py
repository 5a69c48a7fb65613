"""`serve-bench prune` from the command line: results, bad input, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_models

pytestmark = pytest.mark.system  # runs `python -m serve_bench` in subprocesses


def sb(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serve_bench", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "tiny-llama"
    tiny_models.build("llama", path)
    return path


def assert_clean_error(proc, code: int, *fragments: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in proc.stderr, proc.stderr


def test_prune_several_fractions_after_one_flag(llama, tmp_path):
    proc = sb("prune", str(llama), "--prune", "0.25", "0.5", "--divisor", "0", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for label, k in (("p25", 72), ("p50", 48)):
        cfg = json.loads((tmp_path / f"tiny-llama-ppm-{label}" / "config.json").read_text())
        assert cfg["intermediate_size"] == k
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-llama-ppm-p25", "tiny-llama-ppm-p50"]


def test_help_on_every_subcommand():
    for cmd in ([], ["prune"], ["model"]):
        proc = sb(*cmd, "--help")
        assert proc.returncode == 0 and "Usage:" in proc.stdout
    assert sb("--version").stdout.startswith("serve-bench, version")


def test_missing_path(tmp_path):
    assert_clean_error(sb("prune", str(tmp_path / "nope"), "--prune", "0.1"), 3, "does not exist")


def test_not_a_checkpoint(tmp_path):
    assert_clean_error(sb("prune", str(tmp_path), "--prune", "0.1"), 3, "no config.json")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    assert_clean_error(sb("prune", str(tmp_path), "--prune", "0.1"), 3, "reads safetensors")


def test_unsupported_architecture(tmp_path):
    tiny_models.build("mixtral", tmp_path / "moe")
    assert_clean_error(sb("prune", str(tmp_path / "moe"), "--prune", "0.1", "--out", str(tmp_path / "o")), 3,
                       "mixture-of-experts")


@pytest.mark.parametrize("value", ["1.0", "1.5"])
def test_fraction_outside_range(llama, tmp_path, value):
    assert_clean_error(sb("prune", str(llama), "--prune", value, "--out", str(tmp_path)), 2, "outside [0, 1)")


def test_k_below_one(llama, tmp_path):
    assert_clean_error(sb("prune", str(llama), "--expansion-ratio", "0.001", "--divisor", "0", "--out",
                          str(tmp_path)), 2, "k must be at least 1")


def test_no_target_and_unknown_criterion(llama, tmp_path):
    assert_clean_error(sb("prune", str(llama), "--out", str(tmp_path)), 2, "no pruning target")
    proc = sb("prune", str(llama), "--prune", "0.1", "--criterion", "random")
    assert proc.returncode == 2 and "maw" in proc.stderr


def test_existing_output_needs_overwrite(llama, tmp_path):
    args = ("prune", str(llama), "--prune", "0.5", "--divisor", "0", "--out", str(tmp_path))
    assert sb(*args).returncode == 0
    marker = tmp_path / "tiny-llama-ppm-p50" / "stale.txt"
    marker.write_text("old")
    assert_clean_error(sb(*args), 4, "already exists", "--overwrite")
    assert marker.exists()
    assert sb(*args, "--overwrite").returncode == 0
    assert not marker.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-llama-ppm-p50"]


def test_offline_hub_id():
    assert_clean_error(sb("prune", "someone/some-model", "--prune", "0.1"), 3, "HF_HUB_OFFLINE is set")


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk_before_writing(llama, small_disk):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    big = llama.parent / "big"
    tiny_models.build("llama", big)
    # a second shard makes 2.4 MB of weights, which cannot fit on a 1 MB disk
    (big / "model.safetensors").rename(big / "model-00001-of-00002.safetensors")
    save_file({"filler": torch.zeros(600_000)}, big / "model-00002-of-00002.safetensors")
    with safe_open(big / "model-00001-of-00002.safetensors", "pt") as f:
        weight_map = {k: "model-00001-of-00002.safetensors" for k in f.keys()}
    weight_map["filler"] = "model-00002-of-00002.safetensors"
    (big / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    proc = sb("prune", str(big), "--prune", "0.1", "--out", str(small_disk))
    assert_clean_error(proc, 4, "GB free")
    assert list(small_disk.iterdir()) == []


def test_full_disk_while_writing(llama, tmp_path, small_disk):
    src = tmp_path / "with-big-tokenizer"
    tiny_models.build("llama", src)
    (src / "tokenizer.json").write_bytes(b"x" * 2_000_000)  # weights fit, the copied tokenizer does not
    proc = sb("prune", str(src), "--prune", "0.1", "--out", str(small_disk))
    assert_clean_error(proc, 4, "disk filled")
    assert list(small_disk.iterdir()) == [], "no partial checkpoint may remain"


def test_unwritable_output(llama):
    assert_clean_error(sb("prune", str(llama), "--prune", "0.1", "--out", "/proc/serve-bench-nope"), 4,
                       "cannot create the output directory")
