"""The report's entry point: run directories in, Markdown + self-contained HTML + JSON + PNGs out.
Prints nothing; bad input raises :class:`~serve_bench.errors.ConfigError`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serve_bench.errors import ConfigError
from serve_bench.report import html, markdown
from serve_bench.report.analysis import Report, analyse
from serve_bench.report.figures import build_figures
from serve_bench.report.inputs import read_run
from serve_bench.report.render_png import write_png
from serve_bench.rundir import read_json, series_runs, write_text
from serve_bench.study import ReportSettings
from serve_bench.validation import validate

REPORT_DIR = "report"
MARKDOWN, HTML, JSON = "report.md", "report.html", "report.json"


@dataclass
class ReportFiles:
    directory: Path
    markdown: Path
    html: Path
    json: Path
    pngs: list[Path] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [self.markdown, self.html, self.json, *self.pngs]


def settings_for(run_dirs: list[Path], overrides: dict[str, Any] | None = None) -> ReportSettings:
    """The first run's ``study.report`` (defaults where it has none), then ``overrides``: a nested mapping
    of ReportSettings fields (``{"capacity": {"rps": 20}}``), validated strictly."""
    data: dict[str, Any] = {}
    manifest = Path(run_dirs[0]) / "manifest.json" if run_dirs else None
    if manifest is not None and manifest.is_file():
        try:
            kept = read_json(manifest)
            study = kept.get("study") or {}
        except (ValueError, AttributeError):
            raise ConfigError(f"{manifest} is not a serve-bench manifest (not a JSON object)") from None
        data = dict(study.get("report") or {})  # the run validated it against ReportSettings
        if kept.get("slo"):  # the run's resolved SLO stands unless an override names another
            for key in ("slo_ms", "slo_percentile", "min_attainment"):
                data.pop(key, None)
    for key, value in (overrides or {}).items():
        if key == "capacity" and isinstance(value, dict):  # a nested model: flags replace field by field
            data[key] = {**(data.get(key) or {}), **value}
        else:
            data[key] = value
    return validate(ReportSettings, data, "report settings")


def build_report(run_dirs: list[Path], out: Path | None = None, settings: ReportSettings | None = None) -> ReportFiles:
    """Write the report for ``run_dirs`` into ``out`` (default: ``<run>/report`` of the only run).

    ``settings``: None takes the first run's ``study.report`` (see :func:`settings_for`)."""
    if not run_dirs:
        raise ConfigError("no run directory given")
    if out is None and len(run_dirs) > 1:
        raise ConfigError("several run directories: say where the report goes", hint="pass --out DIR")
    given = Path(run_dirs[0])
    run_dirs = expand_series(run_dirs)
    if not run_dirs:
        raise ConfigError(f"{given} is a repeated run with no finished trial yet")
    settings = settings or settings_for(list(run_dirs))
    runs = [read_run(Path(p)) for p in run_dirs]
    report = analyse(runs, settings)
    directory = Path(out) if out is not None else given / REPORT_DIR
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the report directory {directory}: {err.strerror}") from None
    try:
        return write(report, directory)
    except OSError as err:
        raise ConfigError(f"cannot write the report in {directory}: {err.strerror}",
                          hint="choose a writable --out") from None


def expand_series(run_dirs: list[Path]) -> list[Path]:
    """Run directories, a repeated run's series directory standing for its trials (those with a finished stage:
    a trial interrupted before its first is left out)."""
    out: list[Path] = []
    for path in map(Path, run_dirs):
        trials = series_runs(path)
        out += [t for t in trials if any(t.glob("*/stages/*.json"))] if trials is not None else [path]
    return out


def write(report: Report, directory: Path) -> ReportFiles:
    figures = build_figures(report)
    png_names = {f.slug: f"plots/{f.slug}.png" for f in figures}
    files = ReportFiles(directory, directory / MARKDOWN, directory / HTML, directory / JSON,
                        verdicts=report.verdicts)
    files.pngs = [write_png(f, directory / png_names[f.slug]) for f in figures]
    write_text(files.markdown, markdown.render(report, figures, png_names))
    write_text(files.html, html.render(report, figures, png_names))
    write_text(files.json, json.dumps(to_json(report), indent=1, default=_default, allow_nan=False) + "\n")
    return files


def to_json(report: Report) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    for checkpoint in data["checkpoints"]:  # the bootstrap's draws are for comparing runs, not for the file
        (checkpoint.get("slo") or {}).pop("draws", None)
    data["verdicts"] = report.verdicts
    return json_safe(data)


def json_safe(value: Any) -> Any:
    """NaN/inf -> None (JSON has neither); numpy scalars -> Python; tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if np.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def _default(value: Any) -> Any:
    return str(value)


