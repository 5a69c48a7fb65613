"""The comparison across checkpoints and stages, from what is in a run directory.

``collect`` reads the stage results the run wrote; ``recompute`` derives the
same summaries again from the raw records alone, which is how anyone can check
a printed number.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from serve_bench.measure.metrics import PERCENTILES, summarize
from serve_bench.measure.records import read_records
from serve_bench.rundir import SUMMARY, SUMMARY_CSV, RunDir, StageFile, write_json, write_text
from serve_bench.study import run_slos

# (column title, row key, format)
COLUMNS: list[tuple[str, str, str]] = [
    ("checkpoint", "label", "{}"),
    ("stage", "stage", "{}"),
    ("load", "load", "{}"),
    ("ok/failed", "ok_failed", "{}"),
    ("req/s", "request_throughput", "{:.2f}"),
    ("out tok/s", "output_throughput", "{:.1f}"),
    ("steady tok/s", "steady_output_throughput", "{:.1f}"),
    ("vs base", "output_throughput_vs_base", "{:.2f}x"),
    ("TTFT p50 ms", "ttft_p50_ms", "{:.1f}"),
    ("TPOT p50 ms", "median_tpot_ms", "{:.2f}"),
    ("E2EL p99 ms", "e2el_p99_ms", "{:.0f}"),
    ("J/out tok", "energy_per_output_token_joules", "{:.3g}"),
    ("flags", "flags", "{}"),
]
NOT_MEASURED = "n/m"
FROM_INTENDED_MARK = "†"
# Columns whose open-loop value is measured from the intended send time.
_HEADLINE_LATENCY = ("ttft_p50_ms", "e2el_p99_ms")
NOTES = [
    "out tok/s: output tokens / (last response − first send), as `vllm bench serve` reports it; "
    "steady tok/s: over the window in which every user was busy (closed loop) or the schedule ran "
    "(open loop), without the stage's start and drain; vs base compares out tok/s.",
    f"{FROM_INTENDED_MARK} open loop: latency from the intended send time, so a load generator that falls "
    "behind cannot hide the queueing (MLPerf LoadGen); from the actual send: `sent_ttft_p50_ms`, "
    "`sent_e2el_p99_ms` in summary.json.",
    f"J/out tok: energy per output token over the steady window, gross (net of idle in summary.json), of the "
    "server's GPUs (the host's CPU and DRAM beside it in the stage's `energy.host`), or on a CPU-only host of "
    "its CPU packages and DRAM; "
    f"{NOT_MEASURED}: not measured (the reason is in the stage's `energy`).",
]


def row(result: StageFile, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    s = summary if summary is not None else result.summary
    keys = ("request_throughput", "output_throughput", "total_token_throughput", "steady_output_throughput",
            "steady_request_throughput", "mean_in_flight", "steady_mean_in_flight", "median_ttft_ms",
            "median_tpot_ms", "median_itl_ms", "p99_e2el_ms", "completed", "failed", "request_goodput")
    intended = s.get("latency_from") == "intended send"
    return {"checkpoint": result.checkpoint, "profile": result.profile, "stage": result.stage,
            "load": result.load_text, "ok_failed": f"{s.get('completed', 0)}/{s.get('failed', 0)}",
            **{k: s.get(k) for k in keys},
            "latency_from": s.get("latency_from", "send"),
            "ttft_p50_ms": s.get("median_ttft_from_intended_ms" if intended else "median_ttft_ms"),
            "e2el_p99_ms": s.get("p99_e2el_from_intended_ms" if intended else "p99_e2el_ms"),
            "sent_ttft_p50_ms": s.get("median_ttft_ms"), "sent_e2el_p99_ms": s.get("p99_e2el_ms"),
            **_energy(result.energy), "flags": ", ".join(result.flags.values())}


def _energy(energy: dict[str, Any] | None) -> dict[str, Any]:
    """A stage's energy figures for its row: the numbers, or "not measured" (never 0) with the reason."""
    if not energy or not energy.get("measured"):
        return {"energy_per_output_token_joules": NOT_MEASURED, "net_energy_per_output_token_joules": None,
                "energy_not_measured": (energy or {}).get("reason") or "not measured"}
    per_token = energy["energy_per_output_token_joules"]
    return {"energy_per_output_token_joules": per_token["gross"],
            "net_energy_per_output_token_joules": per_token["net"],
            "output_tokens_per_joule": energy["output_tokens_per_joule"]["gross"]}


