"""``serve-bench bench``: a `vllm bench serve` command line run by serve-bench (translate.py), kept as a normal
run directory (so ``summarize``, ``report`` and ``compare`` read it), its result also written in vLLM's format
(result.py): ``vllm-result.json`` in the run directory and, with ``--save-result``, vLLM's file name in
``--result-dir``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from serve_bench.errors import ServerError
from serve_bench.measure.records import read_records
from serve_bench.report.build import json_safe
from serve_bench.rundir import RunDir, write_json
from serve_bench.study import StudySpec
from serve_bench.validation import validate
from serve_bench.vllm_bench.args import BenchArgs
from serve_bench.vllm_bench.result import default_filename, result_json
from serve_bench.vllm_bench.translate import STAGE, profile_data, study_data

RESULT = "vllm-result.json"


def bench(a: BenchArgs, events: Any = None) -> tuple[dict[str, Any], Path, Path | None]:
    """Run it; (the result in vLLM's format, the run directory, the saved result file or None)."""
    from serve_bench.pipeline import run_study, served_fleet  # torch and vLLM's world: not for --help

    name, root = served_fleet([a.url], a.served_model_name or a.model, None)  # a server that is not there: here
    tokenizer = a.tokenizer or root
    out_dir = Path(a.result_dir) if a.result_dir else Path("runs")
    with tempfile.TemporaryDirectory(prefix="serve-bench-bench-") as tmp:
        profile = Path(tmp) / "bench.yaml"
        profile.write_text(yaml.safe_dump(profile_data(a, Path(tmp), tokenizer), sort_keys=False))
        data = study_data(a, profile, out_dir)
        data["server"]["served_model"] = name
        study = validate(StudySpec, data, "serve-bench bench")
        outcome = run_study(study, events)
    run = RunDir(outcome.run_dir)
    if not outcome.rows:
        raise ServerError("no stage finished: " + ("; ".join(outcome.problems) or "see the run directory"))
    [ck] = run.checkpoints()
    records = [r for r in read_records(run.records_path(ck)) if r.stage == STAGE]
    [stage] = [s for s in run.stage_results(ck) if s.stage == STAGE]
    extras = {"run_dir": str(run.path), "stage": stage.model_dump(mode="json").get("summary"),
              "flags": stage.flags, "problems": outcome.problems}
    result = result_json(a, records, model_id=a.model or name, tokenizer_id=a.tokenizer or a.model or name,
                         slo_ms=dict(study.slo), extras=extras)
    result = json_safe(result)  # NaN (an empty stage's figure) is JSON's null
    text = json.dumps(result, allow_nan=False, default=str)
    write_json(run.path / RESULT, result)
    saved = None
    if a.save_result:
        folder = Path(a.result_dir) if a.result_dir else Path(".")
        folder.mkdir(parents=True, exist_ok=True)
        saved = folder / (a.result_filename or default_filename(a, a.model or name, result["date"]))
        saved.write_text(text)
    return result, run.path, saved
