"""The Grafana dashboards and what runs them: a tree ready for ``docker compose up``, and their queries.

The assets are the repository's ``dashboards/``, carried in the wheel as package
data (so a plain ``pip install`` has them); :func:`write_tree` lays them out with the scrape
targets filled in. :func:`panel_queries` gives every query a dashboard runs,
with its template variables replaced the way Grafana replaces them, so a test
can run each against a real Prometheus; :func:`unknown_metrics` finds metric
names that neither serve-bench's exporter (:mod:`serve_bench.observe.names`)
nor a given list defines.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from serve_bench import assets
from serve_bench.errors import ConfigError

ASSETS = assets.asset_dir(assets.DASHBOARDS)
DASHBOARDS = (ASSETS / "serve-bench.json", ASSETS / "vllm.json")
DEFAULT_EXPORTER = "127.0.0.1:9464"  # serve_bench.observe.exporter.DEFAULT_PORT
DEFAULT_VLLM = "127.0.0.1:8000"  # vLLM's own default port; serve-bench uses server.port when the study sets it

# packaged file -> its place in the written tree (compose.yaml mounts these paths)
LAYOUT = {
    "compose.yaml": "compose.yaml",
    "provisioning/datasources/prometheus.yaml": "grafana/provisioning/datasources/prometheus.yaml",
    "provisioning/dashboards/serve-bench.yaml": "grafana/provisioning/dashboards/serve-bench.yaml",
    "serve-bench.json": "grafana/dashboards/serve-bench.json",
    "vllm.json": "grafana/dashboards/vllm.json",
}
PROMETHEUS_YML = "prometheus/prometheus.yml"
TREE = (*LAYOUT.values(), PROMETHEUS_YML, "README.txt")  # every file write_tree writes

# Grafana's built-in interval variables, as a concrete query would have them: 30 s covers
# several 2 s scrapes, as $__rate_interval does.
BUILTINS = {"__rate_interval": "30s", "__interval": "15s", "__range": "5m"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")  # $x, ${x}, ${x:fmt}, [[x]]
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


# -- the tree -----------------------------------------------------------------------------------------------

def write_tree(out_dir: str | Path, exporter: str = DEFAULT_EXPORTER, vllm: str | None = None, *,
               force: bool = False, exported: set[str] | None = None) -> tuple[Path, list[str], list[str]]:
    """Write the provisioning tree (see :data:`TREE`) into ``out_dir``; return it, and with ``exported`` (the
    sample names a vLLM server's /metrics holds) the queries rewritten to its names and the names it lacks.

    ``exporter`` and ``vllm`` are HOST:PORT scrape targets. An ``out_dir`` that
    holds anything is refused unless ``force`` (then the files named in
    :data:`TREE` are overwritten and nothing else is touched).
    """
    exporter = parse_target(exporter, "--exporter")
    vllm = parse_target(DEFAULT_VLLM if vllm is None else vllm, "--vllm")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty", hint="choose a new or empty directory, or pass --force to "
                                                      "overwrite the dashboard files in it")
    files = {dest: (ASSETS / src).read_text() for src, dest in LAYOUT.items()}
    renamed: list[str] = []
    missing: list[str] = []
    if exported is not None:
        from serve_bench.observe.vllm_names import adapt_board

        for src, dest in LAYOUT.items():
            if src.endswith(".json"):
                board = json.loads(files[dest])
                r, m = adapt_board(board, exported)
                renamed, missing = renamed + r, missing + m
                files[dest] = json.dumps(board, indent=2) + "\n"
    files[PROMETHEUS_YML] = prometheus_config(exporter, vllm)
    files["README.txt"] = _readme(out.resolve(), exporter, vllm)
    try:
        for rel, text in files.items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except OSError as err:
        raise ConfigError(f"cannot write the dashboards to {out}: {err.strerror or err}",
                          hint="choose a directory you can write to") from err
    return out, renamed, missing


def parse_target(value: str, flag: str = "target") -> str:
    """``HOST:PORT`` (an IPv6 host in brackets) as Prometheus wants a static target; anything else is refused."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", value.strip())
    if not match or not 1 <= int(match[2]) <= 65535:
        raise ConfigError(f"{flag} {value!r} is not HOST:PORT",
                          hint="e.g. 127.0.0.1:9464, without a scheme or a path")
    return value.strip()