def _with_labels(rows: list[dict[str, Any]], run: RunDir) -> list[dict[str, Any]]:
    """Short checkpoint labels (base, p20…) for the tables; full names stay in ``checkpoint``."""
    labels = {name: run.checkpoint_info(name).label or name for name in run.checkpoints()}
    for r in rows:
        r["label"] = labels.get(r["checkpoint"], r["checkpoint"])
    return rows


def _with_ratios(rows: list[dict[str, Any]], base_of: dict[str, str]) -> list[dict[str, Any]]:
    by_key = {(r["checkpoint"], r["profile"], r["stage"]): r for r in rows}
    for r in rows:
        base = by_key.get((base_of.get(r["checkpoint"], r["checkpoint"]), r["profile"], r["stage"]))
        ok = base and base.get("output_throughput") and r.get("output_throughput") is not None
        r["output_throughput_vs_base"] = r["output_throughput"] / base["output_throughput"] if ok else None
    return rows


def _bases(run: RunDir) -> dict[str, str]:
    return {name: run.checkpoint_info(name).base or name for name in run.checkpoints()}


def collect(run: RunDir) -> list[dict[str, Any]]:
    rows = [row(res) for name in run.checkpoints() for res in run.stage_results(name)]
    return _with_labels(_with_ratios(rows, _bases(run)), run)


def write_summary(run_path: Path, rows: list[dict[str, Any]]) -> None:
    """summary.json (``{"rows": rows}``) and summary.csv: the same rows, one line each, every field a column in
    the order the rows first name them (a spreadsheet's or pandas' view of the run)."""
    write_json(run_path / SUMMARY, {"rows": rows})
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(run_path / SUMMARY_CSV, buf.getvalue())


def recompute(run: RunDir) -> list[dict[str, Any]]:
    """The same rows as :func:`collect`, with every summary derived from records.jsonl."""
    manifest = run.manifest().model_dump()
    kept = run_slos(manifest)
    slos = kept.slo_ms if kept else None
    percentiles = (manifest.get("study") or {}).get("percentiles") or PERCENTILES  # as the run summarised
    rows = []
    for name in run.checkpoints():
        path = run.records_path(name)
        # stage names are unique within a profile only
        by_stage: dict[tuple[str | None, str], list] = defaultdict(list)
        if path.is_file():
            for rec in read_records(path):
                by_stage[(rec.profile, rec.stage)].append(rec)
        for res in run.stage_results(name):
            users = res.target.get("users") if res.kind == "concurrency" else None
            summary = summarize(by_stage.get((res.profile, res.stage), []),
                                warmup_end_s=res.warmup_end_s, slos_ms=slos, users=users, percentiles=percentiles)
            rows.append(row(res, summary))
    return _with_labels(_with_ratios(rows, _bases(run)), run)


def _cell(value: Any, fmt: str) -> str:
    if value is None or value == "":
        return "–" if value is None else ""
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _row_cells(r: dict[str, Any]) -> list[str]:
    cells = []
    for _, key, fmt in COLUMNS:
        cell = _cell(r.get(key), fmt)
        if key in _HEADLINE_LATENCY and r.get("latency_from") == "intended send" and r.get(key) is not None:
            cell += FROM_INTENDED_MARK
        cells.append(cell)
    return cells


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    return [c[0] for c in COLUMNS], [_row_cells(r) for r in rows]


def render_markdown(rows: list[dict[str, Any]]) -> str:
    head, body = table(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in NOTES) + "\n"
