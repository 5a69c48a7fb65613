"""`serve-bench run --dry-run`: the plan and its estimate, validated like a run, with nothing created."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_models
from click.testing import CliRunner
from shared_data import datasets_dir

from serve_bench.workload.profiles import list_profiles, load_profile

pytestmark = pytest.mark.system  # the CLI imports torch (through the study and the pruner)


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """An empty serve-bench cache: the bundled model is not converted, nothing is pruned."""
    path = tmp_path / "home"
    monkeypatch.setenv("SERVE_BENCH_HOME", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return path


def dry(*args: str):
    from serve_bench.cli.main import cli, expand_variadic

    result = CliRunner().invoke(cli, expand_variadic(["run", "--dry-run", *args]), catch_exceptions=False)
    return result


def rows(output: str, profile: str) -> dict[str, tuple[str, str]]:
    """The stage table of one profile: stage name → (requests, time), read by column."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"profile {profile}:"))
    header = next(line for line in lines[start + 1:] if line.lstrip().startswith("#"))  # after the description
    req_end, time_end = header.index("requests") + len("requests"), len(header)
    out = {}
    for line in lines[start + 2:]:
        if line.strip().startswith("requests:"):
            break
        if line[:4].strip().isdigit():
            out[line[6:22].strip()] = (line[req_end - 12:req_end].strip(), line[req_end + 1:time_end + 2].strip())
    return out


def test_default_study_plan_converts_prunes_and_starts_nothing(home, tmp_path) -> None:
    out = tmp_path / "runs"
    result = dry("--out", str(out))
    assert result.exit_code == 0, result.output
    text = result.output
    for name in ("smollm2-135m-instruct", "smollm2-135m-instruct-ppm-p20", "smollm2-135m-instruct-ppm-p40"):
        assert f". {name}\n" in text
    assert "not converted yet: will be converted" in text
    assert text.count("not in the cache: will be pruned") == 2
    assert "p20: k=1280 of 1536" in text and "p40: k=896 of 1536" in text
    assert "convert the bundled model" in text and "prune 2 checkpoint(s)" in text
    quick = load_profile("quick")
    table = rows(text, "quick")
    assert list(table) == ["c1", "c4", "c16"]
    assert table["c16"][0] == str(quick.stages[0].requests + quick.warmup.requests)  # request-bound: exact
    assert table["c1"][0].startswith("≈")  # one user cannot send 48 in 15 s: estimated
    assert "estimated wall time" in text and "--enforce-eager" in text
    assert not out.exists(), "a dry run creates no run directory"
    assert not home.exists(), "nor converts or prunes anything into the cache"


