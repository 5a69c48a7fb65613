"""The packaged Grafana dashboards: valid JSON, the datasource by variable, only metric names that exist;
their queries with variables filled in; and the provisioning tree written from them."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from serve_bench.errors import ConfigError
from serve_bench.observe import dashboards as d
from serve_bench.observe import names as n

pytestmark = pytest.mark.unit

# vLLM 0.32's own metrics, read from vllm/v1/metrics/loggers.py (test_vllm_names_match_the_installed_source
# keeps this list honest where vLLM is installed).
VLLM_GAUGES = {"num_requests_running", "num_requests_waiting", "num_requests_waiting_by_reason",
               "num_requests_kv_fetch_by_stage", "engine_sleep_state", "kv_cache_usage_perc", "lora_requests_info",
               "cache_config_info"}
VLLM_COUNTERS = {"corrupted_requests", "watermark_requests", "prefix_cache_queries", "prefix_cache_hits",
                 "external_prefix_cache_queries", "external_prefix_cache_hits", "mm_cache_queries", "mm_cache_hits",
                 "num_preemptions", "prompt_tokens", "prompt_tokens_by_source", "prompt_tokens_cached",
                 "prompt_tokens_cached_by_source", "generation_tokens", "request_success", "admission_rejections"}
VLLM_HISTOGRAMS = {"request_prompt_tokens", "request_generation_tokens", "iteration_tokens_total",
                   "request_max_num_generation_tokens", "request_params_n", "request_params_max_tokens",
                   "time_to_first_token_seconds", "inter_token_latency_seconds",
                   "request_time_per_output_token_seconds", "e2e_request_latency_seconds",
                   "request_queue_time_seconds", "request_inference_time_seconds", "request_prefill_time_seconds",
                   "request_decode_time_seconds", "request_num_preemptions", "request_prefill_kv_computed_tokens",
                   "kv_block_lifetime_seconds", "kv_block_idle_before_evict_seconds", "kv_block_reuse_gap_seconds"}


def vllm_exposed() -> set[str]:
    """As Prometheus sees them: prometheus-client adds _total to counters and _bucket/_sum/_count to histograms."""
    out = {f"vllm:{g}" for g in VLLM_GAUGES} | {f"vllm:{c}_total" for c in VLLM_COUNTERS}
    return out | {f"vllm:{h}{s}" for h in VLLM_HISTOGRAMS for s in ("_bucket", "_sum", "_count")}


ALLOWED = n.exposed_names() | vllm_exposed()
BOARDS = {p.stem: json.loads(p.read_text()) for p in d.DASHBOARDS}
DS = {"type": "prometheus", "uid": "${datasource}"}
each_board = pytest.mark.parametrize("name", sorted(BOARDS))


def used(board: dict) -> set[str]:
    return {m for _, expr in d.panel_queries(board) for m in d.metric_names(expr)}


def test_both_dashboards_are_packaged():
    assert {name: (b["uid"], b["title"], b["schemaVersion"]) for name, b in BOARDS.items()} == {
        "serve-bench": ("serve-bench", "serve-bench", 39), "vllm": ("serve-bench-vllm", "vLLM server", 39)}


@each_board
def test_panel_ids_are_unique(name):
    ids = [p["id"] for p in d.panels(BOARDS[name])]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)


def datasources(node, path="$"):
    """Every "datasource" value anywhere in the JSON, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            yield from datasources(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from datasources(value, f"{path}[{i}]")


@each_board
def test_the_datasource_is_a_variable_everywhere(name):
    board = BOARDS[name]
    [var] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert (var["name"], var["query"]) == ("datasource", "prometheus")
    found = list(datasources(board))
    assert found and [where for where, ds in found if ds != DS] == []
    for p in d.panels(board):
        if p["type"] != "row":
            assert p["datasource"] == DS and p["targets"], p["title"]
            assert all(t["datasource"] == DS for t in p["targets"]), p["title"]
    assert all(a["datasource"] == DS for a in board["annotations"]["list"])


def test_the_datasource_check_catches_a_hard_coded_uid():
    board = copy.deepcopy(BOARDS["serve-bench"])
    board["panels"][1]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    assert [ds for _, ds in datasources(board) if ds != DS] == [{"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}]


def overlaps(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


@each_board
def test_grid_positions_fit_and_do_not_overlap(name):
    grid = [(p["title"], p["gridPos"]) for p in d.panels(BOARDS[name])]
    for title, g in grid:
        assert all(isinstance(g[k], int) for k in "xywh"), title
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, title
    clashes = [(a, b) for i, (a, ga) in enumerate(grid) for b, gb in grid[i + 1:] if overlaps(ga, gb)]
    assert clashes == []
    assert overlaps({"x": 0, "y": 0, "w": 12, "h": 8}, {"x": 8, "y": 4, "w": 12, "h": 8})


@each_board
def test_every_metric_is_one_the_exporter_or_vllm_defines(name):
    assert d.unknown_metrics(BOARDS[name], ALLOWED) == []
    assert all(d.metric_names(expr) for _, expr in d.panel_queries(BOARDS[name])), "a query reads no metric"


def test_the_name_check_catches_made_up_and_misspelt_names():
    board = copy.deepcopy(BOARDS["vllm"])
    targets = [t for p in d.panels(board) for t in p.get("targets", [])]
    targets[0]["expr"] = "sum(serve_bench_made_up_seconds_bucket)"
    targets[1]["expr"] = "max(vllm:gpu_cache_usage_perc)"  # vLLM's v0 name, gone in v1
    targets[2]["expr"] = "rate(vllm:prompt_tokens[1m])"  # a counter without the _total Prometheus sees
    board["templating"]["list"][1]["query"] = {"query": "label_values(vllm:num_requests_swapped, model_name)"}
    assert {name for _, name in d.unknown_metrics(board, ALLOWED)} == {
        "serve_bench_made_up_seconds_bucket", "vllm:gpu_cache_usage_perc", "vllm:prompt_tokens",
        "vllm:num_requests_swapped"}


@pytest.mark.parametrize("expr, names", [
    ('histogram_quantile(0.99, sum by (le, stage) (rate(a_seconds_bucket{stage=~"b_c"}[$__rate_interval])))',
     {"a_seconds_bucket"}),
    ("x * on (checkpoint) group_left (kind) (y == 1) offset 5m", {"x", "y"}),
    ("sum(rate(vllm:foo_total[5m:1m])) / 1e3 > bool 0.5", {"vllm:foo_total"}),
    ('sum(a) by (job) / ignoring (le) count_over_time(b[30s]) unless c', {"a", "b", "c"}),
])
def test_metric_names_reads_only_metric_names(expr, names):
    assert d.metric_names(expr) == names


def test_the_serve_bench_dashboard_shows_every_exported_metric():
    wanted = {m.name + "_bucket" if m.kind == "histogram" else m.name for m in n.ALL}
    assert wanted - used(BOARDS["serve-bench"]) == set()


def test_the_serve_bench_dashboard_filters_and_marks_stages():
    board = BOARDS["serve-bench"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for name in ("checkpoint", "profile", "stage"):
        v = variables[name]
        assert v["type"] == "query" and v["multi"] and v["includeAll"] and v["allValue"] == ".*"
        assert v["query"]["query"].startswith("label_values(serve_bench_stage_info") and v["query"]["query"].endswith(
            f", {name})")
    [stages] = board["annotations"]["list"]
    assert "serve_bench_stage_info" in stages["expr"] and stages["expr"].endswith("== 1")
    assert stages["enable"] and stages["tagKeys"] == "checkpoint,stage" and "{{stage}}" in stages["titleFormat"]
    raw = [t["expr"] for p in d.panels(board) for t in p.get("targets", [])]
    assert all(set(re.findall(r"\[([^\]]*)\]", e)) <= {"$__rate_interval"} for e in raw)
    latency = [e for e in raw if "histogram_quantile" in e]
    assert latency and all("sum by (le, checkpoint, stage) (rate(" in e for e in latency)


def test_the_vllm_dashboard_reads_the_server_metrics_asked_for():
    board = BOARDS["vllm"]
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
            "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
            "vllm:inter_token_latency_seconds_bucket", "vllm:request_time_per_output_token_seconds_bucket",
            "vllm:e2e_request_latency_seconds_bucket", "vllm:request_queue_time_seconds_bucket",
            "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total", "vllm:num_preemptions_total",
            "vllm:request_success_total"} <= used(board)
    [model] = [v for v in board["templating"]["list"] if v["name"] == "model_name"]
    assert model["query"]["query"] == "label_values(vllm:num_requests_running, model_name)"


def test_vllm_names_match_the_installed_source():
    spec = importlib.util.find_spec("vllm")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("vLLM is not installed")
    source = (Path(spec.submodule_search_locations[0]) / "v1" / "metrics" / "loggers.py").read_text()
    found: dict[str, set[str]] = {"gauge": set(), "counter": set(), "histogram": set()}
    for kind, name in re.findall(r'self\._(gauge|counter|histogram)_cls\(\s*name="vllm:(\w+)"', source):
        found[kind].add(name)
    found["gauge"] |= set(re.findall(r'name = "vllm:(\w+_info)"', source))  # emulated Info metrics
    assert found == {"gauge": VLLM_GAUGES, "counter": VLLM_COUNTERS, "histogram": VLLM_HISTOGRAMS}


# -- panel_queries ------------------------------------------------------------------------------------------

@each_board
def test_panel_queries_fill_in_every_variable(name):
    board = BOARDS[name]
    queries = d.panel_queries(board)
    targets = sum(len(p.get("targets", [])) for p in d.panels(board))
    assert len(queries) == targets + len(board["annotations"]["list"])
    assert [q for q in queries if "$" in q[1] or "[[" in q[1]] == []
    assert all("[30s]" in expr for _, expr in queries if "rate(" in expr)


def test_panel_queries_use_given_values_escaped_for_a_regex_in_a_string():
    queries = d.panel_queries(d.DASHBOARDS[0], {"checkpoint": "m-er2.4", "stage": ["c1", "c2"]})
    ttft = [expr for title, expr in queries if title == "Time to first token"]
    assert len(ttft) == 3
    assert all('checkpoint=~"m-er2\\\\.4", profile=~".*", stage=~"(c1|c2)"' in expr for expr in ttft)
    assert ("annotation: Stages", 'serve_bench_stage_info{checkpoint=~"m-er2\\\\.4", profile=~".*", '
            'stage=~"(c1|c2)"} == 1') in queries


def test_panel_queries_leave_an_undefined_variable_for_the_check_to_find():
    board = {"panels": [{"title": "t", "targets": [{"expr": 'up{job=~"$nope"}'}]}]}
    assert d.panel_queries(board) == [("t", 'up{job=~"$nope"}')]


# -- write_tree ---------------------------------------------------------------------------------------------

def test_write_tree_lays_out_a_runnable_tree(tmp_path):
    out, _, _ = d.write_tree(tmp_path / "obs", exporter="127.0.0.1:9999", vllm="localhost:8123")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(d.TREE)
    prom = yaml.safe_load((out / "prometheus/prometheus.yml").read_text())
    assert prom["global"]["scrape_interval"] == "2s"
    assert {j["job_name"]: j["static_configs"] for j in prom["scrape_configs"]} == {
        "serve-bench": [{"targets": ["127.0.0.1:9999"]}], "vllm": [{"targets": ["localhost:8123"]}]}
    for src in d.DASHBOARDS:
        assert (out / "grafana/dashboards" / src.name).read_text() == src.read_text()
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    mounts = {}
    for service in ("prometheus", "grafana"):
        assert compose["services"][service]["network_mode"] == "host"
        for volume in compose["services"][service]["volumes"]:
            host, inside = volume.split(":")[:2]
            if host.startswith("./"):
                assert (out / host).exists(), volume
                mounts[host] = inside
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    provider = yaml.safe_load((out / "grafana/provisioning/dashboards/serve-bench.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["./grafana/dashboards"]
    [source] = yaml.safe_load((out / "grafana/provisioning/datasources/prometheus.yaml").read_text())["datasources"]
    assert (source["type"], source["uid"]) == ("prometheus", "prometheus")
    assert "docker compose up -d" in (out / "README.txt").read_text()


def test_write_tree_defaults(tmp_path):
    prom = yaml.safe_load((d.write_tree(tmp_path)[0] / "prometheus/prometheus.yml").read_text())
    assert [j["static_configs"][0]["targets"] for j in prom["scrape_configs"]] == [["127.0.0.1:9464"],
                                                                                 ["127.0.0.1:8000"]]


def test_write_tree_keeps_a_directory_with_files_unless_forced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        d.write_tree(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    d.write_tree(tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "compose.yaml").exists()


def test_write_tree_refuses_a_path_it_cannot_write(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        d.write_tree(tmp_path / "file")
    with pytest.raises(ConfigError, match="cannot write"):
        d.write_tree(tmp_path / "file" / "below")


@pytest.mark.parametrize("bad", ["localhost", "http://127.0.0.1:9464", "127.0.0.1:9464/metrics", "host:0",
                                 "host:65536", "host:port", ":9464", "", "a b:1"])
def test_write_tree_refuses_a_malformed_target(tmp_path, bad):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        d.write_tree(tmp_path / "a", exporter=bad)
    with pytest.raises(ConfigError, match="--vllm"):
        d.write_tree(tmp_path / "b", vllm=bad or "x")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("good", ["[::1]:9464", "metrics.example.org:80", "10.0.0.2:65535"])
def test_parse_target_accepts(good):
    assert d.parse_target(good) == good