def prometheus_config(exporter: str, vllm: str) -> str:
    """The packaged prometheus.yml with the two jobs' targets replaced."""
    config = yaml.safe_load((ASSETS / "prometheus.yml").read_text())
    targets = {"serve-bench": exporter, "vllm": vllm}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    header = ("# Written by `serve-bench dashboards`. Job serve-bench: serve-bench's exporter;\n"
              "# job vllm: the vLLM server under test (set server.port in the study so it stays put).\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def _readme(out: Path, exporter: str, vllm: str) -> str:
    return f"""\
Prometheus and Grafana for watching a serve-bench run live.

  compose.yaml                  Prometheus and Grafana in containers (host networking, Linux)
  prometheus/prometheus.yml     scrapes serve-bench's exporter at {exporter} and vLLM at {vllm}, every 2 s
  grafana/provisioning/         the Prometheus datasource and the dashboard provider
  grafana/dashboards/           serve-bench.json (load, latency, SLOs, energy) and vllm.json (the server)

Start them:

  cd {shlex.quote(str(out))}
  docker compose up -d

then open http://127.0.0.1:3000 (anonymous viewing; admin/admin to edit) and
run serve-bench as usual; Prometheus is at http://127.0.0.1:9090/targets.
Stop with `docker compose down` (add -v to drop the stored metrics).

vLLM's target: serve-bench starts each server on a free port unless the study
sets server.port; set it (and pass the same port to --vllm) for the vLLM
dashboard to have data.

Without containers: run `prometheus --config.file=prometheus/prometheus.yml`,
and in your Grafana import grafana/dashboards/*.json and pick your Prometheus
datasource in each dashboard's "Prometheus" drop-down.
"""


# -- the queries --------------------------------------------------------------------------------------------

def load(dashboard: dict[str, Any] | str | Path) -> dict[str, Any]:
    return dashboard if isinstance(dashboard, dict) else json.loads(Path(dashboard).read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels (collapsed rows keep theirs inside) included."""
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def panel_queries(dashboard: dict[str, Any] | str | Path,
                  variables: dict[str, str | list[str]] | None = None) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every panel target and annotation, ready to send to Prometheus.

    ``variables`` gives label values for template variables (a list for a
    multi-value choice); a variable not given is "All" (its ``allValue``,
    ``.*``). Values are regex-escaped for ``=~`` matchers inside PromQL strings,
    as Grafana escapes them. Grafana's interval variables get :data:`BUILTINS`.
    A variable the dashboard does not define is left as it is.
    """
    board = load(dashboard)
    given = variables or {}
    values: dict[str, str] = dict(BUILTINS)
    for var in board.get("templating", {}).get("list", []):
        name = var["name"]
        if name in given:
            values[name] = _regex(given[name])
        elif var.get("type") != "datasource":
            values[name] = var.get("allValue") or ".*"

    def sub(expr: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m[1] or m[2] or m[3]
            return values.get(name, m[0])
        return _VARIABLE.sub(one, expr)

    out = [(p.get("title", ""), sub(t["expr"])) for p in panels(board) for t in p.get("targets", []) if t.get("expr")]
    out += [(f"annotation: {a.get('name', '')}", sub(a["expr"]))
            for a in board.get("annotations", {}).get("list", []) if a.get("expr")]
    return out


def _regex(value: str | list[str]) -> str:
    """Literal label values as one regex, escaped for RE2 and then for a double-quoted PromQL string."""
    items = [value] if isinstance(value, str) else list(value)
    escaped = [_RE2_SPECIAL.sub(r"\\\1", v).replace("\\", "\\\\").replace('"', '\\"') for v in items]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


# -- the metric names they use ------------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")  # label matchers, ranges and subqueries
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# a name not inside a number or after $, and not a function (followed by "(")
_NAME = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*(?![\w:]|\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "start", "end"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label names, functions and keywords left out)."""
    text = _STRINGS.sub('""', expr)
    text = _GROUPING.sub(" ", _MATCHERS.sub(" ", text))
    return {n for n in _NAME.findall(text) if n.lower() not in _KEYWORDS}


def variable_selectors(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(variable, selector)`` for each ``label_values(selector, label)`` variable query."""
    out = []
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else (query or "")
        m = re.fullmatch(r"\s*label_values\((.+),\s*\w+\s*\)\s*", query) if var.get("type") == "query" else None
        if m:
            out.append((var["name"], m[1]))
    return out


def unknown_metrics(dashboard: dict[str, Any] | str | Path, allowed: set[str]) -> list[tuple[str, str]]:
    """``(where, name)`` for each metric a panel, annotation or variable query uses that ``allowed`` lacks."""
    board = load(dashboard)
    uses = panel_queries(board) + [(f"variable: {v}", s) for v, s in variable_selectors(board)]
    return sorted({(where, name) for where, expr in uses for name in metric_names(expr) if name not in allowed})
