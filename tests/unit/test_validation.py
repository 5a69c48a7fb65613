"""One strict-validation base: every pydantic model serve-bench defines refuses unknown fields, inf and NaN."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from serve_bench.validation import Strict

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "serve_bench"


def test_every_model_derives_from_the_one_strict_base() -> None:
    direct = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name != "Strict":
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if "BaseModel" in bases or any(k.arg == "model_config" for k in node.keywords):
                    direct.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert not direct, f"derive from serve_bench.validation.Strict instead of BaseModel: {direct}"


def test_the_strict_base_refuses_unknown_fields_inf_and_nan() -> None:
    class Rate(Strict):
        rate_rps: float

    assert Rate(rate_rps=2.5).rate_rps == 2.5
    for bad in ({"rate_rps": float("inf")}, {"rate_rps": float("nan")}, {"rate_rps": 1.0, "rate": 1.0}):
        with pytest.raises(ValidationError):
            Rate.model_validate(bad)