def test_the_dichotomy_benchmark_study_plans_its_subsets_and_pruned_copies_apart(home, tmp_path) -> None:
    study = Path(__file__).resolve().parents[3] / "scripts" / "studies" / "dichotomy-cpu.yaml"
    result = dry(str(study), "--data-dir", str(datasets_dir()), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert "arc_challenge 1172, wikitext 12, gsm8k 150, truthfulqa_mc2 150, ifeval 40, mmlu 57 items" in result.output
    evals = [re.search(r"evaluation (\d+ min \d+)", line).group(1) for line in result.output.splitlines()
             if ": vLLM start" in line]
    assert len(evals) == 4 and len(set(evals[1:])) == 1 and evals[0] != evals[1]  # base, then three pruned copies


@pytest.mark.parametrize("name", list_profiles())
def test_each_shipped_profile(home, tmp_path, name) -> None:
    result = dry("--no-prune", "--profile", name, "--out", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    profile = load_profile(name)
    table = rows(result.output, name)
    expanded = profile.expanded_stages()
    expected = []
    for s in expanded:
        expected += [f"{s.name}-sync", f"{s.name}-throughput", *(f"{s.name}-{k + 1}" for k in range(s.rates))] \
            if s.kind == "sweep" else [s.name]
    assert list(table) == expected
    turns = round(profile.conversation.turns.mean()) if profile.conversation else 1  # a request per turn
    for s in expanded:
        if s.kind == "concurrency" and s.requests and not table[s.name][0].startswith("≈"):
            assert table[s.name][0] == str((s.requests + (s.warmup.requests if s.warmup else 0)) * turns)
        if s.kind in ("rate", "replay"):
            assert table[s.name][0].isdigit()  # a seeded schedule: exact
    assert not (tmp_path / "runs").exists()


def test_cached_pruned_copy_is_reused_and_a_new_one_pruned(tmp_path, monkeypatch) -> None:
    from serve_bench.models.checkpoint import Checkpoint
    from serve_bench.models.resolve import ResolvedModel
    from serve_bench.prune import Target, prune

    monkeypatch.setenv("SERVE_BENCH_HOME", str(tmp_path / "home"))
    src = tmp_path / "tiny-llama"
    tiny_models.build("llama", src)
    cache = tmp_path / "ck"
    prune(ResolvedModel("tiny-llama", src, "local"), [Target(prune=0.5)], out=cache, divisor=0,
          source_sha256=Checkpoint.open(src).checksum())
    study = tmp_path / "study.yaml"
    study.write_text(f"models: [{{model: {src}}}]\nprune: {{prune: [0.5, 0.25], divisor: 0}}\n"
                     f"checkpoints_dir: {cache}\nout_dir: {tmp_path / 'runs'}\n")
    before = sorted(p.name for p in cache.iterdir())
    result = dry(str(study))
    assert result.exit_code == 0, result.output
    text = result.output
    assert "tiny-llama-ppm-p50\n     pruned, p50: k=48 of 96" in text
    assert "same source and settings: reused" in text
    assert "tiny-llama-ppm-p25\n     pruned, p25: k=72 of 96" in text and "will be pruned" in text
    assert "prune 1 checkpoint(s)" in text
    assert sorted(p.name for p in cache.iterdir()) == before
    # the weights change: the cached copy no longer matches
    tiny_models.build("llama", src, seed=1)
    assert "comes from other weights: will be pruned again" in dry(str(study)).output


def test_earlier_run_in_out_dir_supplies_measured_stage_times(home, tmp_path) -> None:
    from serve_bench.environment import _cpu_model

    quick = load_profile("quick")
    run = tmp_path / "runs" / "20260101-000000-default"
    (run / "smollm2-135m-instruct" / "stages").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({
        "hardware": {"cpu_model": _cpu_model(), "logical_cpus": __import__("os").cpu_count()},
        "profiles": [quick.model_dump(mode="json")]}))
    (run / "smollm2-135m-instruct" / "checkpoint.json").write_text(json.dumps({"name": "smollm2-135m-instruct"}))
    (run / "smollm2-135m-instruct" / "stages" / "01-c1.json").write_text(json.dumps({
        "checkpoint": "smollm2-135m-instruct", "profile": "quick", "stage": "c1", "kind": "concurrency",
        "target": {"users": 1}, "started_s": 0.0, "ended_s": 77.0, "warmup_end_s": None, "records": 31,
        "summary": {"warmup_excluded": 1}}))
    result = dry("--no-prune", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert rows(result.output, "quick")["c1"] == ("31", "77 s*")
    assert "were measured in" in result.output and str(run) in result.output
    # --out names the run directory itself: earlier runs are looked for beside it
    beside = dry("--no-prune", "--out", str(tmp_path / "runs" / "next"))
    assert f"results would go to {tmp_path / 'runs' / 'next'}\n" in beside.output
    assert rows(beside.output, "quick")["c1"] == ("31", "77 s*")
    assert "a real run would refuse it" not in beside.output
    occupied = dry("--no-prune", "--out", str(run))
    assert "already exists and is not empty: a real run would refuse it" in occupied.output


def assert_clean(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in result.output, result.output


def test_bad_input_fails_as_a_run_does(home, tmp_path) -> None:
    out = tmp_path / "runs"
    assert_clean(dry("--profile", "nonesuch", "--out", str(out)), 2, "nonesuch", "quick", "ladder")
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p\ninput_tokens: 8\noutput_tokens: 8\nstages:\n  - {kind: rate, rate_rps: -1, requests: 3}\n")
    assert_clean(dry("--profile", str(bad), "--out", str(out)), 2, "p.yaml: stages[0].rate_rps")
    assert_clean(dry("--slo", "latency=3", "--out", str(out)), 2, "unknown SLO 'latency'")
    assert_clean(dry("--model", str(tmp_path / "no-model"), "--no-prune", "--out", str(out)), 3, "does not exist")
    assert_clean(dry("--prune", "1.5", "--out", str(out)), 2, "outside [0, 1)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert_clean(dry("--no-prune", "--port", str(port), "--out", str(out)), 2, f"port {port}", "already in use")
    assert not out.exists()


@pytest.mark.parametrize("module", ["serve_bench.plan", "serve_bench.study", "serve_bench.prune"])
def test_planning_and_reading_a_study_import_no_torch(module: str) -> None:
    # a fresh interpreter: this one has imported torch for the CLI
    code = f"import sys, {module}; sys.exit('torch' in sys.modules or 'locust' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_repeats_are_counted_in_the_plan_and_its_estimate(home, tmp_path) -> None:
    def total_s(text: str) -> float:
        m = re.search(r"estimated wall time: (?:(\d+) min )?(\d+) s", text)
        return 60 * int(m.group(1) or 0) + int(m.group(2))

    once = dry("--no-prune", "--no-eval", "--out", str(tmp_path / "runs"))
    thrice = dry("--no-prune", "--no-eval", "--repeats", "3", "--cooldown", "20", "--out", str(tmp_path / "runs"))
    assert once.exit_code == 0 and thrice.exit_code == 0, thrice.output
    assert "× 3 trials)" in thrice.output and "cool-down between trials (2 × 20 s)" in thrice.output
    said = " ".join(thrice.output.split())  # the notes are wrapped
    assert "every stage runs 3 times" in said and "accuracy" not in said.split("3 trials:")[1]
    assert total_s(thrice.output) > 2.5 * total_s(once.output)
    bad = dry("--repeats", "0", "--out", str(tmp_path / "runs"))
    assert bad.exit_code == 2 and "repeats" in bad.output
