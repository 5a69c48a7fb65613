"""The API key: taken out of vLLM's arguments, sent as a bearer token, masked in everything written."""

import pytest

from serve_bench import auth
from serve_bench.errors import ConfigError

pytestmark = pytest.mark.unit


def test_split_api_key_both_spellings() -> None:
    assert auth.split_api_key(["--max-model-len", "2048", "--api-key", "s3cret", "--dtype", "bf16"]) == (
        ["--max-model-len", "2048", "--dtype", "bf16"], "s3cret")
    assert auth.split_api_key(["--api-key=s3cret"]) == ([], "s3cret")
    assert auth.split_api_key(["--enforce-eager"]) == (["--enforce-eager"], None)
    with pytest.raises(ConfigError, match="one --api-key"):
        auth.split_api_key(["--api-key", "a", "b"])


def test_redact_masks_keys_anywhere_and_the_flag_always() -> None:
    manifest = {"command": ["serve-bench", "run", "--engine-args", "--api-key s3cret --dtype bf16"],
                "study": {"server": {"engine_args": ["--api-key", "other"], "env": {"VLLM_API_KEY": "x"}}},
                "note": "key s3cret inside text", "n": 3}
    out = auth.redact(manifest, ["s3cret", None])
    text = repr(out)
    assert "s3cret" not in text and "other" not in text and "'x'" not in text
    assert out["command"][3] == "--api-key *** --dtype bf16"
    assert out["study"]["server"]["engine_args"] == ["--api-key", "***"]
    assert out["n"] == 3 and out["note"] == "key *** inside text"


def test_headers() -> None:
    assert auth.headers(None) == {}
    assert auth.headers("k") == {"Authorization": "Bearer k"}
