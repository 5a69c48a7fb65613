"""Checks made before any request: the tokenizer a task needs, a chat template for chat tasks."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from serve_bench.errors import EvalError
from serve_bench.evaluate.runner import evaluate_served, has_chat_template
from serve_bench.evaluate.settings import EvalSettings

pytestmark = pytest.mark.unit


def _tokenizer_dir(tmp_path: Path, template: bool) -> Path:
    d = tmp_path / ("chat" if template else "plain")
    d.mkdir()
    cfg = {"model_max_length": 2048, **({"chat_template": "{{ messages }}"} if template else {})}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def test_chat_template_is_found_in_either_place(tmp_path: Path) -> None:
    assert has_chat_template(_tokenizer_dir(tmp_path, True))
    plain = _tokenizer_dir(tmp_path, False)
    assert not has_chat_template(plain)
    (plain / "chat_template.jinja").write_text("{{ messages }}")
    assert has_chat_template(plain)


def test_a_chat_task_on_a_model_without_template_fails_before_any_request(tmp_path: Path) -> None:
    s = EvalSettings(tasks=["ifeval"], data_dir=None)
    with pytest.raises(EvalError, match="ifeval use the chat endpoint, but the model .* has no chat template") as e:
        evaluate_served("http://127.0.0.1:9", "m", _tokenizer_dir(tmp_path, False), s, tmp_path / "out")
    assert "completions" in e.value.hint and not (tmp_path / "out").exists()


def test_log_likelihood_tasks_need_the_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="arc_challenge need the model's tokenizer"):
        evaluate_served("http://127.0.0.1:9", "m", None, EvalSettings(tasks=["arc_challenge"], data_dir=None),
                        tmp_path / "out")


def test_the_cli_maps_errors_to_exit_codes(tmp_path: Path) -> None:
    from serve_bench.cli.main import cli

    runner = CliRunner()
    bad = runner.invoke(cli, ["eval", "--url", "http://127.0.0.1:9", "--tasks", "mmlu,hellaswag"])
    assert bad.exit_code == 2 and "unknown task 'hellaswag'; valid: mmlu, gsm8k" in bad.output
    both = runner.invoke(cli, ["eval", "default", "--url", "http://127.0.0.1:9"])
    assert both.exit_code == 2 and "either MODEL or --url" in both.output
    missing = runner.invoke(cli, ["eval", "--url", "http://127.0.0.1:9", "--tasks", "gsm8k",
                                  "--data-dir", str(tmp_path)])
    assert missing.exit_code == 7 and "evaluation data missing: expected" in missing.output
    assert "Traceback" not in missing.output
