"""The pruning-dichotomy table across a run's checkpoints, from what the run directory holds:
parameters, expansion ratio and pruning (checkpoint.json), each task's score ± stderr and its change
against the base model (<checkpoint>/eval/results.json), the serving columns at one stated stage
(summary.json), and Pearson correlations between knowledge and instruction/truthfulness scores when
there are enough checkpoints for them to mean anything."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_bench.errors import ConfigError
from serve_bench.evaluate.results import read_results
from serve_bench.evaluate.tasks import TASKS
from serve_bench.rundir import EVAL_DIR, SUMMARY, CheckpointFile, RunDir, read_json, read_model, write_json

TABLE_MD = "dichotomy.md"
TABLE_JSON = "dichotomy.json"
# Pearson r over n checkpoints has n - 2 degrees of freedom: with 3 (the default study) one point
# more than a line needs; below 5 the table states the correlation is not computed.
MIN_CHECKPOINTS_FOR_R = 5
KNOWLEDGE = ("mmlu", "gsm8k", "arc_challenge", "wikitext")
BEHAVIOUR = ("truthfulqa_mc2", "truthfulqa_mc1", "ifeval")
# (title, summary.json key, format)
SERVING = [("out tok/s", "output_throughput", "{:.1f}"), ("TTFT p50 ms", "ttft_p50_ms", "{:.0f}"),
           ("TPOT p50 ms", "median_tpot_ms", "{:.1f}"), ("J/out tok", "energy_per_output_token_joules", "{:.3g}")]


@dataclass
class Dichotomy:
    markdown: str
    data: dict[str, Any]

    def write(self, directory: Path) -> None:
        write_json(directory / TABLE_JSON, self.data)
        (directory / TABLE_MD).write_text(self.markdown)


def dichotomy_table(run_dirs: Path | Sequence[Path], stage: str | None = None, write: bool = True,
                    out_dir: Path | None = None) -> Dichotomy:
    """The table across the checkpoints of one run, or of several side by side (a study split over
    runs: checkpoints served on different days, the rest of an interrupted study), labelled
    ``run:checkpoint`` as the report labels them; the base is the first unpruned checkpoint.
    ``stage``: the load stage whose serving figures are shown (default: the base model's last).
    Written to ``out_dir`` (default: the run's directory; needed with several)."""
    runs = [Path(run_dirs)] if isinstance(run_dirs, str | Path) else [Path(p) for p in run_dirs]
    if write and out_dir is None and len(runs) != 1:
        raise ConfigError("the dichotomy table of several runs needs a directory to go to",
                          hint="pass out_dir (serve-bench report: --out)")
    rows, summaries = [], []
    for run in runs:
        summary = _summary_rows(run)
        for name in RunDir(run).checkpoints():
            row = _checkpoint_row(run / name)
            if len(runs) > 1:
                row["label"] = f"{run.name}:{row['label']}"
                row["run"] = str(run)
            rows.append(row)
            summaries.append([r for r in summary if r.get("checkpoint") == name])
    base = next((r for r in rows if not r["_pruning"]), rows[0] if rows else None)
    tasks = [t for t in TASKS if any(t in r["scores"] for r in rows)]
    _fill_base_size(rows)
    for r in rows:
        for t in tasks:
            s = r["scores"].get(t)
            b = base["scores"].get(t) if base else None
            if s and b and s.get("value") is not None and b.get("value") is not None and r is not base:
                s["vs_base"] = s["value"] - b["value"]
    if stage is None:  # the base's last stage, else the last of any
        stages = [r.get("stage") for r in summaries[rows.index(base)]] if base else []
        stages = stages or [r.get("stage") for rs in summaries for r in rs]
        stage = stages[-1] if stages else None
    for r, rs in zip(rows, summaries, strict=True):
        r["serving"] = next(({"load": x.get("load"), **{key: x.get(key) for _, key, _ in SERVING}}
                             for x in rs if x.get("stage") == stage), {})
    load = next((r["serving"]["load"] for r in rows if r["serving"].get("load")), None)
    data = {"checkpoints": rows, "tasks": tasks, "stage": stage, "load": load,
            "base": base["label"] if base else None, "correlations": correlations(rows, tasks)}
    table = Dichotomy(render(data), data)
    if write:
        table.write(out_dir or runs[0])
    return table


def _checkpoint_row(ck_dir: Path) -> dict[str, Any]:
    info = read_model(CheckpointFile, ck_dir / "checkpoint.json")
    res = read_results(ck_dir / EVAL_DIR) or {}
    p = info.pruning or None
    row = {"name": ck_dir.name, "label": info.label or info.name, "_pruning": p,
           "criterion": p.get("criterion") if p else None,
           "parameters": p.get("parameters_after") if p else None,
           "expansion_ratio": p.get("expansion_ratio") if p else None,
           "pruned": p.get("realised_prune") if p else 0.0,
           "requested_prune": (p.get("requested") or {}).get("prune") if p else None,
           "scores": {t: {k: v for k, v in s.items() if k != "metrics"} for t, s in res.get("tasks", {}).items()}}
    row["_path"] = info.path
    return row


def _fill_base_size(rows: list[dict[str, Any]]) -> None:
    """The unpruned model's size: from a pruned sibling's manifest, else its own weights and config."""
    before = next((r["_pruning"] for r in rows if r["_pruning"]), None)
    for r in rows:
        path = r.pop("_path", None)
        r.pop("_pruning")
        if r["parameters"] is not None:
            continue
        if before:
            r["parameters"] = before.get("parameters_before")
            r["expansion_ratio"] = before.get("expansion_ratio_before")
        elif path:
            r["parameters"], r["expansion_ratio"] = _size_from_disk(Path(path))


def _size_from_disk(path: Path) -> tuple[int | None, float | None]:
    try:
        cfg = json.loads((path / "config.json").read_text())
        cfg = cfg.get("text_config", cfg)
        ratio = cfg["intermediate_size"] / cfg["hidden_size"]
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        ratio = None
    from serve_bench.models.safetensors_stream import read_header  # pulls in torch: only when sizing from disk

    total = 0
    for f in sorted(path.glob("*.safetensors")):
        try:
            total += sum(info.numel for info in read_header(f)[0].values())
        except (OSError, ValueError):  # SafetensorsFormatError is a ValueError
            return None, ratio
    return total or None, ratio


def _summary_rows(run_dir: Path) -> list[dict[str, Any]]:
    try:
        return read_json(run_dir / SUMMARY).get("rows", [])
    except (OSError, ValueError, AttributeError):
        return []


def correlations(rows: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    """Pearson r (and its two-sided p-value) across checkpoints for each knowledge × behaviour pair."""
    n = len(rows)
    pairs = [(a, b) for a in KNOWLEDGE for b in BEHAVIOUR if a in tasks and b in tasks]
    if n < MIN_CHECKPOINTS_FOR_R:
        return {"computed": False, "min_checkpoints": MIN_CHECKPOINTS_FOR_R, "checkpoints": n, "pairs": [],
                "note": f"correlations need at least {MIN_CHECKPOINTS_FOR_R} checkpoints (this table has {n}); "
                        "not computed"}
    from scipy.stats import pearsonr

    out = []
    for a, b in pairs:
        xs = [(r["scores"][a]["value"], r["scores"][b]["value"]) for r in rows
              if r["scores"].get(a, {}).get("value") is not None and r["scores"].get(b, {}).get("value") is not None]
        if len(xs) < MIN_CHECKPOINTS_FOR_R or len({x for x, _ in xs}) < 2 or len({y for _, y in xs}) < 2:
            out.append({"x": a, "y": b, "n": len(xs), "r": None, "p": None})
            continue
        res = pearsonr([x for x, _ in xs], [y for _, y in xs])
        out.append({"x": a, "y": b, "n": len(xs), "r": float(res.statistic), "p": float(res.pvalue)})
    return {"computed": True, "min_checkpoints": MIN_CHECKPOINTS_FOR_R, "checkpoints": n, "pairs": out}


def _score_cell(s: dict[str, Any] | None, task: str) -> str:
    if not s or s.get("value") is None:
        return "–"
    ppl = not TASKS[task].higher_is_better
    text = f"{s['value']:.2f}" if ppl else f"{s['value']:.3f}"
    if s.get("stderr") is not None:
        text += f" ± {s['stderr']:.3f}"
    if s.get("vs_base") is not None:
        text += f" ({s['vs_base']:+.2f})" if ppl else f" ({s['vs_base']:+.3f})"
    return text


def render(data: dict[str, Any]) -> str:
    tasks = data["tasks"]
    head = ["checkpoint", "params (M)", "expansion ratio", "pruned"] + tasks + [t for t, _, _ in SERVING]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in data["checkpoints"]:
        pruned = f"{r['pruned'] * 100:.1f}%" if r.get("pruned") else "–"
        if r.get("requested_prune") is not None:
            pruned += f" (asked {r['requested_prune'] * 100:g}%)"
        cells = [r["label"], f"{r['parameters'] / 1e6:.1f}" if r.get("parameters") else "n/a",
                 f"{r['expansion_ratio']:.2f}" if r.get("expansion_ratio") else "n/a", pruned]
        cells += [_score_cell(r["scores"].get(t), t) for t in tasks]
        for _, key, fmt in SERVING:
            v = r["serving"].get(key)
            cells.append(fmt.format(v) if isinstance(v, int | float) else (str(v) if v else "–"))
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", "Scores: " + ", ".join(f"{t} {TASKS[t].metric.split(',')[0]}"
                                         + ("" if TASKS[t].higher_is_better else " (lower is better)")
                                         for t in tasks) + "; ± standard error; (change against "
             f"{data['base'] or 'the base model'}).",
             f"Serving columns: stage {data['stage'] or '–'}" + (f" ({data['load']})" if data.get("load") else "")
             + "; – where the run has no such stage."]
    limits = sorted({(t, s.get("limit")) for r in data["checkpoints"] for t, s in r["scores"].items()},
                    key=str)
    if any(lim is not None for _, lim in limits):
        notes.append("Subsets: " + ", ".join(f"{t} {lim} items" + (" per subject" if t == "mmlu" else "")
                                             for t, lim in limits if lim is not None)
                     + "; small subsets have large standard errors.")
    c = data["correlations"]
    if not c["computed"]:
        notes.append(c["note"][0].upper() + c["note"][1:] + ".")
    else:
        for p in c["pairs"]:
            notes.append(f"Pearson r({p['x']}, {p['y']}) = {p['r']:+.3f}, p = {p['p']:.3g} (n = {p['n']})"
                         if p["r"] is not None else f"Pearson r({p['x']}, {p['y']}): not defined (n = {p['n']}, "
                                                    "or a constant column)")
    return "\n".join(lines + notes) + "\n"
