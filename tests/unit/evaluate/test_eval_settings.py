"""The study's eval section: strict, defaults to the quick subset, unknown tasks list the valid ones."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from serve_bench.errors import EvalError
from serve_bench.evaluate.settings import DATA_DIR_ENV, EvalSettings
from serve_bench.evaluate.tasks import DEFAULT_TASKS, TASKS, resolve

pytestmark = pytest.mark.unit


def test_defaults_are_the_quick_subset_of_every_side_of_the_dichotomy() -> None:
    s = EvalSettings()
    # whether it runs at all, the study settles (StudySpec)
    assert s.enabled is None and s.limit is None and s.tasks == list(DEFAULT_TASKS)
    assert {"truthfulqa_mc2", "ifeval"} <= set(s.tasks) and {"wikitext", "gsm8k"} <= set(s.tasks)
    resolved = {t.name: t for t in resolve(s)}
    assert all(t.limit == TASKS[n].quick_limit for n, t in resolved.items())
    assert resolved["ifeval"].endpoint == "chat" and resolved["ifeval"].max_gen_toks == 128
    assert resolved["gsm8k"].num_fewshot == 5 and resolved["gsm8k"].endpoint == "completions"


def test_unknown_task_lists_the_valid_ones() -> None:
    with pytest.raises(ValidationError) as err:
        EvalSettings(tasks=["mmlu", "hellaswag"])
    text = str(err.value)
    assert "unknown task 'hellaswag'" in text and all(t in text for t in TASKS)
    with pytest.raises(ValidationError, match="per_task: unknown task 'nope'"):
        EvalSettings(per_task={"nope": {"limit": 3}})


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": "some"}, {"colour": "red"}, {"tasks": []},
                                 {"tasks": ["gsm8k", "gsm8k"]}, {"num_concurrent": 0},
                                 {"per_task": {"gsm8k": {"endpoint": "grpc"}}},
                                 {"per_task": {"gsm8k": {"shots": 3}}}])
def test_refuses_bad_fields(bad: dict) -> None:
    with pytest.raises(ValidationError):
        EvalSettings(**bad)


def test_limits_all_and_overrides_resolve_in_order() -> None:
    s = EvalSettings(tasks=["mmlu", "ifeval", "arc_challenge"], limit="all",
                     per_task={"arc_challenge": {"limit": 7, "num_fewshot": 25}, "mmlu": {"num_fewshot": 0}})
    r = {t.name: t for t in resolve(s)}
    assert r["mmlu"].limit is None and r["mmlu"].num_fewshot == 0
    assert r["ifeval"].limit is None and r["ifeval"].max_gen_toks is None  # full sets: lm-eval's own lengths
    assert r["arc_challenge"].limit == 7 and r["arc_challenge"].num_fewshot == 25
    assert [t.name for t in resolve(EvalSettings(tasks=["wikitext", "mmlu"], limit=3))] == ["wikitext", "mmlu"]


def test_a_log_likelihood_task_cannot_go_to_the_chat_endpoint() -> None:
    s = EvalSettings(tasks=["truthfulqa_mc2"], per_task={"truthfulqa_mc2": {"endpoint": "chat"}})
    with pytest.raises(EvalError, match="log-likelihoods"):
        resolve(s)
    chat = EvalSettings(tasks=["gsm8k"], per_task={"gsm8k": {"endpoint": "chat"}})
    assert resolve(chat)[0].endpoint == "chat"


def test_data_dir_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert EvalSettings().data_dir is None
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert EvalSettings().data_dir == tmp_path
    assert EvalSettings(data_dir=None).data_dir is None


def test_evaluation_runs_on_servers_serve_bench_launches_and_at_a_url_only_when_asked() -> None:
    from serve_bench.study import StudySpec

    def enabled(data: dict) -> bool | None:
        return StudySpec.model_validate(data).eval.enabled

    url = {"server": {"url": "http://127.0.0.1:8000"}}
    fleet = {"server": {"endpoints": ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]}}
    assert enabled({}) is True and enabled({"eval": {"enabled": False}}) is False
    assert enabled(url) is False and enabled(fleet) is False  # a shared or production endpoint: not by default
    assert enabled({**url, "eval": {"enabled": True}}) is True
    assert enabled({**url, "eval": {"tasks": ["gsm8k"]}}) is True  # an eval: section that asks for something
    assert enabled({**url, "eval": {"limit": 5}}) is True
    assert enabled({**url, "eval": {"data_dir": "/data"}}) is False  # where the data is: not a request to evaluate


def test_the_data_source_is_checked_before_anything_starts(tmp_path: Path, monkeypatch) -> None:
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from serve_bench.evaluate.offline import check_source

    tasks = resolve(EvalSettings(tasks=["gsm8k"]))
    with pytest.raises(EvalError, match="evaluation data missing"):
        check_source(tasks, tmp_path)  # a data directory without the task's files
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    words = f"Hugging Face hub \\(http://127.0.0.1:{closed}\\), which does not answer"
    with pytest.raises(EvalError, match=words) as err:
        check_source(tasks, None)
    assert "--data-dir" in err.value.hint and "--no-eval" in err.value.hint
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    check_source(tasks, None)  # the user's choice: the hub's cached copies, the hub not asked
    monkeypatch.delenv("HF_DATASETS_OFFLINE")

    class Hub(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hub = HTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.server_address[1]}")
        check_source(tasks, None)  # the hub answers
    finally:
        hub.shutdown()
